"""Experiment grids: a YAML file that expands into the runs of one paper table.

A grid file holds config sections (``data``, ``model``, ``optim``, ``distill``, ``train``: the
base config of every run) and grid keys::

    include: [recipes/official.yaml, datasets/coco.yaml]  # merged first, paths relative to this file
    dataset: coco          # label used in run folders and tables (default: data.name)
    paper: table1          # the published table this grid reproduces (mlkd table --paper)
    out: runs/paper/coco   # where runs go (mlkd sweep --out overrides it)
    required: [data.options.root]   # keys the user must give before a sweep trains anything
    pairs:                 # (teacher model, student model); a mapping or a 2-item list
      - {teacher: resnet101, student: resnet34}
    models:                # optional model-section overrides per model name (``name`` too:
      resnet101: {pretrained: /weights/resnet101.safetensors}   # resnet50: {name: resnet50.a1_in1k})
    methods: [teacher, vanilla, rkd, pkt, reviewkd, mse, ps, mld, l2d]
    #   an entry is a method name, ``teacher`` (the Teacher row) or a mapping
    #   {method: l2d, weights: {mld: 100}, options: {...}, name: "row label", slug: folder,
    #    config: {distill: {cache: "off"}}}   # config overrides for this row's runs only
    vary: {method: l2d, terms: [mld, cd, id], factors: [0.1, 10]}   # optional: weight variations
    seeds: [0, 1, 2]       # train.seed of each replicate
    teachers: per_seed     # or ``shared``: one teacher (the first seed's) for every seed
    teacher_config: {optim: {stop_epoch: 30}}   # config overrides for teacher runs only

Includes are deep-merged in order (mappings merge, lists and values are replaced), then the
file itself; included files may include others. ``key.sub=value`` overrides apply last, to
config sections (``data.options.root=/data/coco``) and grid keys (``seeds=[0]``,
``models.resnet34.pretrained=/w/r34.safetensors``) alike, except ``distill.*`` overrides:
they reach the distillation rows only, never the Teacher's or the vanilla Student's runs;
``distill.weights.cd=1`` / ``distill.options.cd.variant=paper`` reach the rows whose method has
that term (their labels and folders then name the weight: ``L2D (cd=1)``, ``l2d-cd1``), and an
override that reaches no row, or a term a row sets itself, is an error (see
``scope_distill_overrides``).

Runs (one folder each, names deterministic; ``<out>/<dataset>/...``):
``teacher-<t>/seed<s>`` trains each teacher once per (dataset, model, seed) and serves every
pair it teaches; ``student-<s>/seed<s>`` trains the vanilla student (BCE only, the "Student"
row) once per (dataset, model, seed), since it does not depend on the teacher;
``<t>_to_<s>/<method slug>/seed<s>`` is one distilled student. By default each seed is a whole
replicate (its own teacher), so a row's std includes the teacher's seed-to-seed variation;
``teachers: shared`` trains one teacher (seed = the first seed) for every seed instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from mlkd.config import GRID_KEYS, Config, apply_overrides, config_from_dict, parse_override, read_yaml
from mlkd.engine.checks import check_config
from mlkd.errors import ConfigError
from mlkd.plugins import load_plugins

CONFIG_SECTIONS = ("data", "model", "optim", "distill", "train")


@dataclass(frozen=True)
class MethodSpec:
    """One row of the table: a named method with optional weight / option overrides."""

    method: str  # "teacher" or a key of the mlkd.losses.METHODS registry
    label: str
    slug: str
    weights: dict = field(default_factory=dict, hash=False, compare=False)
    options: dict = field(default_factory=dict, hash=False, compare=False)
    config: dict = field(default_factory=dict, hash=False, compare=False)  # config-section overrides


@dataclass(frozen=True)
class Pair:
    teacher: str
    student: str

    @property
    def label(self) -> str:
        return f"{self.teacher}->{self.student}"

    @property
    def folder(self) -> str:
        return f"{self.teacher}_to_{self.student}"


@dataclass
class RunSpec:
    """One training run: its folder, role, identity and validated config."""

    run_dir: Path
    role: str  # "teacher" | "student" (vanilla) | "distill"
    dataset: str
    model: str
    method: str
    label: str
    seed: int
    teacher: Optional[str]  # teacher model of the pair (None for teacher / vanilla runs)
    student: Optional[str]
    teacher_run: Optional[Path]  # the teacher run this run needs
    config: Config
    pairs: list = field(default_factory=list)  # pair labels this run serves (grid-specific)

    @property
    def identity(self) -> dict[str, Any]:
        """What ``experiment.json`` records about the run (independent of the grid)."""
        cfg = self.config.distill
        return {
            "role": self.role,
            "dataset": self.dataset,
            "model": self.model,
            "method": self.method,
            "label": self.label,
            "seed": self.seed,
            "teacher": self.teacher,
            "student": self.student,
            "weights": dict(cfg.weights),
            "options": dict(cfg.options),
        }


@dataclass
class Grid:
    """A loaded grid: its source, keys, the base config dict and the expanded runs."""

    path: Path
    name: str
    dataset: str
    paper: Optional[str]
    out: Path
    pairs: list[Pair]
    methods: list[MethodSpec]
    seeds: list[int]
    teachers: str
    required: list[str]
    missing: list[str]  # required keys still unset
    runs: list[RunSpec]
    cells: dict = field(default_factory=dict)  # (pair label, row label, seed) -> RunSpec

    @property
    def experiments(self) -> list[tuple[str, Pair, MethodSpec, int]]:
        """The logical grid: (dataset, pair, method, seed), one per table cell and seed."""
        return [(self.dataset, p, m, s) for p in self.pairs for m in self.methods for s in self.seeds]

    def run_for(self, pair: Pair, method: MethodSpec, seed: int) -> RunSpec:
        """The run that provides the (pair, method, seed) experiment."""
        return self.cells[(pair.label, method.label, seed)]


def deep_merge(base: dict, extra: dict) -> dict:
    """A copy of ``base`` with ``extra`` merged in: mappings merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_grid_file(path: Union[str, Path], _seen: tuple = ()) -> dict:
    """The file's mapping with its ``include`` files merged underneath (recursively)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: include cycle ({chain})")
    data = read_yaml(path)
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: 'include' must be a file path or a list of paths")
    merged: dict = {}
    for name in includes:
        target = path.parent / name
        if not target.is_file():
            raise ConfigError(f"{path}: included file not found: {target}")
        merged = deep_merge(merged, read_grid_file(target, (*_seen, resolved)))
    return deep_merge(merged, data)


def _get_path(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_sections(value: Any, what: str, source: str) -> dict:
    """``value`` (None = {}) checked to be a mapping of config sections (overrides for some runs)."""
    value = value or {}
    if not isinstance(value, dict) or set(value) - set(CONFIG_SECTIONS):
        raise ConfigError(f"{source}: {what} must hold config sections ({', '.join(CONFIG_SECTIONS)})")
    return value


def method_spec(entry: Any, source: str) -> MethodSpec:
    """A ``methods`` entry (name or mapping) -> MethodSpec; names are checked against METHODS."""
    from mlkd.losses import LOSS_TERMS, METHODS, row_label
    from mlkd.losses.methods import format_number

    if isinstance(entry, str):
        entry = {"method": entry}
    if not isinstance(entry, dict) or "method" not in entry:
        raise ConfigError(f"{source}: a methods entry must be a name or a mapping with 'method', got {entry!r}")
    unknown = sorted(set(entry) - {"method", "name", "slug", "weights", "options", "config"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} in methods entry {entry!r} "
            "(known: method, name, slug, weights, options, config)"
        )
    config = config_sections(entry.get("config"), f"'config' of methods entry {entry!r}", source)
    method = str(entry["method"])
    weights = {str(k): float(v) for k, v in (entry.get("weights") or {}).items()}
    options = dict(entry.get("options") or {})
    if method != "teacher" and method not in METHODS:
        raise ConfigError(
            f"{source}: unknown method {method!r}; known: teacher, {', '.join(METHODS)} "
            "(a plugin module listed under 'plugins:' can register more)"
        )
    if method == "teacher" and (weights or options or config):
        raise ConfigError(f"{source}: the teacher row takes no weights, options or config (use teacher_config)")
    bad = [name for name in (*weights, *options) if name not in LOSS_TERMS]
    if bad:
        raise ConfigError(
            f"{source}: unknown loss term(s) {bad} in methods entry for {method!r}; "
            f"known: {', '.join(LOSS_TERMS.names())}"
        )
    label = str(entry.get("name") or row_label(method, weights))
    slug = entry.get("slug")
    if not slug:
        slug = method + "".join(f"-{k}{format_number(v)}" for k, v in sorted(weights.items()))
        if options:
            slug += "-o" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return MethodSpec(method, label, str(slug), weights, options, copy.deepcopy(config))


def vary_specs(vary: Any, source: str) -> list[MethodSpec]:
    """``vary: {method, terms, factors}`` -> one MethodSpec per (term, factor): weight x factor."""
    from mlkd.losses import METHODS, get_method, row_label
    from mlkd.losses.methods import format_number

    if not isinstance(vary, dict) or set(vary) - {"method", "terms", "factors"}:
        raise ConfigError(f"{source}: 'vary' must be a mapping with method, terms, factors; got {vary!r}")
    method = vary.get("method", "l2d")
    if method not in METHODS:
        raise ConfigError(f"{source}: vary.method {method!r} is not a method; known: {', '.join(METHODS)}")
    defaults = get_method(method).weights
    terms = vary.get("terms") or [t for t in defaults if t != "bce"]
    factors = vary.get("factors") or [0.1, 10]
    specs = []
    for term in terms:
        if term not in defaults:
            raise ConfigError(f"{source}: vary.terms: {term!r} is not a term of {method!r} ({', '.join(defaults)})")
        for factor in factors:
            weight = defaults[term] * float(factor)
            label = f"{row_label(method)} {term} x{format_number(factor)} ({format_number(weight)})"
            specs.append(method_spec({"method": method, "weights": {term: weight}, "name": label}, source))
    return specs


def _with(spec: MethodSpec, weights: dict, options: dict, config: dict, source: str) -> MethodSpec:
    """``spec`` with more weights / options / config (its label and slug follow its weights,
    unless the grid named them)."""
    entry = {"method": spec.method, "weights": weights, "options": options, "config": config}
    derived = method_spec({"method": spec.method, "weights": spec.weights, "options": spec.options}, source)
    if spec.label != derived.label:
        entry["name"] = spec.label
    if spec.slug != derived.slug:
        entry["slug"] = spec.slug
    return method_spec(entry, source)


def scope_distill_overrides(methods: list[MethodSpec], overrides: list[str], source: str) -> list[MethodSpec]:
    """The rows after the command line's ``distill.*`` overrides, scoped as meant: they reach
    the distillation rows only (methods reading a teacher), never the Teacher's or the vanilla
    Student's runs. ``distill.weights.<term>`` / ``distill.options.<term>.*`` reach the rows
    whose method has that term (their labels and folders then name the weight); other keys
    (``distill.cache=off``) every distillation row. A ConfigError names the override when it
    would reach no row, sets what the grid sets per run (method, teacher), or contradicts a
    row that sets the same term itself."""
    from mlkd.losses.methods import method_needs_teacher, method_weights

    if not overrides:
        return methods
    per_row = "set it per row in the grid: methods=[..., {method: l2d, weights: {cd: 1}, options: {...}}]"
    rows = [m for m in methods if m.method != "teacher" and method_needs_teacher(m.method, m.weights)]
    for text in overrides:
        path, _ = parse_override(text)
        if len(path) == 1 or path[1] in ("method", "teacher"):
            raise ConfigError(
                f"{source}: override {text!r}: the grid sets distill.method and distill.teacher "
                f"of each run (choose rows with methods=[...]); {per_row}"
            )
        if path[1] in ("weights", "options") and len(path) < 3:
            raise ConfigError(f"{source}: override {text!r}: name one term (distill.{path[1]}.cd=...); {per_row}")
        if not rows:
            labels = ", ".join(m.label for m in methods)
            raise ConfigError(
                f"{source}: override {text!r} reaches no run: no row of this grid distils "
                f"from a teacher (rows: {labels}); distill.* overrides apply to distillation "
                f"rows only, never the Teacher or the Student"
            )
    extra = apply_overrides({}, overrides)["distill"]
    weights, options = extra.pop("weights", {}), extra.pop("options", {})
    for term in [*weights, *options]:
        having = [m for m in rows if term in method_weights(m.method, m.weights)]
        if not having:
            labels = ", ".join(f"{m.label} ({', '.join(method_weights(m.method, m.weights))})" for m in rows)
            kind = "weights" if term in weights else "options"
            raise ConfigError(
                f"{source}: override 'distill.{kind}.{term}' reaches no run: no distillation "
                f"row of this grid has a {term!r} term (rows: {labels}); {per_row}"
            )
    out = []
    for spec in methods:
        if spec not in rows:
            out.append(spec)
            continue
        terms = method_weights(spec.method, spec.weights)
        clash = sorted(
            t for t in (*weights, *options) if t in terms and t in (spec.weights if t in weights else spec.options)
        )
        if clash:
            raise ConfigError(
                f"{source}: override distill.*.{clash[0]} contradicts the row {spec.label!r}, "
                f"which sets {clash[0]!r} itself; change that row in the grid instead"
            )
        row_weights = {**spec.weights, **{t: float(w) for t, w in weights.items() if t in terms}}
        row_options = {**spec.options, **{t: o for t, o in options.items() if t in terms}}
        config = deep_merge(spec.config, {"distill": extra}) if extra else spec.config
        out.append(_with(spec, row_weights, row_options, config, source))
    return out


def _pairs(value: Any, source: str) -> list[Pair]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: 'pairs' must be a non-empty list of {{teacher: ..., student: ...}}")
    pairs = []
    for entry in value:
        if isinstance(entry, dict) and set(entry) == {"teacher", "student"}:
            pairs.append(Pair(str(entry["teacher"]), str(entry["student"])))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            pairs.append(Pair(str(entry[0]), str(entry[1])))
        else:
            raise ConfigError(f"{source}: bad pair {entry!r}; write {{teacher: resnet101, student: resnet34}}")
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"{source}: a pair is listed twice")
    return pairs


def _seeds(value: Any, source: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and s >= 0 for s in value):
        raise ConfigError(f"{source}: 'seeds' must be a list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{source}: 'seeds' repeats a seed: {value}")
    return list(value)


def load_grid(
    path: Union[str, Path], overrides: Optional[list[str]] = None, out: Optional[Union[str, Path]] = None
) -> Grid:
    """Read, merge, override and expand a grid file; every run config is validated."""
    path = Path(path)
    data = read_grid_file(path)
    overrides = list(overrides or [])
    scoped = [text for text in overrides if parse_override(text)[0][0] == "distill"]
    apply_overrides(data, [text for text in overrides if text not in scoped])
    source = str(path) + (" + overrides" if overrides else "")
    unknown = sorted(set(data) - set(CONFIG_SECTIONS) - set(GRID_KEYS))
    if "run_dir" in unknown:
        raise ConfigError(f"{source}: run_dir is set per run by the sweep; choose the folder with 'out' or --out")
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown}; a grid holds config sections "
            f"({', '.join(CONFIG_SECTIONS)}) and grid keys ({', '.join(GRID_KEYS[1:])})"
        )
    base = {key: data.get(key) or {} for key in CONFIG_SECTIONS}
    for key in CONFIG_SECTIONS:
        if not isinstance(base[key], dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping")
    plugins = load_plugins(data.get("plugins") or [], source)  # before the method names are checked
    if plugins:
        base["plugins"] = plugins  # each run's config.yaml lists them
    pairs = _pairs(data.get("pairs"), source)
    raw_methods = data.get("methods") or ["teacher", "vanilla", "l2d"]
    methods = [method_spec(entry, source) for entry in raw_methods]
    if data.get("vary") is not None:
        methods += vary_specs(data["vary"], source)
    methods = scope_distill_overrides(methods, scoped, source)
    labels = [m.label for m in methods]
    slugs = [m.slug for m in methods]
    for what, values in (("row label", labels), ("folder slug", slugs)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(
                f"{source}: methods repeat the {what}(s) {repeated}; give each entry a distinct name / slug"
            )
    seeds = _seeds(data.get("seeds", [0]), source)
    teachers = data.get("teachers", "per_seed")
    if teachers not in ("per_seed", "shared"):
        raise ConfigError(f"{source}: 'teachers' must be per_seed or shared, got {teachers!r}")
    models = data.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{source}: 'models' must map a model name to model-section keys")
    teacher_config = config_sections(data.get("teacher_config"), "'teacher_config'", source)
    required = list(data.get("required") or [])
    missing = [key for key in required if _get_path(data, key) in (None, "")]
    dataset = str(data.get("dataset") or base["data"].get("name") or "mosaic")
    out_dir = Path(out or data.get("out") or Path("runs") / path.stem)
    grid = Grid(
        path=path,
        name=str(data.get("name") or path.stem),
        dataset=dataset,
        paper=data.get("paper"),
        out=out_dir,
        pairs=pairs,
        methods=methods,
        seeds=seeds,
        teachers=teachers,
        required=required,
        missing=missing,
        runs=[],
    )
    _expand(grid, base, models, teacher_config, source)
    return grid


def _run_config(
    base: dict,
    models: dict,
    model: str,
    method: MethodSpec,
    seed: int,
    run_dir: Path,
    teacher_ckpt: Optional[Path],
    extra: Optional[dict],
    source: str,
) -> Config:
    cfg = deep_merge(base, extra or {})
    # models.<name> comes last: it may set `name` too (a timm variant or a stand-in network);
    # the run folders keep the grid's model name.
    cfg["model"] = deep_merge(deep_merge(cfg.get("model") or {}, {"name": model}), models.get(model, {}))
    name = "vanilla" if method.method == "teacher" else method.method
    cfg["distill"] = deep_merge(
        cfg.get("distill") or {},
        {
            "method": name,
            "teacher": str(teacher_ckpt) if teacher_ckpt else None,
            "weights": method.weights,
            "options": method.options,
        },
    )
    cfg["train"] = deep_merge(cfg.get("train") or {}, {"seed": seed})
    cfg["run_dir"] = str(run_dir)
    config = config_from_dict(cfg, f"{source} [{run_dir}]")
    try:  # named choices (dataset, head, method, terms) before any run folder is made
        check_config(config)
    except ConfigError as err:
        raise ConfigError(f"{source} [{run_dir}]: {err}") from None
    return config


def _expand(grid: Grid, base: dict, models: dict, teacher_config: dict, source: str) -> None:
    """Fill ``grid.runs`` (unique runs in training order: per seed, its teachers, then per pair
    the vanilla student and the methods) and ``grid.cells`` (each experiment's run)."""
    root = grid.out / grid.dataset
    runs: dict[Path, RunSpec] = {}
    teacher_spec = MethodSpec("teacher", "Teacher", "teacher")
    needs_teacher = any(m.method not in ("vanilla",) for m in grid.methods)

    def teacher_run(model: str, seed: int) -> RunSpec:
        tseed = grid.seeds[0] if grid.teachers == "shared" else seed
        run_dir = root / f"teacher-{model}" / f"seed{tseed}"
        if run_dir not in runs:
            cfg = _run_config(base, models, model, teacher_spec, tseed, run_dir, None, teacher_config, source)
            runs[run_dir] = RunSpec(
                run_dir, "teacher", grid.dataset, model, "vanilla", "Teacher", tseed, None, None, None, cfg
            )
        return runs[run_dir]

    for seed in grid.seeds:
        if needs_teacher:
            for pair in grid.pairs:
                teacher = teacher_run(pair.teacher, seed)
                if pair.label not in teacher.pairs:
                    teacher.pairs.append(pair.label)
        for pair in grid.pairs:
            for method in grid.methods:
                key = (pair.label, method.label, seed)
                if method.method == "teacher":
                    grid.cells[key] = teacher_run(pair.teacher, seed)
                    continue
                if method.method == "vanilla" and not (method.weights or method.options or method.config):
                    run_dir = root / f"student-{pair.student}" / f"seed{seed}"
                    if run_dir not in runs:
                        cfg = _run_config(base, models, pair.student, method, seed, run_dir, None, None, source)
                        runs[run_dir] = RunSpec(
                            run_dir,
                            "student",
                            grid.dataset,
                            pair.student,
                            "vanilla",
                            method.label,
                            seed,
                            None,
                            None,
                            None,
                            cfg,
                        )
                    runs[run_dir].pairs.append(pair.label)
                    grid.cells[key] = runs[run_dir]
                    continue
                teacher = teacher_run(pair.teacher, seed)
                ckpt = teacher.run_dir / "checkpoints" / "last.pt"
                run_dir = root / pair.folder / method.slug / f"seed{seed}"
                cfg = _run_config(base, models, pair.student, method, seed, run_dir, ckpt, method.config, source)
                runs[run_dir] = RunSpec(
                    run_dir,
                    "distill",
                    grid.dataset,
                    pair.student,
                    method.method,
                    method.label,
                    seed,
                    pair.teacher,
                    pair.student,
                    teacher.run_dir,
                    cfg,
                    [pair.label],
                )
                grid.cells[key] = runs[run_dir]
    grid.runs = list(runs.values())
