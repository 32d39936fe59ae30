"""What every analysis shares: checkpoints by name, their common test split, one forward pass each.

An analysis runs on a set of checkpoints given as ``[NAME=]PATH`` (PATH a checkpoint file or a
run folder, whose ``checkpoints/last.pt`` is used; NAME defaults to the run folder's name).
All models are scored on ONE test split: the data config of the first checkpoint (or the one
given), with every checkpoint's class list checked against it (never a silent permutation).
This is the split the runs were evaluated on, since a student and its teacher always see the
same data.

Roles: the *teacher* is the checkpoint the others were distilled from (a student's
``distill.teacher`` naming one of the given files), else the first one given; the *baseline*
(the vanilla student, the "Student" row) is the first other checkpoint trained with method
``vanilla``, else the second one given. Both can be named explicitly.

``Analysis.outputs(name)`` runs one forward pass over the test split per model (cached) and
keeps, in dataset order: logits [N,q] and probabilities [N,q] (float32, ``sigmoid(logits)`` as
``mlkd eval`` computes them, so the APs equal the run's logged ones), the pooled feature [N,F],
the label-wise embeddings [N,q,D] (on request; None for a linear head) and the targets [N,q].
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from mlkd import optional
from mlkd.engine.checkpoint import checkpoint_file
from mlkd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A checkpoint's network (eval mode) with its name, file, method and saved state."""

    name: str
    path: Path
    model: nn.Module
    state: dict
    method: str
    teacher_path: Optional[str]


def write_json(summary: dict, path: Path) -> None:
    """An analysis summary as JSON (NaN, e.g. a score undefined for a model, as null)."""
    from mlkd.engine.logs import json_safe

    path.write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")


def parse_spec(spec: str) -> tuple[Optional[str], Path]:
    """``NAME=PATH`` or ``PATH`` -> (name or None, checkpoint file); a run folder -> its last.pt."""
    name, sep, rest = spec.partition("=")
    if sep and name and not Path(spec).exists():
        path = Path(rest)
    else:
        name, path = None, Path(spec)
    path = checkpoint_file(path)
    if not path.is_file():
        raise ConfigError(
            f"analysis: checkpoint not found: {path} (give NAME=PATH with PATH a "
            "checkpoint file or a run folder holding checkpoints/last.pt)"
        )
    return name, path


def default_name(path: Path) -> str:
    """The run folder's name for ``run/checkpoints/last.pt``, else the file's stem."""
    if path.parent.name == "checkpoints":
        return path.parent.parent.name or path.stem
    return path.stem


def load_models(specs: Sequence[str], device: torch.device) -> list[LoadedModel]:
    """Load every ``[NAME=]PATH``; names must be unique."""
    from mlkd.engine.builders import model_from_checkpoint

    if not specs:
        raise ConfigError("analysis: give at least one checkpoint ([NAME=]PATH)")
    loaded = []
    for spec in specs:
        name, path = parse_spec(spec)
        model, state = model_from_checkpoint(path, device)
        distill = state["config"].get("distill", {})
        loaded.append(
            LoadedModel(
                name or default_name(path), path, model, state, distill.get("method", "vanilla"), distill.get("teacher")
            )
        )
    names = [m.name for m in loaded]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"analysis: model names must be unique, {duplicates} repeat; name them as NAME=PATH")
    return loaded


def infer_roles(
    models: list[LoadedModel], teacher: Optional[str] = None, baseline: Optional[str] = None
) -> tuple[str, Optional[str]]:
    """(teacher name, baseline name or None when only the teacher is given); see module doc."""
    names = [m.name for m in models]
    for given, role in ((teacher, "teacher"), (baseline, "baseline")):
        if given is not None and given not in names:
            raise ConfigError(f"analysis: --{role} {given!r} is not one of the models {names}")
    if teacher is None:
        resolved = {m.path.resolve(): m.name for m in models}
        named = [resolved.get(Path(m.teacher_path).resolve()) for m in models if m.teacher_path]
        teacher = next((n for n in named if n is not None), names[0])
    if baseline is None:
        others = [m for m in models if m.name != teacher]
        vanilla = [m for m in others if m.method == "vanilla"]
        baseline = (vanilla or others or [None])[0]
        baseline = baseline.name if baseline is not None else None
    return teacher, baseline


