"""Multi-label metrics: mAP, per-class AP, and OF1/CF1 (+ OP/OR/CP/CR) under named protocols.

Inputs are ``scores [N, q]`` and ``targets [N, q]`` (0/1), as numpy arrays or torch tensors
of any float dtype on any device; both are moved to CPU float64 numpy first.

mAP is threshold-free. F1 needs a binarisation rule, so every F1 carries its protocol:

- ``oracle-k``: each image predicts its top-k classes, k = its number of true labels (the
  official L2D evaluation; it reads the test labels). An image with no label predicts nothing.
- ``oracle-k-strict``: the official code's exact rule: predict the classes scoring strictly
  above the image's (k+1)-th highest score (all classes when k = q). On a tie at the boundary it
  predicts fewer than k; saturated probabilities (many exactly 1.0) make this matter.
- ``thr@<t>``: predict class c when ``score >= t`` (greater *or equal*). Thresholds apply to
  the values given: the engine passes probabilities, so ``thr@0.5``; on logits use ``thr@0``.
- ``topk@<k>``: each image predicts its top-k classes (k >= 1; k > q predicts every class).
- ``calibrated``: predict class c when ``score >= t_c``, with per-class thresholds ``t [q]``
  chosen on a validation split (``mlkd calibrate``, :mod:`mlkd.calibration`) and passed as
  ``thresholds``; without them the protocol is an error.

Ties in the top-k rules are broken deterministically: among equal scores the lower class
index ranks first, so an image always predicts exactly k classes. (The official L2D code
instead keeps only scores strictly above its (k+1)-th score, which predicts fewer than k
classes when the boundary is tied and fails on an image carrying every label:
``oracle-k-strict`` reproduces it, predicting every class on such an image.)

Averages (they match scikit-learn with ``zero_division=0`` on the same predictions):

- ``AP``: per class, non-interpolated average precision exactly as
  ``sklearn.metrics.average_precision_score`` (precision taken at each distinct score, so tied
  scores enter together). NaN for a class with no positive; such classes are left out of
  ``mAP`` and counted in ``num_classes_excluded``.
- ``CP``/``CR``/``CF1``: mean over **all** q classes of per-class precision / recall / F1
  (sklearn ``average="macro"``), a 0/0 counting as 0. So a class with no positive is *not*
  excluded here: it always contributes 0 to CP, CR and CF1 (it has no true positive).
  CF1 is the mean of per-class F1, not the harmonic mean of CP and CR.
- ``OP``/``OR``/``OF1``: micro averages over all (image, class) pairs.

NaN scores raise ValueError; +-inf scores are accepted (equal infinities tie). Per-class AP
keeps NaN for excluded classes, which ``json.dumps`` writes as ``NaN``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from mlkd.errors import ConfigError, quote

__all__ = [
    "CALIBRATED",
    "DEFAULT_PROTOCOLS",
    "HEADLINE_METRICS",
    "SCALAR_METRICS",
    "Protocol",
    "average_precision",
    "binarize",
    "evaluate_protocols",
    "multilabel_metrics",
    "parse_protocol",
]

DEFAULT_PROTOCOLS: tuple[str, ...] = ("thr@0.5", "oracle-k")
#: The paper's three headline metrics (the columns of its tables).
HEADLINE_METRICS: tuple[str, ...] = ("mAP", "OF1", "CF1")
#: Every scalar metric ``multilabel_metrics`` returns under a protocol (what the logs show).
SCALAR_METRICS: tuple[str, ...] = (*HEADLINE_METRICS, "CP", "CR", "OP", "OR")
#: The protocol of per-class thresholds chosen on a validation split (``mlkd calibrate``).
CALIBRATED = "calibrated"
_VALID_FORMS = (
    "'oracle-k', 'oracle-k-strict', 'calibrated' (per-class thresholds of mlkd calibrate), "
    "'thr@<t>' (t a finite number, e.g. 'thr@0.5'), "
    "'topk@<k>' (k a positive integer, e.g. 'topk@3')"
)


@dataclass(frozen=True)
class Protocol:
    """A parsed binarisation rule. ``kind`` is 'oracle-k', 'oracle-k-strict', 'calibrated', 'thr' or 'topk'."""

    kind: str
    value: float | int | None = None

    @property
    def name(self) -> str:
        """Canonical tag, e.g. 'thr@0.5', 'topk@3', 'oracle-k'."""
        if self.kind.startswith("oracle-k") or self.kind == CALIBRATED:
            return self.kind
        if self.kind == "thr":
            t = float(self.value)  # type: ignore[arg-type]
            short = format(t, "g")
            return f"thr@{short if float(short) == t else repr(t)}"
        return f"topk@{self.value}"


def parse_protocol(protocol: str | Protocol) -> Protocol:
    """Parse 'oracle-k' | 'oracle-k-strict' | 'calibrated' | 'thr@<t>' | 'topk@<k>'; else a ConfigError
    (a ValueError)."""
    if isinstance(protocol, Protocol):
        return protocol
    if not isinstance(protocol, str):
        raise ConfigError(f"metrics protocol must be a string, got {quote(protocol)}; valid forms: {_VALID_FORMS}")
    text = protocol.strip()
    if text in ("oracle-k", "oracle-k-strict", CALIBRATED):
        return Protocol(text)
    kind, sep, arg = text.partition("@")
    if sep and kind == "thr":
        try:
            t = float(arg)
        except ValueError:
            t = math.nan
        if math.isfinite(t):
            return Protocol("thr", t)
    elif sep and kind == "topk":
        if arg.isascii() and arg.isdigit() and int(arg) >= 1:  # isdigit alone takes '²', int() does not
            return Protocol("topk", int(arg))
    raise ConfigError(f"invalid metrics protocol {quote(protocol)}; valid forms: {_VALID_FORMS}")


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        arr = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape [N, q] with q >= 1, got shape {tuple(arr.shape)}")
    return arr


def _prepare_scores(scores: Any) -> np.ndarray:
    s = _as_array(scores, "scores")
    if np.isnan(s).any():
        raise ValueError(
            f"scores contain {int(np.isnan(s).sum())} NaN values; metrics need "
            "numeric scores (check the model output for divergence)"
        )
    return s


def _prepare(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _prepare_scores(scores)
    t = _as_array(targets, "targets")
    if s.shape != t.shape:
        raise ValueError(f"scores {tuple(s.shape)} and targets {tuple(t.shape)} must have the same shape [N, q]")
    bad = (t != 0) & (t != 1)
    if bad.any():
        raise ValueError(f"targets must be 0/1, found {int(bad.sum())} other values (e.g. {t[bad][0]!r})")
    return s, t.astype(bool)


def _ranks(s: np.ndarray) -> np.ndarray:
    """Rank of each class within its image [N, q]: 0 = highest; ties -> lower index first."""
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty(s.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(s.shape[1])[None, :], axis=1)
    return ranks


def _above_kplus1(s: np.ndarray, k: np.ndarray) -> np.ndarray:
    """[N, q] bool: scores strictly above each image's (k+1)-th highest score (k [N, 1])."""
    ranked = np.concatenate([-np.sort(-s, axis=1), np.full((len(s), 1), -np.inf)], axis=1)
    return s > np.take_along_axis(ranked, k.astype(np.int64), axis=1)


