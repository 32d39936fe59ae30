"""Parity of an export with the PyTorch model it came from: a fixed batch, and the test split's mAP.

``fixed_batch_parity`` runs both on reproducible uniform images at several batch sizes (so the
dynamic batch axis is exercised) and returns the largest absolute differences of logits and
probabilities. ``map_parity`` scores the run's test split with both and compares their mAP
(``mlkd.metrics``): equal within ``MAP_TOLERANCE_POINTS`` points.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch

from mlkd.export.graph import ExportError
from mlkd.export.source import Student, fixed_batch

log = logging.getLogger("mlkd")

#: Largest absolute logit difference an export may show on the fixed batches.
LOGIT_TOLERANCE = 1e-3
#: Largest mAP difference (in points, i.e. percent) between export and PyTorch on the test split.
MAP_TOLERANCE_POINTS = 0.01
PARITY_BATCHES = (1, 5)

#: images float32 [B,3,S,S] -> (logits [B,q], probabilities [B,q]) as numpy arrays.
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@torch.no_grad()
def torch_outputs(student: Student, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, probs = student.net(torch.from_numpy(images))
    return logits.numpy(), probs.numpy()


def fixed_batch_parity(student: Student, run: Runner, batches: Sequence[int] = PARITY_BATCHES) -> dict:
    """{"max_abs_logit_diff", "max_abs_probability_diff", "batches"} of ``run`` vs PyTorch."""
    logit_diff = prob_diff = 0.0
    for seed, batch in enumerate(batches):
        images = fixed_batch(batch, student.img_size, seed).numpy()
        ref_logits, ref_probs = torch_outputs(student, images)
        logits, probs = run(images)
        if logits.shape != ref_logits.shape:
            raise ExportError(
                f"export parity: logits of shape {logits.shape} at batch {batch}, PyTorch gives {ref_logits.shape}"
            )
        logit_diff = max(logit_diff, float(np.abs(logits - ref_logits).max()))
        prob_diff = max(prob_diff, float(np.abs(probs - ref_probs).max()))
    return {"max_abs_logit_diff": logit_diff, "max_abs_probability_diff": prob_diff, "batches": list(batches)}


def check_tolerance(parity: dict, fmt: str, tolerance: float) -> None:
    diff = parity["max_abs_logit_diff"]
    if not diff <= tolerance:  # NaN fails too
        raise ExportError(
            f"{fmt} export refused: its logits differ from PyTorch's by up to {diff:.3g} "
            f"(tolerance {tolerance:g}) on the fixed batches {parity['batches']}; nothing written"
        )


def map_parity(student: Student, run: Runner, limit: int | None = None) -> dict:
    """mAP of the export and of PyTorch on the run's test split (``data.holdout`` 0), in points;
    an ExportError when they differ by more than ``MAP_TOLERANCE_POINTS``."""
    from mlkd.data.loaders import build_datasets, eval_loader
    from mlkd.engine.distributed import DistInfo
    from mlkd.metrics import multilabel_metrics

    data_cfg = student.config.data.model_copy(update={"holdout": 0.0})
    _, test_set = build_datasets(data_cfg)
    loader = eval_loader(test_set, data_cfg, DistInfo(), False)
    ours, theirs, targets, logit_diff = [], [], [], 0.0
    for batch in loader:
        if batch["images"] is None:
            continue
        images = batch["images"].numpy().astype(np.float32)
        ref_logits, ref_probs = torch_outputs(student, images)
        logits, probs = run(images)
        logit_diff = max(logit_diff, float(np.abs(logits - ref_logits).max()))
        ours.append(probs)
        theirs.append(ref_probs)
        targets.append(batch["targets"].numpy())
        if limit and sum(len(t) for t in targets) >= limit:
            break
    target = np.concatenate(targets)
    export_map = 100 * multilabel_metrics(np.concatenate(ours), target)["mAP"]
    torch_map = 100 * multilabel_metrics(np.concatenate(theirs), target)["mAP"]
    result = {
        "images": int(len(target)),
        "map_export": export_map,
        "map_pytorch": torch_map,
        "map_diff_points": abs(export_map - torch_map),
        "max_abs_logit_diff": logit_diff,
        "tolerance_points": MAP_TOLERANCE_POINTS,
    }
    if not result["map_diff_points"] <= MAP_TOLERANCE_POINTS:
        raise ExportError(
            f"export mAP {export_map:.4f} vs PyTorch {torch_map:.4f} on the test split "
            f"({len(target)} images): differ by more than {MAP_TOLERANCE_POINTS} points"
        )
    return result
