"""One training step (``train_step``), shared by ``fit`` and ``mlkd bench step``.

A step: free the last step's gradients -> batch to the device (non-blocking) -> teacher outputs
(the teacher-output cache when
the run has one, else a teacher forward in eval mode under ``no_grad``: no autograd graph) ->
student forward + objective under autocast -> backward (GradScaler) -> optional gradient
clipping -> optimiser step -> LR schedule step.

Host synchronisation. On CPU reading a tensor on the host costs nothing, so the non-finite
check is made every step. On CUDA (``DEFERRED_DEVICE_TYPES``) the step makes no host sync:
CD/ID get their pair plan from the loader's CPU labels (``Objective(host_targets=...)``), the
optimiser is fused Adam(W), and the non-finite policy runs on the device (see
:class:`NonFiniteGuard`): the update of a step whose loss is not finite is masked inside the
fused optimiser (its ``found_inf`` input, as GradScaler uses it), and the host reads the flags
only every ``train.log_interval`` steps and at the end of the epoch.

``train.nonfinite`` semantics (both modes): a step whose total loss is NaN/inf, or whose loss is
finite but whose gradients are not (without GradScaler, which skips those itself), never updates
the weights or the optimiser state (Adam's moments and step count); the LR schedule and the
step counter still advance, as for a step GradScaler skips. ``stop`` raises
NonFiniteLossError naming the epoch, the step and the non-finite term(s): at that step on CPU,
at the next check on CUDA (the message then says how many later steps were applied).
``skip`` logs a warning and counts the step in the epoch's ``skipped_steps``.
Under DDP the decision is collective (``any_rank``): a non-finite loss on one rank skips or
stops the step on every rank, so no rank waits in a gradient all-reduce the others skipped,
and no rank applies gradients averaged with another rank's NaN.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor, nn

from mlkd.data.loaders import to_device
from mlkd.engine.diagnostics import term_gradient_norms
from mlkd.engine.distributed import any_rank
from mlkd.errors import NonFiniteLossError
from mlkd.models.output import ModelOutput

log = logging.getLogger("mlkd")

GRADIENTS = "gradients"  # the flag slot of a step whose loss was finite but gradients were not

#: Devices where the non-finite check is deferred (a host read would stall the device queue).
DEFERRED_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


def defers_checks(device: torch.device) -> bool:
    """Whether steps on ``device`` avoid host syncs (and so use a fused optimiser)."""
    return torch.device(device).type in DEFERRED_DEVICE_TYPES


class StudentStep(nn.Module):
    """Student + objective: ``forward(images, targets, teacher_out, host_targets) -> (total, terms)``.

    ``host_targets``: the CPU copy of ``targets`` (lets CD/ID enumerate pairs on the host).
    ``diagnostics``: a :class:`~mlkd.engine.diagnostics.TermDiagnostics` that measures this
    step's terms on its own forward pass (None: not measured).
    ``balancer``: a :class:`~mlkd.engine.balance.WeightBalancer` whose effective weights this
    step trains with; ``measure``: whether it first measures this step's gradient norms (one
    measurement serves the diagnostics too). Both None / False: the objective's own forward.
    """

    def __init__(self, student: nn.Module, objective: nn.Module):
        super().__init__()
        self.student, self.objective = student, objective

    def forward(self, images, targets, teacher_out, host_targets=None, diagnostics=None, balancer=None, measure=False):
        student_out = self.student(images)
        if diagnostics is None and balancer is None:
            return self.objective(student_out, teacher_out, targets, host_targets)
        values = self.objective.term_values(student_out, teacher_out, targets, host_targets)
        norms, weights = None, None
        if diagnostics is not None or (balancer is not None and measure):
            norms = term_gradient_norms(self.objective, values, student_out)
        if balancer is not None:
            if measure:
                balancer.update(norms)
            weights = balancer.step_weights()
        if diagnostics is not None:
            applied = norms if balancer is None else balancer.scaled(norms)
            diagnostics.measure(self.objective, values, student_out, teacher_out, targets, host_targets, applied)
        return self.objective.weighted_sum(values, weights), {name: value.detach() for name, value in values.items()}


def teacher_outputs(run, batch: dict, images: Tensor) -> Optional[ModelOutput]:
    """The teacher's outputs for ``batch``: from ``run.teacher_cache`` (by the batch's dataset
    ``index`` and the epoch's view) when set, else a no-grad eval-mode forward; None without
    a teacher."""
    cache = getattr(run, "teacher_cache", None)
    if cache is not None:
        return cache.lookup(batch["index"], cache.view_of_epoch(run.epoch), run.device)
    if run.teacher is None:
        return None
    with torch.no_grad(), run.precision.autocast(run.device):
        return run.teacher(images)


class NonFiniteGuard:
    """The ``train.nonfinite`` policy ("stop" | "skip") for one epoch; see the module docstring.

    ``deferred``: record the flags on the device and act at :meth:`check` (CUDA), instead of
    reading the loss on the host every step. Deferred mode needs an optimiser that accepts
    ``found_inf`` (fused Adam/AdamW); otherwise the guard falls back to the per-step check.
    """

    def __init__(self, policy: str, deferred: bool = False, optimizer=None):
        self.policy = policy
        self.deferred = bool(deferred) and bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        self.skipped = 0  # steps skipped and reported so far
        self._names: list[str] = []
        self._count: Optional[Tensor] = None  # deferred: bad steps so far (device)
        self._first: Optional[Tensor] = None  # [1 + terms]: first unreported bad step, its terms
        self._bad: Optional[Tensor] = None  # deferred: this step's flag

    # ------------------------------------------------------------------ per step
    def admit(self, total: Tensor, terms: dict[str, Tensor], run) -> bool:
        """Before backward. Per-step mode: False (skip) or raise when the loss is not finite.
        Deferred mode: record the flags on the device and return True."""
        info = getattr(run, "info", None)
        distributed = info is not None and info.enabled
        if not self.deferred:
            here = not bool(torch.isfinite(total))
            if not (bool(any_rank(torch.tensor(here, device=total.device), info)) if distributed else here):
                return True
            bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())] or ["total"]
            where = (
                f"in term(s) {', '.join(bad)}" + (f" on rank {info.rank}" if distributed else "")
                if here
                else "on another rank"
            )
            return self._refuse(f"non-finite loss at epoch {run.epoch + 1} step {run.global_step} {where}")
        total = total.detach()
        bad = ~torch.isfinite(total)
        if distributed:
            bad = any_rank(bad, info)
        if self._count is None:
            self._names = [*terms, GRADIENTS]
            self._count = torch.zeros((), dtype=torch.long, device=total.device)
            self._first = torch.full((2 + len(terms),), -1, dtype=torch.long, device=total.device)
        flags = torch.stack(
            [~torch.isfinite(v.detach().float()).all() for v in terms.values()]
            + [torch.zeros((), dtype=torch.bool, device=total.device)]
        )
        record = torch.cat([torch.full((1,), run.global_step, device=total.device), flags.long()])
        self._bad = torch.zeros_like(bad)
        self._flag(bad, record)
        return True

    def gradients_ok(self, params, scaler, run) -> bool:
        """After backward: a finite loss can still give NaN/inf gradients (a sqrt or division at
        0). Per-step mode: False (skip) or raise; deferred mode: flag the step on the device and
        return True. With GradScaler (fp16) the scaler skips such steps itself. Under DDP the
        gradients are already averaged across ranks, so every rank decides alike."""
        grads = [p.grad for p in params if p.grad is not None]
        if scaler.is_enabled() or not grads:
            return True
        bad = ~torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        if self.deferred:
            record = torch.zeros_like(self._first)
            record[0], record[-1] = run.global_step, 1
            self._flag(bad, record)
            return True
        if not bool(bad):
            return True
        return self._refuse(
            f"non-finite gradients at epoch {run.epoch + 1} step {run.global_step} (the loss was finite)"
        )

    def _refuse(self, message: str) -> bool:
        """Per-step mode, a bad step: raise under ``stop``; under ``skip`` warn, count, return False."""
        if self.policy == "stop":
            raise NonFiniteLossError(message + "; the weights were not updated (train.nonfinite=skip skips such steps)")
        log.warning("%s; step skipped", message)
        self.skipped += 1
        return False

    def _flag(self, bad: Tensor, record: Tensor) -> None:
        """Deferred mode: mark this step bad (device flag); a step not yet counted adds to the
        count, and the first such step keeps ``record`` ([step, term flags..., gradients])."""
        fresh = bad & ~self._bad
        self._first = torch.where(fresh & (self._first[0] < 0), record, self._first)
        self._count += fresh
        self._bad = self._bad | bad

    def before_update(self, optimizer, scaler, params) -> None:
        """Deferred mode, after backward: make the optimiser skip this step on the device."""
        if not self.deferred:
            return
        if scaler.is_enabled():  # GradScaler sets found_inf itself: poison the gradients
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                nan = torch.where(self._bad, float("nan"), 0.0).to(grads[0].dtype)
                torch._foreach_add_(grads, nan)
        else:
            optimizer.found_inf = self._bad.float()

    def after_update(self, optimizer) -> None:
        if self.deferred and hasattr(optimizer, "found_inf"):
            del optimizer.found_inf

    def masked(self, value: Tensor) -> Tensor:
        """``value`` for the epoch's sums: 0 for a skipped step in deferred mode."""
        if not self.deferred:
            return value
        return torch.where(self._bad, torch.zeros_like(value), value)

    # ------------------------------------------------------------------ at sync points
    def check(self, run) -> None:
        """Deferred mode: read the flags (one host sync); raise (stop) or warn (skip)."""
        if not self.deferred or self._count is None:
            return
        values = torch.cat([self._count.view(1), self._first]).tolist()
        count, first, flags = values[0], values[1], values[2:]
        new = count - self.skipped
        if new <= 0:
            return
        names = [name for name, flag in zip(self._names, flags) if flag] or ["total"]
        message = (
            f"non-finite gradients at epoch {run.epoch + 1} step {first} (the loss was finite)"
            if names == [GRADIENTS]
            else f"non-finite loss at epoch {run.epoch + 1} step {first} in term(s) {', '.join(names)}"
        )
        if self.policy == "stop":
            later = run.global_step - first
            raise NonFiniteLossError(
                message + f"; that step's update was not applied, {later} later step(s) were "
                f"(on {run.device.type} the loss is checked every train.log_interval steps "
                "without stalling the device; train.nonfinite=skip skips such steps)"
            )
        log.warning("%s; %d step(s) skipped since the last check", message, new)
        self.skipped = count
        self._first.fill_(-1)


