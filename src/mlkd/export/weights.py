"""safetensors export: the weights plus a ``config.json`` that rebuilds the model with mlkd.

A folder with ``model.safetensors`` (the training-form state dict: RepVGG branches unfused, so
it loads into ``build_model`` as is) and ``config.json`` (model config, classes, input size,
the data pipeline's normalisation, thresholds). ``load_safetensors(folder)`` rebuilds the
:class:`~mlkd.export.graph.InferenceNet` (fused, eval) from them; the export checks that the
rebuilt model reproduces the original's logits before the files are put in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mlkd import __version__
from mlkd.export.graph import ExportError, InferenceNet
from mlkd.export.parity import check_tolerance, fixed_batch_parity
from mlkd.export.source import Student
from mlkd.fileio import current_umask

WEIGHTS, CONFIG = "model.safetensors", "config.json"
FORMAT = 1


def export_safetensors(student: Student, out: str | Path, tolerance: float = 1e-5) -> dict:
    """Write ``out/model.safetensors`` and ``out/config.json``; returns the report."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "mlkd_version": __version__,
        "model": student.model_config,
        "classes": student.classes,
        "img_size": student.img_size,
        "input": "float32 [batch, 3, S, S], RGB in [0, 1], resized to S x S",
        "data_normalization": [list(v) for v in student.data_norm] if student.data_norm else None,
        "thresholds": student.thresholds,
        "thresholds_source": student.threshold_source,
        "weights_sha256": student.weights_sha256,
        "epoch": student.epoch,
        "rebuild": "from mlkd.export.weights import load_safetensors; net, config = load_safetensors(FOLDER)",
    }
    tmp = {name: out / f".{name}.{os.getpid()}.tmp" for name in (WEIGHTS, CONFIG)}
    try:
        tensors = {k: v.detach().clone().contiguous() for k, v in student.weights.items()}
        save_file(tensors, str(tmp[WEIGHTS]), metadata={"format": "pt", "mlkd_version": __version__})
        tmp[CONFIG].write_text(json.dumps(config, indent=1) + "\n")
        rebuilt, _ = load_safetensors(out, tmp[WEIGHTS], tmp[CONFIG])
        parity = fixed_batch_parity(student, lambda images: torch_outputs_of(rebuilt, images))
        parity["tolerance"] = tolerance
        check_tolerance(parity, "safetensors", tolerance)
        for name, path in tmp.items():
            os.chmod(path, 0o666 & ~current_umask())
            os.replace(path, out / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return {"format": "safetensors", "path": str(out), "bytes": (out / WEIGHTS).stat().st_size, **parity}


@torch.no_grad()
def torch_outputs_of(net: InferenceNet, images):
    logits, probs = net(torch.from_numpy(images))
    return logits.numpy(), probs.numpy()


def load_safetensors(
    folder: str | Path, weights: str | Path | None = None, config: str | Path | None = None
) -> tuple[InferenceNet, dict[str, Any]]:
    """(InferenceNet in eval mode with RepVGG branches fused, the config dict) from a folder
    written by ``mlkd export --format safetensors``."""
    from safetensors.torch import load_file

    from mlkd.config import ModelConfig
    from mlkd.engine.builders import model_from_config

    folder = Path(folder)
    config_path, weights_path = Path(config or folder / CONFIG), Path(weights or folder / WEIGHTS)
    try:
        info = json.loads(config_path.read_text())
        model_cfg = ModelConfig.model_validate(info["model"])
        classes = info["classes"]
    except (OSError, ValueError, KeyError) as err:
        raise ExportError(f"{config_path}: not an mlkd export config ({err})") from None
    model = model_from_config(model_cfg, len(classes), pretrained=False)
    model.load_state_dict(load_file(str(weights_path)))
    model.reparameterize()
    norm = info.get("data_normalization")
    return InferenceNet(model, tuple(tuple(v) for v in norm) if norm else None), info
