"""One assembly of a training run from its models: ``fit`` and the benchmarks both call
:func:`assemble`, so a benchmark times the objective, step, optimiser and schedule ``fit`` trains.

``assemble`` takes the built student and teacher (``fit``: the seeded student, then the
teacher checkpoint; the benchmarks: random networks) and adds, in this order (parameters are
created in it, so the order is part of a run's random stream): the objective of
``cfg.distill`` sized by the models' :class:`~mlkd.models.OutputShapes`, channels-last
layout, the teacher-output cache, the student step (DDP, ``torch.compile``), the loaders, the
optimiser, the LR schedule, the gradient scaler and the term-weight balancer
(``distill.balance``; it creates no parameters and draws no random numbers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mlkd.config import Config
from mlkd.data.loaders import eval_loader, train_loader
from mlkd.engine.balance import build_balancer
from mlkd.engine.distributed import DistInfo
from mlkd.engine.optim import build_optimizer, build_scheduler
from mlkd.engine.runtime import Precision
from mlkd.engine.step import StudentStep, defers_checks
from mlkd.errors import ConfigError
from mlkd.losses import Objective, build_objective
from mlkd.models.output import output_shapes

log = logging.getLogger("mlkd")


@dataclass
class Run:
    """Everything one training run holds."""

    cfg: Config
    info: DistInfo
    device: torch.device
    precision: Precision
    classes: list[str]
    student: nn.Module
    teacher: Optional[nn.Module]
    step: nn.Module  # StudentStep, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_loader: Any
    test_loader: Any
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # completed epochs
    global_step: int = 0
    teacher_cache: Any = None  # a TeacherCache serving the teacher's outputs (distill.cache)
    partial: Optional[dict] = None  # how far a pre-empted epoch got (see train_one_epoch)
    stop_request: Any = None  # a preemption.StopRequest while fit runs
    balancer: Any = None  # a balance.WeightBalancer under distill.balance=bounded

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)


def objective_for(cfg: Config, student: nn.Module, teacher: Optional[nn.Module]) -> Objective:
    """``cfg.distill``'s objective, its terms set up with the models' output shapes."""
    d = cfg.distill
    return build_objective(
        d.method,
        weights=d.weights,
        options=d.options,
        student_shapes=output_shapes(student),
        teacher_shapes=output_shapes(teacher),
    )


def assemble(
    cfg: Config,
    student: nn.Module,
    teacher: Optional[nn.Module],
    classes: list[str],
    *,
    device: torch.device,
    precision: Precision,
    info: Optional[DistInfo] = None,
    train_set: Any = None,
    test_set: Any = None,
    cache: Any = None,
    steps_per_epoch: Optional[int] = None,
) -> Run:
    """The Run of ``cfg`` around ``student`` (on ``device``) and ``teacher`` (frozen, or None).

    train_set / test_set: the datasets (``fit``): loaders are built, ``cfg.distill.cache`` is
    opened or built from train_set, and the schedule spans ``len(train loader)`` steps per
    epoch. Without them (benchmarks) there are no loaders and the schedule spans
    ``steps_per_epoch``. ``cache``: a ready TeacherCache serving the teacher's outputs (the
    run then holds no teacher). A teacher the objective does not read is dropped; a missing
    one it needs is a ConfigError.
    """
    info = info or DistInfo()
    objective = objective_for(cfg, student, teacher).to(device)
    if objective.needs_teacher and teacher is None and cache is None:
        raise ConfigError(f"distill.method={cfg.distill.method} needs distill.teacher=/path/to/teacher.pt")
    if not objective.needs_teacher:
        teacher, cache = None, None
    if cfg.train.channels_last:
        student = student.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    if cache is not None:
        teacher = None
    elif train_set is not None and cfg.distill.cache != "off" and teacher is not None:
        from mlkd.engine import teacher_cache

        train_set, cache = teacher_cache.prepare(cfg, teacher, objective, train_set, info, device, precision)
        teacher = None  # every teacher output the objective reads now comes from the cache
    elif train_set is not None and cfg.distill.cache != "off":
        log.info("distill.cache is not used: method %s reads no teacher output", cfg.distill.method)
    step: nn.Module = StudentStep(student, objective)
    if info.enabled:
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        step = torch.compile(step)
    pin = device.type == "cuda"
    loader = (
        None
        if train_set is None
        else train_loader(
            train_set, cfg.data, info, cfg.train.seed, pin, cache.wrap_sampler if cache is not None else None
        )
    )
    optimizer = build_optimizer([student, objective], cfg.optim, fused=defers_checks(device))
    steps = len(loader) if loader is not None else steps_per_epoch
    if steps is None:
        raise ValueError("assemble: without a train_set, give steps_per_epoch (the schedule's length)")
    return Run(
        cfg=cfg,
        info=info,
        device=device,
        precision=precision,
        classes=list(classes),
        student=student,
        teacher=teacher,
        step=step,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.optim, steps),
        scaler=torch.amp.GradScaler(device.type, enabled=precision.use_scaler),
        train_loader=loader,
        test_loader=None if test_set is None else eval_loader(test_set, cfg.data, info, pin),
        teacher_cache=cache,
        balancer=build_balancer(cfg, objective, device, info),
    )
