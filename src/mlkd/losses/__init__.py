"""Losses of L2D and its baselines: pure functions first, then terms and the Objective.

Functional API (tensors in, scalar tensor out; teacher inputs are treated as constants):
bce_loss, mld_loss, ps_loss, logits_mse_loss (logits [B, q]); cd_loss, id_loss,
cd_id_losses, led_loss (label embeddings [B, q, D]); rkd_loss, pkt_loss (pooled [B, F]);
ReviewKD and hcl_loss (stage feature maps). ``build_objective(method)`` assembles a named
method (the ``METHODS`` registry, see ``methods.py``) from the ``LOSS_TERMS`` registry. A new
term subclasses ``LossTerm`` (``requires``, ``setup``, ``prepare``, ``group_key`` /
``compute_group``; see ``mlkd.losses.terms``) and registers itself with
``@LOSS_TERMS.register("name")``; ``register_method`` adds a method.
"""

from mlkd.losses.embedding import cd_id_losses, cd_loss, id_loss, led_loss
from mlkd.losses.feature import ReviewKD, hcl_loss, pkt_loss, rkd_loss
from mlkd.losses.logits import bce_loss, logits_mse_loss, mld_loss, ps_loss
from mlkd.losses.methods import (
    TEACHER_LABEL,
    Method,
    get_method,
    method_needs_teacher,
    method_weights,
    register_method,
    row_label,
    row_order,
)
from mlkd.losses.objective import Objective, build_objective
from mlkd.losses.terms import LossTerm
from mlkd.registries import LOSS_TERMS, METHODS

__all__ = [
    "LOSS_TERMS",
    "METHODS",
    "TEACHER_LABEL",
    "LossTerm",
    "Method",
    "Objective",
    "ReviewKD",
    "bce_loss",
    "build_objective",
    "cd_id_losses",
    "cd_loss",
    "get_method",
    "hcl_loss",
    "id_loss",
    "led_loss",
    "logits_mse_loss",
    "method_needs_teacher",
    "method_weights",
    "mld_loss",
    "pkt_loss",
    "ps_loss",
    "register_method",
    "rkd_loss",
    "row_label",
    "row_order",
]
