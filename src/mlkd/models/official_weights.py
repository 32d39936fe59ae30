"""The ImageNet weights the official L2D code starts from, as timm pretrained tags.

``pretrained: true`` alone takes timm's *default* tag of each architecture (for the ResNets
``a1_in1k`` / ``a1h_in1k``, WRN-50 ``racm_in1k``, Swin-S ``ms_in22k_ft_in1k``: stronger
recipes than the paper's). The official code loads torchvision's v1 files for the ResNets and
WRNs, the Swin v1.0.0 ImageNet-1k release for Swin-T/S, RepVGG's own ``RepVGG-A*-train.pth`` and
d-li14's MobileNetV2. :data:`OFFICIAL_WEIGHTS` names, per paper backbone, the timm tag that holds
those weights and how sure that is; ``configs/recipes/official.yaml`` selects the same tags
(``models.<alias>.name``), and ``mlkd models`` prints them. Nothing here downloads: the tags
are checked through ``timm.get_pretrained_cfg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SAME = "same release"  # timm's tag points at the official code's source release
PORT = "port, unverified"  # timm's only tag says it is ported from that release
NO_EQUAL = "no timm equal"  # timm holds other weights only: pass a file to match


@dataclass(frozen=True)
class OfficialWeights:
    """One paper backbone: the official code's weights, the timm tag the official recipe uses
    (None: timm's default tag, see ``note``), and how the two relate (:data:`SAME` ...)."""

    official: str
    timm_tag: Optional[str]
    match: str
    note: str = ""


_TV = "torchvision v1 ImageNet weights ({file})"
_SWIN = "Swin v1.0.0 ImageNet-1k release ({file})"

OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    "resnet18": OfficialWeights(_TV.format(file="resnet18-5c106cde.pth"), "resnet18.tv_in1k", SAME),
    "resnet34": OfficialWeights(_TV.format(file="resnet34-333f7ec4.pth"), "resnet34.tv_in1k", SAME),
    "resnet50": OfficialWeights(_TV.format(file="resnet50-19c8e357.pth"), "resnet50.tv_in1k", SAME),
    "resnet101": OfficialWeights(_TV.format(file="resnet101-5d3b4d8f.pth"), "resnet101.tv_in1k", SAME),
    "wrn50": OfficialWeights(_TV.format(file="wide_resnet50_2-95faca4d.pth"), "wide_resnet50_2.tv_in1k", SAME),
    "wrn101": OfficialWeights(_TV.format(file="wide_resnet101_2-32ee1156.pth"), "wide_resnet101_2.tv_in1k", SAME),
    "repvgg_a0": OfficialWeights(
        "RepVGG's release (RepVGG-A0-train.pth)",
        "repvgg_a0.rvgg_in1k",
        PORT,
        "timm's only RepVGG-A0 tag; timm credits DingXiaoH/RepVGG for it, not checked to be the same file",
    ),
    "repvgg_a2": OfficialWeights(
        "RepVGG's release (RepVGG-A2-train.pth)",
        "repvgg_a2.rvgg_in1k",
        PORT,
        "timm's only RepVGG-A2 tag; timm credits DingXiaoH/RepVGG for it, not checked to be the same file",
    ),
    "swin_t": OfficialWeights(
        _SWIN.format(file="swin_tiny_patch4_window7_224.pth"), "swin_tiny_patch4_window7_224.ms_in1k", SAME
    ),
    "swin_s": OfficialWeights(
        _SWIN.format(file="swin_small_patch4_window7_224.pth"), "swin_small_patch4_window7_224.ms_in1k", SAME
    ),
    "mobilenetv2": OfficialWeights(
        "d-li14's MobileNetV2 1.0 (mobilenetv2_1.0-f2a8633.pth.tar)",
        None,
        NO_EQUAL,
        "timm has only its own mobilenetv2_100.ra_in1k; to match, convert d-li14's file to timm's "
        "keys and pass it: models.mobilenetv2.pretrained=/path/file.safetensors",
    ),
}


def official_weights(name: str) -> Optional[OfficialWeights]:
    """The official code's weights of paper backbone ``name`` (a paper alias), else None."""
    return OFFICIAL_WEIGHTS.get(name)


def describe_official(name: str) -> str:
    """One line for ``mlkd models``: the timm tag of the official code's weights, or why none."""
    entry = official_weights(name)
    if entry is None:
        return "- (not in the paper)"
    tag = f"`{entry.timm_tag}`" if entry.timm_tag else "timm default"
    return f"{tag} ({entry.match}: {entry.official})" + (f"; {entry.note}" if entry.note else "")
