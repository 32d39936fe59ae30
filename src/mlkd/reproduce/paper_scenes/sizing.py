"""How long the paper-scale scenes run will take, and the run sizes that fit a time budget.

The cost model (seconds), from rates measured on the machine itself (:mod:`.measure`):

- drawing and caching N scenes: ``N x gen_s`` (the test split's measured rate, per scene);
- one run r of E epochs on N scenes: ``run_overhead_s + num_test x img_s[r] / 3`` (build, load,
  evaluate: a forward is about a third of a training step) ``+ E x (N x img_s[r] +
  epoch_overhead_s)`` (checkpoint, loader turn-over), where ``img_s[r]`` is the slower of the
  run's GPU step per image (``mlkd bench step``: the engine's ``train_step`` on synthetic
  batches) and the data loader per image (the recipe's augmentation with the run's workers),
  times ``safety``.

:func:`plan_sizes` takes the most epochs E (at most ``max_epochs``) that fit the budget with
``min_train`` scenes, every run E epochs, then the most scenes (at most ``max_train``) that fit
at that E. :func:`plan_students` sizes the students again once the teacher has run, with the
model scaled by the teacher's measured / predicted time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

#: The runs in training order: role -> what its step costs (see ``Measured.step_s``).
RUNS = ("teacher", "student", "mld", "l2d")
STUDENTS = RUNS[1:]


@dataclass(frozen=True)
class Scale:
    """Sizes and limits of one mode (full GPU run or CPU smoke run)."""

    img_size: int
    batch_size: int
    num_test: int
    min_train: int
    max_train: int
    max_epochs: int
    budget_s: float  # wall seconds from the command's start to its end
    reserve_s: float  # kept free at the end (tables, copies, margin)
    run_overhead_s: float
    epoch_overhead_s: float
    safety: float = 1.05
    device: str = "cuda"
    amp: str = "bf16"
    workers: int = 8  # DataLoader workers
    threads: int = 4  # torch CPU threads of the runs and of the step timing
    processes: int = 8  # scene-drawing processes
    diagnostics_every: int = 20
    probe_scenes: int = 4096  # training scenes the loader is timed on
    bench_repeats: int = 5
    bench_warmup: int = 2


@dataclass
class Measured:
    """Rates measured at the start: seconds per drawn scene, per loaded training image, and per
    training step (batch) of each run in :data:`RUNS`."""

    gen_s: float
    loader_s: float
    step_s: dict[str, float]
    channels_last: bool = False
    notes: dict = field(default_factory=dict)

    def image_s(self, run: str, scale: Scale) -> float:
        """Seconds per training image of ``run``: the slower of step and loader, with safety."""
        return scale.safety * max(self.step_s[run] / scale.batch_size, self.loader_s)


@dataclass
class Plan:
    """Chosen sizes and the predicted seconds of each part."""

    num_train: int
    teacher_epochs: int
    student_epochs: int
    budget_s: float
    predicted_s: dict[str, float]
    fits: bool

    def to_dict(self) -> dict:
        return asdict(self)


def run_seconds(run: str, num_train: int, epochs: int, m: Measured, scale: Scale) -> float:
    """Predicted wall seconds of one run (see the module docstring)."""
    img = m.image_s(run, scale)
    return scale.run_overhead_s + scale.num_test * img / 3 + epochs * (num_train * img + scale.epoch_overhead_s)


def total_seconds(num_train: int, epochs: int, m: Measured, scale: Scale) -> float:
    """Drawing ``num_train`` scenes plus every run at ``epochs`` epochs."""
    return num_train * m.gen_s + sum(run_seconds(r, num_train, epochs, m, scale) for r in RUNS)


def _most(upper: int, fits) -> int:
    """The largest k in [1, upper] with fits(k) (fits is monotone decreasing); 0 if none."""
    best = 0
    for k in range(1, upper + 1):
        if not fits(k):
            break
        best = k
    return best


def plan_sizes(budget_s: float, m: Measured, scale: Scale) -> Plan:
    """The most epochs, then the most scenes, that fit ``budget_s`` seconds (module docstring).

    Never fewer than ``min_train`` scenes or 1 epoch: when even that does not fit, the plan is
    that minimum with ``fits=False``."""
    epochs = _most(scale.max_epochs, lambda e: total_seconds(scale.min_train, e, m, scale) <= budget_s)
    fits = epochs > 0
    epochs = max(epochs, 1)
    fixed = total_seconds(0, epochs, m, scale)
    slope = total_seconds(1, epochs, m, scale) - fixed
    num = math.floor((budget_s - fixed) / slope) if slope > 0 else scale.max_train
    num = min(scale.max_train, max(scale.min_train, num))
    predicted = {r: run_seconds(r, num, epochs, m, scale) for r in RUNS}
    predicted["scenes"] = num * m.gen_s
    return Plan(num, epochs, epochs, budget_s, predicted, fits)


def plan_students(remaining_s: float, plan: Plan, m: Measured, scale: Scale, ratio: float) -> Plan:
    """``plan`` with the students' epochs sized again for ``remaining_s`` seconds, their
    predicted times multiplied by ``ratio`` (the teacher's measured / predicted seconds)."""

    def cost(e: int) -> float:
        return ratio * sum(run_seconds(r, plan.num_train, e, m, scale) for r in STUDENTS)

    epochs = _most(scale.max_epochs, lambda e: cost(e) <= remaining_s)
    predicted = dict(plan.predicted_s)
    predicted.update({r: ratio * run_seconds(r, plan.num_train, max(epochs, 1), m, scale) for r in STUDENTS})
    return Plan(plan.num_train, plan.teacher_epochs, max(epochs, 1), remaining_s, predicted, epochs > 0)


def describe(plan: Plan, m: Measured, scale: Scale) -> str:
    """One line naming the chosen sizes and what they rest on."""
    steps = ", ".join(f"{r} {1e3 * m.step_s[r]:.0f} ms" for r in RUNS)
    return (
        f"sizing: {plan.num_train} training scenes, epochs: teacher {plan.teacher_epochs}, "
        f"students {plan.student_epochs}; {scale.num_test} test scenes at {scale.img_size} px; "
        f"predicted {sum(plan.predicted_s.values()):.0f} s of the {plan.budget_s:.0f} s left"
        f"{'' if plan.fits else ' (OVER BUDGET: the minimum sizes do not fit)'}; "
        f"step per batch of {scale.batch_size}: {steps}; loader {1e3 * m.loader_s:.2f} ms/image; "
        f"drawing {1e3 * m.gen_s:.2f} ms/scene; channels_last {m.channels_last}"
    )