def binarize(scores: Any, protocol: str | Protocol, targets: Any = None, thresholds: Any = None) -> np.ndarray:
    """Predicted label sets [N, q] (bool) from ``scores [N, q]`` under ``protocol``.

    ``targets [N, q]`` (0/1) is needed only by the oracle-k rules (k_i = labels of image i),
    ``thresholds [q]`` only by ``calibrated``.
    """
    p = parse_protocol(protocol)
    if p.kind == CALIBRATED:
        s = _prepare_scores(scores)
        return _predictions(p, s, None, thresholds=_thresholds(thresholds, s.shape[1]))
    if p.kind.startswith("oracle-k"):
        if targets is None:
            raise ValueError(f"protocol {p.name!r} needs targets [N, q] (k = labels per image)")
        s, t = _prepare(scores, targets)
        return _predictions(p, s, t)
    return _predictions(p, _prepare_scores(scores), None)


def _thresholds(thresholds: Any, q: int) -> np.ndarray:
    """Per-class thresholds as float64 [q]; a ConfigError when absent or of another length."""
    if thresholds is None:
        raise ConfigError(
            "protocol 'calibrated' needs per-class thresholds: run `mlkd calibrate RUN` "
            "first (it writes RUN/thresholds.json)"
        )
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if th.shape != (q,) or np.isnan(th).any():
        raise ConfigError(
            f"protocol 'calibrated': {th.shape[0]} thresholds for {q} classes; recalibrate (mlkd calibrate RUN)"
        )
    return th


def _predictions(
    p: Protocol,
    s: np.ndarray,
    t: Optional[np.ndarray],
    ranks: Optional[np.ndarray] = None,
    thresholds: Optional[np.ndarray] = None,
) -> np.ndarray:
    """[N, q] bool under ``p``; ``t`` (bool targets) for the oracle-k rules, ``ranks`` = _ranks(s)
    when already computed, ``thresholds [q]`` for ``calibrated``."""
    if p.kind == "thr":
        return s >= p.value
    if p.kind == CALIBRATED:
        return s >= thresholds[None, :]
    if p.kind == "oracle-k-strict":
        return _above_kplus1(s, t.sum(axis=1, keepdims=True))
    ranks = _ranks(s) if ranks is None else ranks
    return ranks < (t.sum(axis=1, keepdims=True) if p.kind == "oracle-k" else p.value)


