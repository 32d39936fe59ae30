"""Tiny configs for engine tests: digits mosaics and a small network, seconds per run."""

from __future__ import annotations

from pathlib import Path

from mlkd.config import config_from_dict

TINY_MODEL = {"name": "tiny", "embed_dim": 32, "ffn_dim": 64, "num_heads": 4}


def tiny_config(
    run_dir: Path,
    cache: Path,
    method: str = "vanilla",
    teacher: str | None = None,
    epochs: int = 2,
    model: dict | None = None,
    **sections,
) -> Config:  # noqa: F821
    data = {
        "name": "mosaic",
        "recipe": "none",
        "img_size": 32,
        "batch_size": 32,
        "num_workers": 0,
        "options": {"source": "digits", "num_train": 128, "num_test": 67, "seed": 0, "cache_dir": str(cache)},
    }
    cfg = {
        "run_dir": str(run_dir),
        "data": data,
        "model": dict(model or TINY_MODEL),
        "optim": {"lr": 1e-3, "epochs": epochs},
        "distill": {"method": method, "teacher": teacher},
        "train": {"seed": 0, "device": "cpu", "progress": "off"},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return config_from_dict(cfg, "test")
