"""Models: timm backbone + label-wise embedding head (SPEC §2), built by name.

    from mlkd.models import build_model
    net = build_model("resnet34", num_classes=80)          # paper alias or any timm name
    out = net(images)                                        # ModelOutput
    out.logits [B,q], out.label_embeddings [B,q,768], out.pooled [B,F], out.features [NCHW maps]

Cheap names for tests / CPU demos: ``tiny`` (= timm ``test_resnet``), ``test_byobnet``,
``test_efficientnet``, ``resnet10t`` (see ``CHEAP_MODELS``).
"""

from mlkd.models.backbone import Backbone, create_timm_model
from mlkd.models.catalog import count_model, format_catalog, model_catalog
from mlkd.models.head import HEADS, HeadOutput, LabelWiseHead, LinearHead
from mlkd.models.net import (
    ALIASES,
    CHEAP_MODELS,
    PAPER_ALIASES,
    PAPER_BACKBONES,
    MultiLabelNet,
    build_model,
    list_paper_backbones,
    resolve_model_name,
)
from mlkd.models.output import ModelOutput
from mlkd.models.repvgg import can_reparameterize, deploy
from mlkd.models.weights import load_backbone_weights, read_state_dict

__all__ = [
    "ALIASES",
    "Backbone",
    "CHEAP_MODELS",
    "HEADS",
    "HeadOutput",
    "LabelWiseHead",
    "LinearHead",
    "ModelOutput",
    "MultiLabelNet",
    "PAPER_ALIASES",
    "PAPER_BACKBONES",
    "build_model",
    "can_reparameterize",
    "count_model",
    "create_timm_model",
    "deploy",
    "format_catalog",
    "list_paper_backbones",
    "load_backbone_weights",
    "model_catalog",
    "read_state_dict",
    "resolve_model_name",
]
