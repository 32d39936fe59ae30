"""Term diagnostics: how much each objective term steers the student, measured while it trains.

Every ``train.diagnostics_every`` steps (0: off) the training step measures, on the same
forward pass it trains with (no extra forward, no random numbers drawn, the update unchanged):

- each term's unweighted value and the L2 norm of the gradient of ``weight x term`` (the
  weight in force at that step: under ``distill.balance: bounded`` the capped one) with
  respect to the student outputs the term reads (``LossTerm.requires()``: logits for BCE / MLD,
  label_embeddings for CD / ID, pooled for RKD / PKT, the stage maps for ReviewKD), and that
  norm's ratio to BCE's (BCE reads the logits);
- the label-embedding geometry of student and teacher (when both have label embeddings):
  the mean Euclidean distance between the embeddings of one class's positive images (``cd``)
  and between those of one image's positive labels (``id``), each divided by the mean norm of
  the positive embeddings. A student whose ``cd`` falls far below its teacher's gives every
  image nearly the same embedding for a label, which cannot classify.

The gradients are taken with ``torch.autograd.grad`` with respect to the outputs only, so the
measurement walks the loss part of the graph, not the networks. The figures stay on the device
and are read once per epoch (no host sync in the step). ``summary`` gives the epoch's means,
written to the epoch record of metrics.jsonl under ``diagnostics``; a distillation term whose
gradient ratio has a median over the epoch's measurements above ``train.diagnostics_warn_ratio``
is named in a one-line warning, with its weight. Under DDP each rank measures its own batches;
rank 0's figures are recorded.
"""

from __future__ import annotations

import logging
import math
from typing import Mapping, Optional

import torch
from torch import Tensor

from mlkd.losses.embedding import _pair_distances, pair_plan
from mlkd.models.output import ModelOutput

log = logging.getLogger("mlkd")

REFERENCE = "bce"  # the term every ratio is taken against


def _tensors(value) -> list[Tensor]:
    """The tensors of one ModelOutput field (a tensor, a list of stage maps, or None)."""
    if value is None:
        return []
    return [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, Tensor)]


