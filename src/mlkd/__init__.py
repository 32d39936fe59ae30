"""mlkd: multi-label knowledge distillation (L2D: MLD + CD + ID) and its baselines.

The Python API for a training loop of your own::

    import mlkd

    criterion = mlkd.build_objective("l2d")          # BCE + 10 MLD + 100 CD + 1000 ID
    head = mlkd.LabelWiseHead(in_dim=C, num_classes=q)  # features -> logits, label embeddings
    logits, embeddings, _ = head(feature_map)           # [B, q], [B, q, D]
    student_out = mlkd.ModelOutput(logits=logits, label_embeddings=embeddings)
    loss, parts = criterion(student_out, teacher_out, targets)   # parts: {"bce", "mld", "cd", "id"}

- ``Objective`` / ``build_objective(method, weights=None, options=None)``: the weighted sum
  of a named method's loss terms (``mlkd.losses``).
- ``ModelOutput``: what a model gives the objective (logits required; label_embeddings,
  pooled, features as the method's terms need them).
- ``LabelWiseHead``: the label-wise embedding head (features [B, C, h, w] -> logits [B, q],
  label embeddings [B, q, D]).
- ``build_model(name, num_classes)``: a timm backbone with that head (``MultiLabelNet``).
- ``pair_plan(host_targets)`` / ``PairPlan``: the CD/ID pairs of a batch built from its CPU
  labels; ``criterion(..., host_targets=targets_cpu)`` builds it per term so the loss makes
  no host synchronisation on an accelerator.

The names load on first use (``import mlkd`` does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Objective": "mlkd.losses.objective",
    "build_objective": "mlkd.losses.objective",
    "ModelOutput": "mlkd.models.output",
    "LabelWiseHead": "mlkd.models.head",
    "build_model": "mlkd.models",
    "pair_plan": "mlkd.losses.embedding",
    "PairPlan": "mlkd.losses.embedding",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlkd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