def average_precision(scores: Any, targets: Any) -> np.ndarray:
    """Per-class non-interpolated AP [q] as sklearn computes it; NaN for a class with no positive.

    ``scores [N, q]``, ``targets [N, q]`` (0/1). Precision is evaluated at each distinct score
    (the last row of each group of tied scores), so ties are handled as sklearn handles them.
    """
    s, t = _prepare(scores, targets)
    return _average_precision(s, t)


def _average_precision(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    n, q = s.shape
    ap = np.full(q, np.nan)
    if n == 0:
        return ap
    # Work class-major [q, N] (contiguous rows sort fast). The order inside a group of tied
    # scores is irrelevant: every member gets the precision at the end of its group.
    s_cls, t_cls = np.ascontiguousarray(s.T), np.ascontiguousarray(t.T)
    order = np.argsort(-s_cls, axis=1)
    s_sorted = np.take_along_axis(s_cls, order, axis=1)
    t_sorted = np.take_along_axis(t_cls, order, axis=1)
    tps = np.cumsum(t_sorted, axis=1, dtype=np.float64)
    # For every sorted position, where its tie group ends (next score differs, or the end).
    group_last = np.ones((q, n), dtype=bool)
    group_last[:, :-1] = s_sorted[:, 1:] != s_sorted[:, :-1]
    pos = np.arange(n)[None, :]
    end = np.minimum.accumulate(np.where(group_last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    precision_at_end = np.take_along_axis(tps, end, axis=1) / (end + 1)
    # AP = sum over distinct thresholds of (recall step) * precision
    #    = mean over positives of the precision at the end of their tie group.
    num_pos = tps[:, -1]
    has_pos = num_pos > 0
    ap[has_pos] = (precision_at_end * t_sorted).sum(axis=1)[has_pos] / num_pos[has_pos]
    return ap


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise with 0 where b == 0 (sklearn zero_division=0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _f1_from_predictions(pred: np.ndarray, t: np.ndarray) -> dict[str, float]:
    tp = (pred & t).sum(axis=0)
    fp = (pred & ~t).sum(axis=0)
    fn = (~pred & t).sum(axis=0)
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    return {
        "OF1": float(_div(2 * TP, 2 * TP + FP + FN)),
        "CF1": float(_div(2 * tp, 2 * tp + fp + fn).mean()),
        "CP": float(_div(tp, tp + fp).mean()),
        "CR": float(_div(tp, tp + fn).mean()),
        "OP": float(_div(TP, TP + FP)),
        "OR": float(_div(TP, TP + FN)),
    }


def _report(ap: np.ndarray, pred: np.ndarray, t: np.ndarray, name: str) -> dict[str, Any]:
    valid = ~np.isnan(ap)
    out: dict[str, Any] = {"mAP": float(ap[valid].mean()) if valid.any() else math.nan}
    out.update(_f1_from_predictions(pred, t))
    out.update(
        AP=[float(a) for a in ap], protocol=name, num_classes_excluded=int((~valid).sum()), num_images=int(t.shape[0])
    )
    return out


def multilabel_metrics(
    scores: Any, targets: Any, protocol: str | Protocol = "thr@0.5", thresholds: Any = None
) -> dict[str, Any]:
    """All metrics for ``scores [N, q]`` and ``targets [N, q]`` (0/1) under one protocol.

    Returns a dict: ``mAP, OF1, CF1, CP, CR, OP, OR`` (python floats in [0, 1]; mAP is NaN
    when no class has a positive), ``AP`` (list of q floats, NaN for a class with no
    positive), ``protocol`` (canonical tag), ``num_classes_excluded`` (classes without a
    positive, left out of mAP), ``num_images`` (N). ``thresholds [q]``: for ``calibrated``.
    """
    return evaluate_protocols(scores, targets, (protocol,), thresholds)[parse_protocol(protocol).name]


def evaluate_protocols(
    scores: Any, targets: Any, protocols: Iterable[str | Protocol] | str = DEFAULT_PROTOCOLS, thresholds: Any = None
) -> dict[str, dict[str, Any]]:
    """``{canonical protocol tag: multilabel_metrics(...)}`` for each protocol, AP computed once.

    ``scores [N, q]``, ``targets [N, q]`` (0/1), ``thresholds [q]`` (read by ``calibrated``
    only). Keys keep the order given; the default logs 'thr@0.5' and 'oracle-k'.
    """
    if isinstance(protocols, (str, Protocol)):
        protocols = (protocols,)
    parsed = [parse_protocol(p) for p in protocols]  # fail on a bad tag before any work
    s, t = _prepare(scores, targets)
    th = _thresholds(thresholds, s.shape[1]) if any(p.kind == CALIBRATED for p in parsed) else None
    ap = _average_precision(s, t)
    results: dict[str, dict[str, Any]] = {}
    ranks = None
    for p in parsed:
        if p.name in results:
            continue
        if p.kind in ("oracle-k", "topk") and ranks is None:
            ranks = _ranks(s)  # once for every top-k rule
        results[p.name] = _report(ap, _predictions(p, s, t, ranks, th), t, p.name)
    return results