@dataclass
class Analysis:
    """Models, their shared test split (``dataset``, possibly the first ``limit`` images of
    ``test_set``) and a cache of their outputs on it."""

    models: list[LoadedModel]
    test_set: object
    dataset: object
    data_cfg: object
    device: torch.device
    teacher: str
    baseline: Optional[str]
    batch_size: Optional[int] = None
    _cache: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.test_set.classes)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def students(self) -> list[str]:
        return [n for n in self.names if n != self.teacher]

    def get(self, name: str) -> LoadedModel:
        return next(m for m in self.models if m.name == name)

    def outputs(self, name: str, embeddings: bool = False) -> dict[str, Optional[np.ndarray]]:
        """{"logits", "scores" [N,q] f32, "pooled" [N,F] f32, "label_embeddings" [N,q,D] f32 | None,
        "targets" [N,q] uint8, "index" [N]} of model ``name`` on the test split (cached)."""
        cached = self._cache.get(name)
        if cached is None or (embeddings and "label_embeddings" not in cached):
            cached = self._forward(self.get(name), embeddings)
            self._cache[name] = cached
        return cached

    def release(self, name: str, key: str) -> None:
        """Drop one cached output of model ``name`` (e.g. its label-wise embeddings, N*q*D floats)."""
        self._cache.get(name, {}).pop(key, None)

    def _forward(self, loaded: LoadedModel, embeddings: bool) -> dict:
        from mlkd.config import Config
        from mlkd.data.loaders import eval_loader
        from mlkd.engine.distributed import DistInfo
        from mlkd.engine.runtime import resolve_precision

        precision = resolve_precision(Config.model_validate(loaded.state["config"]).train.amp, self.device)
        cfg = (
            self.data_cfg.model_copy(update={"eval_batch_size": self.batch_size}) if self.batch_size else self.data_cfg
        )
        loader = eval_loader(self.dataset, cfg, DistInfo(), self.device.type == "cuda")
        keep: dict[str, list] = {"logits": [], "pooled": [], "targets": [], "index": []}
        if embeddings:
            keep["label_embeddings"] = []
        model = loaded.model.eval()
        with torch.no_grad():
            for batch in loader:
                if batch["images"] is None:
                    continue
                with precision.autocast(self.device):
                    out = model(batch["images"].to(self.device))
                keep["logits"].append(out.logits.float().cpu())
                keep["pooled"].append(out.pooled.float().cpu())
                if embeddings and out.label_embeddings is not None:
                    keep["label_embeddings"].append(out.label_embeddings.float().cpu())
                keep["targets"].append(batch["targets"].to(torch.uint8))
                keep["index"].append(batch["index"])
        if not keep["logits"]:
            raise ConfigError("analysis: the test split yielded no readable image")
        result = {key: torch.cat(values).numpy() if values else None for key, values in keep.items()}
        result["scores"] = torch.sigmoid(torch.from_numpy(result["logits"])).numpy()
        log.info("%s: %d test images through the model", loaded.name, len(result["index"]))
        return result

    def targets(self) -> np.ndarray:
        """[N,q] uint8 targets of the (possibly limited) test split, in dataset order."""
        return self.outputs(self.names[0])["targets"]

    def image(self, i: int) -> np.ndarray:
        """Test image ``i`` (position in ``dataset``) as float [H,W,3] in [0,1] for display."""
        from mlkd.data.transforms import IMAGENET_MEAN, IMAGENET_STD

        item = self.dataset[i]
        if item is None:
            raise ConfigError(f"analysis: test image {i} is unreadable")
        image = item[0].float()
        if getattr(self.data_cfg, "normalize", False):
            image = image * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        return image.clamp(0, 1).permute(1, 2, 0).numpy()

    def input_batch(self, positions: Sequence[int]) -> torch.Tensor:
        """The model inputs [B,3,H,W] of the test images at ``positions`` (in ``dataset``)."""
        items = [self.dataset[int(i)] for i in positions]
        if any(item is None for item in items):
            raise ConfigError("analysis: a chosen test image is unreadable; choose others")
        return torch.stack([item[0] for item in items]).to(self.device)


def open_analysis(
    specs: Sequence[str],
    config: Optional[str] = None,
    device: str = "auto",
    limit: Optional[int] = None,
    teacher: Optional[str] = None,
    baseline: Optional[str] = None,
    batch_size: Optional[int] = None,
    overrides: Sequence[str] = (),
) -> Analysis:
    """Load the checkpoints and their shared test split (the first ``limit`` images when given)."""
    from mlkd.config import Config, load_config
    from mlkd.data.loaders import build_datasets
    from mlkd.engine.checkpoint import check_classes
    from mlkd.engine.runtime import resolve_device

    torch_device = resolve_device(device)
    models = load_models(specs, torch_device)
    if config or overrides:
        data_cfg = load_config(config, list(overrides)).data
    else:
        data_cfg = Config.model_validate(models[0].state["config"]).data
        for m in models[1:]:
            other = Config.model_validate(m.state["config"]).data
            if other.model_dump(exclude={"batch_size", "eval_batch_size", "num_workers"}) != data_cfg.model_dump(
                exclude={"batch_size", "eval_batch_size", "num_workers"}
            ):
                log.warning(
                    "%s was trained with another data config than %s; every model is scored on %s's test split",
                    m.name,
                    models[0].name,
                    models[0].name,
                )
    _, test_set = build_datasets(data_cfg)
    for m in models:
        check_classes(m.state["classes"], list(test_set.classes), f"checkpoint {m.path}")
    dataset = test_set
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"analysis: --limit must be >= 1, got {limit}")
        dataset = Subset(test_set, range(min(limit, len(test_set))))
        dataset.classes = test_set.classes  # type: ignore[attr-defined]
    teacher_name, baseline_name = infer_roles(models, teacher, baseline)
    return Analysis(models, test_set, dataset, data_cfg, torch_device, teacher_name, baseline_name, batch_size)


def parse_int_list(text: Optional[str], name: str) -> Optional[list[int]]:
    """'0,5,9' -> [0, 5, 9]; None stays None."""
    if text is None:
        return None
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"analysis: {name} must be a comma-separated list of integers, got {text!r}") from None


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    return optional.pyplot("the analysis figures")