def train_step(run, batch: dict, guard: NonFiniteGuard, diagnostics=None) -> Optional[tuple[Tensor, dict[str, Tensor]]]:
    """One optimisation step of ``run`` on ``batch`` (a collated batch dict with images).

    Returns (total loss, detached term values), or None when the step was skipped by the
    per-step non-finite check. ``run`` needs: cfg, device, precision, step, teacher,
    teacher_cache (optional), optimizer, scheduler, scaler, epoch, global_step.
    ``diagnostics``: a TermDiagnostics that measures this step (None: not measured).
    ``run.balancer`` (optional): the WeightBalancer of ``distill.balance`` (see
    ``mlkd.engine.balance``), measuring at its due steps.
    """
    cfg, device = run.cfg, run.device
    run.optimizer.zero_grad(set_to_none=True)  # first: the last step's gradients are freed before the forward
    images, targets = to_device(batch, device, cfg.train.channels_last)
    teacher_out = teacher_outputs(run, batch, images)
    options = {} if diagnostics is None else {"diagnostics": diagnostics}
    balancer = getattr(run, "balancer", None)
    if balancer is not None:
        options.update(balancer=balancer, measure=balancer.due(run.global_step))
    with run.precision.autocast(device):
        total, terms = run.step(images, targets, teacher_out, batch["targets"], **options)
    run.global_step += 1
    if not guard.admit(total, terms, run):
        run.scheduler.step()
        return None
    run.scaler.scale(total).backward()
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    if not guard.gradients_ok(params, run.scaler, run):
        run.scheduler.step()
        return None
    guard.before_update(run.optimizer, run.scaler, params)
    if cfg.optim.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    guard.after_update(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return total.detach(), terms
