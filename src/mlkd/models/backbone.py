"""The timm backbone wrapper: stage features and the final feature map from ONE forward.

Uses timm's ``forward_intermediates`` on a plain timm model built with ``num_classes=0`` (no
classifier), so its state dict keys are exactly those of a timm checkpoint and pretrained files
load without renaming. Swin's NHWC outputs are returned as NCHW.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from mlkd.errors import ConfigError
from mlkd.models.weights import PretrainedArg, create_with_hub_weights, load_backbone_weights


def create_timm_model(
    timm_name: str, hub_weights: bool = False, img_size: Optional[int] = None, **kwargs: Any
) -> nn.Module:
    """A timm model without classifier; ``img_size`` is passed on to models that accept it.

    Models whose constructor has no ``img_size`` (ResNets, RepVGG, MobileNetV2) take any input
    size >= 32 and simply ignore it.
    """
    import timm

    if not timm.is_model(timm_name):
        raise ConfigError(
            f"model.name: unknown model {timm_name!r}; use a paper alias (see "
            "mlkd.models.list_paper_backbones()) or a timm name (timm.list_models())"
        )
    kwargs = {"num_classes": 0, **kwargs}
    create = create_with_hub_weights if hub_weights else (lambda n, **kw: timm.create_model(n, **kw))
    if img_size is not None:
        try:
            return create(timm_name, img_size=img_size, **kwargs)
        except TypeError as err:
            if "img_size" not in str(err):
                raise
    return create(timm_name, **kwargs)


class Backbone(nn.Module):
    """A timm network seen as ``x [B,3,H,W] -> (final [B,F,h,w], stage maps [B,C_s,H_s,W_s])``.

    Attributes:
        model:            the timm model (``num_classes=0``).
        timm_name:        its timm name.
        feature_indices:  timm feature-info indices of the returned stages (the last
                          ``feature_stages`` of ``model.feature_info``).
        feature_channels: channel count C_s of each returned stage map.
        feature_reductions: stride of each returned stage map w.r.t. the input.
        pooled_dim:       F, channels of the final map (``model.num_features``; e.g. 1280 for
                          MobileNetV2, whose final 1x1 conv follows its last stage).
    """

    model: Any  # a timm model: pretrained_cfg, feature_info, forward_intermediates beyond nn.Module's typing

    def __init__(
        self,
        timm_name: str,
        pretrained: PretrainedArg = False,
        img_size: Optional[int] = None,
        feature_stages: int = 4,
        **timm_kwargs: Any,
    ):
        super().__init__()
        hub = pretrained is True
        self.model = create_timm_model(timm_name, hub_weights=hub, img_size=img_size, **timm_kwargs)
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(
                f"model.name: timm model {timm_name!r} has no forward_intermediates; pick another backbone"
            )
        if pretrained not in (None, False, True):
            classifier = self.model.pretrained_cfg.get("classifier") or ()
            classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
            load_backbone_weights(self.model, str(pretrained), ignore_prefixes=tuple(f"{c}." for c in classifier))
        self.timm_name = timm_name
        info = list(self.model.feature_info)
        if feature_stages < 1:
            raise ConfigError(f"model.options.feature_stages must be >= 1, got {feature_stages}")
        self.feature_indices = list(range(max(0, len(info) - feature_stages), len(info)))
        self.feature_channels = [int(info[i]["num_chs"]) for i in self.feature_indices]
        self.feature_reductions = [int(info[i]["reduction"]) for i in self.feature_indices]
        self.pooled_dim = int(self.model.num_features)
        self.final_fmt = getattr(self.model, "output_fmt", "NCHW")
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B,3,H,W] -> (final map [B,F,h,w] (or tokens [B,T,F] for ViT-like models), stage maps NCHW)."""
        final, stages = self.model.forward_intermediates(x, indices=self.feature_indices, norm=False)
        if final.ndim == 4 and self.final_fmt == "NHWC":
            final = final.permute(0, 3, 1, 2)
        elif final.ndim == 3:
            final = final[:, self.num_prefix_tokens :]
        return final, list(stages)