@torch.compiler.disable
def term_gradient_norms(objective, values: Mapping[str, Tensor], student: ModelOutput) -> dict[str, Tensor]:
    """{term: ||d(weight x value) / d(outputs it reads)||} (0-d float32 tensors).

    ``values``: the Objective's ``term_values`` (attached to the graph of ``student``).
    The graph is kept for the training backward that follows.
    """
    norms = {}
    for name, value in values.items():
        inputs = [
            t
            for field in objective.terms[name].requires()
            for t in _tensors(getattr(student, field))
            if t.requires_grad
        ]
        if not value.requires_grad or not inputs:
            norms[name] = torch.zeros((), device=value.device)
            continue
        weighted = objective.weights[name] * value
        grads = torch.autograd.grad(weighted, inputs, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[name] = torch.stack(squares).sum().sqrt() if squares else torch.zeros((), device=value.device)
    return norms


@torch.no_grad()
def embedding_geometry(embeddings: Tensor, targets: Tensor, plan=None) -> tuple[Tensor, Tensor]:
    """(cd, id) spread of label embeddings [B, q, D] among the positives of targets [B, q]:
    mean distance within class groups (cd) and within image groups (id), each over the mean
    norm of the positive embeddings. NaN where no group has two members.
    ``plan``: ``pair_plan(targets, True, True)`` (built here when None)."""
    B, q = targets.shape
    plan = pair_plan(targets) if plan is None else plan.to(embeddings.device)
    emb = embeddings.detach().float().reshape(B * q, -1)
    dist = _pair_distances(emb, plan.a, plan.b)
    positive = (targets.reshape(-1) > 0.5).float()
    norm = (emb.norm(dim=1) * positive).sum() / positive.sum()  # NaN without positives (no host sync)
    is_cd = plan.group < q

    def spread(mask: Tensor) -> Tensor:
        count = mask.sum()
        return torch.where(count > 0, (dist * mask).sum() / count.clamp(min=1), float("nan")) / norm

    return spread(is_cd), spread(~is_cd)


class TermDiagnostics:
    """The diagnostics of one epoch (see the module docstring); ``every`` 0 disables them."""

    def __init__(self, every: int, warn_ratio: float, weights: Mapping[str, float], state: Optional[dict] = None):
        self.every, self.warn_ratio, self.weights = int(every), float(warn_ratio), dict(weights)
        self._rows: list[Tensor] = []  # one [columns] tensor per measured step
        self._columns: list[str] = []
        if state:  # a pre-empted epoch's measurements so far (see ``state``)
            self._columns = list(state["columns"])
            self._rows = [torch.tensor(row, dtype=torch.float32) for row in state["rows"]]

    def state(self) -> dict:
        """The measurements so far, as plain data (kept in a mid-epoch checkpoint)."""
        return {"columns": list(self._columns), "rows": [row.tolist() for row in self._rows]}

    def due(self, step: int) -> bool:
        """Whether the step counted ``step`` (0-based) is measured."""
        return self.every > 0 and step % self.every == 0

    @torch.compiler.disable
    def measure(
        self,
        objective,
        values: Mapping[str, Tensor],
        student: ModelOutput,
        teacher: Optional[ModelOutput],
        targets: Tensor,
        host_targets: Optional[Tensor] = None,
        norms: Optional[Mapping[str, Tensor]] = None,
    ) -> None:
        """Record one step: term values, gradient norms and ratios, geometry (on the device).
        ``norms``: the step's gradient norms when already taken (``term_gradient_norms``, scaled
        to the weights in force under ``distill.balance``); taken here when None."""
        norms = term_gradient_norms(objective, values, student) if norms is None else norms
        reference = norms.get(REFERENCE)
        figures: dict[str, Tensor] = {}
        for name in objective.terms:  # the objective's order (groups are computed first)
            value = values[name]
            figures[f"{name}/value"] = value.detach().float()
            figures[f"{name}/grad"] = norms[name]
            if reference is not None:
                figures[f"{name}/ratio"] = norms[name] / reference.clamp(min=1e-12)
        if student.label_embeddings is not None:
            plan = pair_plan(host_targets if host_targets is not None else targets)
            for role, output in (("student", student), ("teacher", teacher)):
                if output is not None and output.label_embeddings is not None:
                    cd, id_ = embedding_geometry(output.label_embeddings, targets, plan)
                    figures[f"geometry/{role}_cd"], figures[f"geometry/{role}_id"] = cd, id_
        if not self._columns:
            self._columns = list(figures)
        self._rows.append(torch.stack([figures[c].reshape(()).float() for c in self._columns]))

    def summary(self) -> Optional[dict]:
        """The epoch's figures (one host read) and the warning; None when nothing was measured.

        {"steps": n, "terms": {term: {"weight", "value", "grad", "ratio"}}, "geometry": {...}}:
        means over the measured steps (NaN measurements left out); "ratio" is the median."""
        if not self._rows:
            return None
        table = torch.stack([row.detach().to("cpu", torch.float64) for row in self._rows])
        self._rows = []
        result: dict = {"steps": int(table.shape[0]), "terms": {}, "geometry": {}}
        for index, column in enumerate(self._columns):
            group, field = column.split("/", 1)
            values = table[:, index]
            values = values[torch.isfinite(values)]
            if group == "geometry":
                result["geometry"][field] = float(values.mean()) if values.numel() else None
                continue
            entry = result["terms"].setdefault(group, {"weight": self.weights.get(group)})
            if field == "ratio":
                entry[field] = float(values.median()) if values.numel() else None
            else:
                entry[field] = float(values.mean()) if values.numel() else None
        return result

    def dominant(self, summary: Optional[dict]) -> list[str]:
        """The distillation terms whose median gradient ratio exceeds ``warn_ratio``."""
        if not summary:
            return []
        return [
            name
            for name, entry in summary["terms"].items()
            if name != REFERENCE and entry.get("ratio") is not None and entry["ratio"] > self.warn_ratio
        ]

    def warn(self, summary: Optional[dict], epoch: int) -> list[str]:
        """Log one line naming each dominant term (see :meth:`dominant`); returns their names."""
        names = self.dominant(summary)
        if names:
            parts = ", ".join(
                f"{n} (weight {self.weights.get(n, math.nan):g}, gradient {summary['terms'][n]['ratio']:.3g}x BCE's)"
                for n in names
            )
            log.warning(
                "epoch %d: distillation term(s) %s outweigh BCE by more than %gx on the student "
                "outputs they read; the student may follow them instead of the labels "
                "(lower their weights; train.diagnostics_warn_ratio sets the threshold)",
                epoch,
                parts,
                self.warn_ratio,
            )
        return names
