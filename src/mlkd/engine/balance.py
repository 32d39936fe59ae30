"""Bounded term weights (``distill.balance: bounded``): no distillation term may steer the
student much harder than the labels do.

Every ``distill.balance_every`` steps the training step measures, on its own forward pass,
each term's gradient norm on the student outputs it reads
(:func:`~mlkd.engine.diagnostics.term_gradient_norms`, with the configured weight) and its ratio
to BCE's (BCE reads the logits). A running average of each ratio (``ema``, momentum
``distill.balance_momentum`` over the measured steps, started at the first measurement) sets
the weight every step uses::

    w_eff = w * min(1, r / ema)          r = distill.balance_ratio

so a term whose gradient runs above r x BCE's is scaled down to r x BCE's, and the cap never
raises a weight above the configured one. BCE keeps its weight.

Choices:
- A measured step updates the running ratios first and trains with the updated weights, so
  step 0 is measured and already capped (a term is never applied at full weight while it
  swamps BCE). Between measurements the weights stay as they are.
- A ratio that is not finite (a NaN/inf loss or gradient) leaves that term's average as it
  was; a term never measured finite keeps its configured weight.
- Under DDP the measured norms are averaged over the ranks (one all-reduce per measured step)
  before the averages are updated, so every rank applies the same weights.
- Everything stays on the device (no host sync in the step); the epoch's mean and smallest
  effective weights are read once per epoch (:meth:`WeightBalancer.summary`), written to the
  epoch record under ``balance``, and a capped term is named in a log line.
- The state (running ratios and the epoch's sums so far) goes into every checkpoint, so a
  resumed run, even one pre-empted mid-epoch, continues bit-identically.

``WeightBalancer`` also serves a loop of one's own::

    values = objective.term_values(student_out, teacher_out, targets)
    if balancer.due(step):
        balancer.update(term_gradient_norms(objective, values, student_out))
    loss = objective.weighted_sum(values, balancer.step_weights())
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from mlkd.engine.diagnostics import REFERENCE
from mlkd.engine.distributed import DistInfo, all_reduce_mean
from mlkd.errors import ConfigError

log = logging.getLogger("mlkd")


class WeightBalancer:
    """The running gradient ratios of an objective's distillation terms and the weights they allow.

    ``weights``: the objective's {term: configured weight}; every term but ``reference`` (BCE)
    is balanced. ``ratio``: the bound r (> 0). ``momentum``: of the running ratio, in [0, 1)
    (0: the last measurement alone). ``every``: measure every N steps. ``info``: the DDP
    group (norms are averaged over it). State tensors live on ``device``.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        ratio: float,
        momentum: float = 0.9,
        every: int = 1,
        device: Any = "cpu",
        info: Optional[DistInfo] = None,
        reference: str = REFERENCE,
    ):
        if reference not in weights:
            raise ConfigError(
                f"distill.balance=bounded measures each distillation term against {reference}, "
                f"which the objective lacks (its terms: {', '.join(weights)}); add it "
                f"(distill.weights.{reference}=1) or set distill.balance=none"
            )
        if not ratio > 0 or not 0 <= momentum < 1 or int(every) < 1:
            raise ConfigError(
                f"distill.balance_ratio must be > 0 (got {ratio}), distill.balance_momentum in "
                f"[0, 1) (got {momentum}), distill.balance_every >= 1 (got {every})"
            )
        self.reference, self.ratio, self.momentum, self.every = reference, float(ratio), float(momentum), int(every)
        self.weights = {name: float(w) for name, w in weights.items()}
        self.terms = [name for name in weights if name != reference]
        self.info = info or DistInfo()
        device = torch.device(device)
        n = len(self.terms)
        self._base = torch.tensor([self.weights[t] for t in self.terms], dtype=torch.float32, device=device)
        self.ema = torch.zeros(n, dtype=torch.float32, device=device)  # running ratio per term [n]
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)  # measured finite at least once [n]
        self.updates = 0  # measured steps so far
        self._sum = torch.zeros(n, dtype=torch.float32, device=device)  # this epoch: sum of effective weights
        self._min = torch.full((n,), math.inf, dtype=torch.float32, device=device)  # ... and their minimum
        self._steps = 0  # ... over this many steps

    def due(self, step: int) -> bool:
        """Whether the step counted ``step`` (0-based) is measured."""
        return step % self.every == 0

    @torch.compiler.disable
    def update(self, norms: Mapping[str, Tensor]) -> None:
        """Fold one measurement into the running ratios (averaged over DDP ranks first).

        ``norms``: {term: 0-d tensor}, the gradient norm of (configured weight x term) on the
        outputs it reads, for the reference and every balanced term (``term_gradient_norms``)."""
        measured = torch.stack(
            [norms[self.reference].float().reshape(())] + [norms[t].float().reshape(()) for t in self.terms]
        ).to(self.ema.device)
        measured = all_reduce_mean(measured, self.info)
        ratio = measured[1:] / measured[0].clamp(min=1e-12)
        finite = torch.isfinite(ratio)
        blended = torch.where(self.seen, self.momentum * self.ema + (1.0 - self.momentum) * ratio, ratio)
        self.ema = torch.where(finite, blended, self.ema)
        self.seen = self.seen | finite
        self.updates += 1

    def factors(self) -> Tensor:
        """min(1, r / running ratio) per balanced term [n] (1 before a term's first measurement)."""
        capped = (self.ratio / self.ema).clamp(max=1.0)  # a running ratio of 0 gives inf -> 1
        return torch.where(self.seen, capped, torch.ones_like(capped))

    @torch.compiler.disable
    def step_weights(self) -> dict[str, Tensor]:
        """{balanced term: effective weight (0-d float32 tensor)} for this step, counted in the
        epoch's figures (call it once per step); the reference is absent (its weight stands)."""
        effective = self._base * self.factors()
        self._sum += effective
        self._min = torch.minimum(self._min, effective)
        self._steps += 1
        return dict(zip(self.terms, effective.unbind()))

    @torch.compiler.disable
    def scaled(self, norms: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``norms`` (configured weights) as the weights now in force make them: each balanced
        term's norm times its factor."""
        factors = dict(zip(self.terms, self.factors().unbind()))
        return {name: norm * factors[name].to(norm.device) if name in factors else norm for name, norm in norms.items()}

    def summary(self) -> Optional[dict]:
        """The epoch's figures (one host read), then a fresh epoch; None when no step ran.

        {"bound": r, "steps": n, "terms": {term: {"weight": configured, "effective": mean,
        "min": smallest, "ratio": running ratio at the end (None before a measurement),
        "capped": bool}}}."""
        if not self._steps:
            return None
        rows = (
            torch.stack(
                [
                    self._sum / self._steps,
                    self._min,
                    self._base,
                    self.ema,
                    self.seen.float(),
                    (self._min < self._base).float(),
                ]
            )
            .cpu()
            .tolist()
        )
        terms = {}
        for i, name in enumerate(self.terms):
            mean, low, _, ema, seen, capped = (row[i] for row in rows)
            terms[name] = {
                "weight": self.weights[name],
                "effective": mean,
                "min": low,
                "ratio": ema if seen else None,
                "capped": bool(capped),
            }
        result = {"bound": self.ratio, "steps": self._steps, "terms": terms}
        self._sum.zero_()
        self._min.fill_(math.inf)
        self._steps = 0
        return result

    def report(self, summary: Optional[dict], epoch: int) -> list[str]:
        """Log one line naming each term whose weight was capped this epoch; returns their names."""
        if not summary:
            return []
        capped = [name for name, entry in summary["terms"].items() if entry["capped"]]
        if capped:
            parts = ", ".join(
                f"{n} {e['weight']:g} -> {e['effective']:.4g} (min {e['min']:.4g}; running "
                f"gradient ratio {e['ratio']:.3g}x BCE's)"
                for n, e in ((n, summary["terms"][n]) for n in capped)
            )
            log.info(
                "epoch %d: distill.balance capped the weight of %s to keep each gradient at most "
                "%gx BCE's (distill.balance_ratio)",
                epoch,
                parts,
                self.ratio,
            )
        return capped

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The state as CPU tensors (copies: the state goes on changing) and plain data
        (checkpoint ``balance``)."""

        def copy(tensor: Tensor) -> Tensor:
            return tensor.detach().to("cpu", copy=True)

        return {
            "terms": list(self.terms),
            "ema": copy(self.ema),
            "seen": copy(self.seen),
            "updates": self.updates,
            "epoch_sum": copy(self._sum),
            "epoch_min": copy(self._min),
            "epoch_steps": self._steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["terms"]) != self.terms:
            raise ConfigError(
                f"the checkpoint's balanced terms {list(state['terms'])} differ from the "
                f"objective's {self.terms}; resume with the same distill config"
            )
        device = self.ema.device

        def copy(key: str) -> Tensor:
            return state[key].to(device, copy=True)

        self.ema, self.seen, self._sum, self._min = copy("ema"), copy("seen"), copy("epoch_sum"), copy("epoch_min")
        self.updates, self._steps = int(state["updates"]), int(state["epoch_steps"])


def is_bounded(distill) -> bool:
    """Whether a run's term weights are bounded: ``distill.balance: bounded``, or a method that
    is always bounded (``l2d-bounded``)."""
    from mlkd.losses.methods import get_method

    return distill.balance == "bounded" or get_method(distill.method).bounded


def build_balancer(cfg, objective, device: Any, info: Optional[DistInfo] = None) -> Optional[WeightBalancer]:
    """The WeightBalancer of ``cfg.distill`` for ``objective``; None unless the run is bounded
    (:func:`is_bounded`), and for an objective with no distillation term (nothing to balance)."""
    d = cfg.distill
    if not is_bounded(d):
        return None
    weights = objective.weights
    if REFERENCE in weights and len(weights) == 1:
        log.info("distill.balance=bounded: method %s has no distillation term; nothing to balance", d.method)
        return None
    return WeightBalancer(weights, d.balance_ratio, d.balance_momentum, d.balance_every, device, info)
