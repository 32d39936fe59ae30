"""Loss terms by name and the weighted-sum Objective of a named method (``methods.py``).

Each registered term is an ``nn.Module`` built with its options, whose forward is
``(student: ModelOutput, teacher: ModelOutput | None, targets [B, q]) -> scalar``.
``build_objective("l2d")`` gives BCE + 10 MLD + 100 CD + 1000 ID.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

from torch import Tensor, nn

from mlkd.errors import ConfigError
from mlkd.losses.embedding import PairPlan, cd_id_losses, cd_loss, id_loss, pair_plan
from mlkd.losses.feature import RKD_VARIANTS, ReviewKD, pkt_loss, pooled_as_map, rkd_loss
from mlkd.losses.logits import bce_loss, logits_mse_loss, mld_loss, ps_loss
from mlkd.models.output import ModelOutput
from mlkd.losses.methods import method_weights
from mlkd.registries import LOSS_TERMS

log = logging.getLogger(__name__)

_NEEDS = {
    "logits": "logits [B, q]",
    "label_embeddings": "label_embeddings [B, q, D] (the label-wise embedding head; a model "
                        "with a plain linear head has none)",
    "pooled": "pooled features [B, F]",
    "features": "stage feature maps (ModelOutput.features, NCHW)",
}


def check_option(term: str, key: str, value: Any, choices: Sequence[str] = (),
                 minimum: Optional[float] = None, positive: bool = False) -> Any:
    """Validate one loss-term option when the objective is built (not at the first step).

    ``choices``: the allowed strings; otherwise the value must be a real number (not a bool),
    at least ``minimum`` and, with ``positive``, above 0. A ConfigError names the option as it
    is written in a config (``distill.options.<term>.<key>``).
    """
    where = f"distill.options.{term}.{key}"
    if choices:
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if (positive and value <= 0) or (minimum is not None and value < minimum):
        bound = "> 0" if positive else f">= {minimum}"
        raise ConfigError(f"{where} must be {bound}, got {value!r}")
    return value


class LossTerm(nn.Module):
    """One loss term. Subclasses set ``name``, ``field`` (the ModelOutput field they read),
    ``needs_teacher`` and implement ``compute(student_value, teacher_value, targets)``."""

    name = "?"
    field = "logits"
    needs_teacher = True

    def __init__(self) -> None:
        super().__init__()
        self.method: Optional[str] = None  # set by Objective, for error messages

    def value_of(self, output: Optional[ModelOutput], role: str) -> Any:
        """``output.<field>``; a ConfigError says which method/term needs what when missing."""
        where = f"method {self.method!r}, loss term {self.name!r}" if self.method \
            else f"loss term {self.name!r}"
        if output is None:
            raise ConfigError(f"{where} needs a teacher, but no teacher output was given; "
                              "configure a teacher or choose a method without this term")
        value = getattr(output, self.field)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            raise ConfigError(f"{where} needs {_NEEDS[self.field]} from the {role} model, "
                              f"which has none; build the {role} so that it provides them")
        return value

    def forward(self, student: ModelOutput, teacher: Optional[ModelOutput],
                targets: Tensor) -> Tensor:
        s = self.value_of(student, "student")
        t = self.value_of(teacher, "teacher") if self.needs_teacher else None
        return self.compute(s, t, targets)

    def compute(self, s: Any, t: Any, targets: Tensor) -> Tensor:
        raise NotImplementedError


@LOSS_TERMS.register("bce")
class BCETerm(LossTerm):
    """BCE with the ground truth; reduction "sum" (official) or "mean" (sum / B)."""

    name, needs_teacher = "bce", False

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = check_option("bce", "reduction", reduction, ("sum", "mean"))

    def compute(self, s, t, targets):
        return bce_loss(s, targets, self.reduction)


@LOSS_TERMS.register("mld")
class MLDTerm(LossTerm):
    """Multi-label logits distillation (per-label Bernoulli KL); ``temperature`` default 1."""

    name = "mld"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = check_option("mld", "temperature", temperature, positive=True)

    def compute(self, s, t, targets):
        return mld_loss(s, t, self.temperature)


@LOSS_TERMS.register("ps")
class PSTerm(LossTerm):
    """Partial softmax distillation (Song et al. 2021)."""

    name = "ps"

    def compute(self, s, t, targets):
        return ps_loss(s, t, targets)


@LOSS_TERMS.register("mse")
class MSETerm(LossTerm):
    """Mean squared error between logits."""

    name = "mse"

    def compute(self, s, t, targets):
        return logits_mse_loss(s, t)


class _EmbeddingTerm(LossTerm):
    field = "label_embeddings"
    with_cd = with_id = False  # which groups of a PairPlan the term reads

    def __init__(self, variant: str = "official"):
        super().__init__()
        if variant not in ("official", "paper"):
            raise ConfigError(f"loss term {self.name!r}: variant must be 'official' or 'paper', "
                              f"got {variant!r}")
        self.variant = variant

    def forward(self, student: ModelOutput, teacher: Optional[ModelOutput], targets: Tensor,
                plan: Optional[PairPlan] = None) -> Tensor:
        s, t = self.value_of(student, "student"), self.value_of(teacher, "teacher")
        return self.compute(s, t, targets, plan)


@LOSS_TERMS.register("cd")
class CDTerm(_EmbeddingTerm):
    """Class-aware label-wise embedding distillation; ``variant`` "official" or "paper"."""

    name, with_cd = "cd", True

    def compute(self, s, t, targets, plan=None):
        return cd_loss(s, t, targets, self.variant, plan)


@LOSS_TERMS.register("id")
class IDTerm(_EmbeddingTerm):
    """Instance-aware label-wise embedding distillation; ``variant`` "official" or "paper"."""

    name, with_id = "id", True

    def compute(self, s, t, targets, plan=None):
        return id_loss(s, t, targets, self.variant, plan)


@LOSS_TERMS.register("rkd")
class RKDTerm(LossTerm):
    """Relational KD on pooled features. ``variant``: ``original`` (Park et al.: weights 25
    distance / 50 angle, means) or ``official`` (the official L2D code: 10 / 10, the distance
    term summed / B); ``distance_weight`` / ``angle_weight`` override the variant's weights."""

    name, field = "rkd", "pooled"

    def __init__(self, variant: str = "original", distance_weight: Optional[float] = None,
                 angle_weight: Optional[float] = None):
        super().__init__()
        self.variant = check_option("rkd", "variant", variant, tuple(RKD_VARIANTS))
        default_distance, default_angle, self.distance_reduction = RKD_VARIANTS[variant]
        self.distance_weight = check_option("rkd", "distance_weight", default_distance
                                            if distance_weight is None else distance_weight, minimum=0)
        self.angle_weight = check_option("rkd", "angle_weight", default_angle
                                         if angle_weight is None else angle_weight, minimum=0)

    def compute(self, s, t, targets):
        return rkd_loss(s, t, self.distance_weight, self.angle_weight, self.distance_reduction)


@LOSS_TERMS.register("pkt")
class PKTTerm(LossTerm):
    """Probabilistic knowledge transfer on pooled features."""

    name, field = "pkt", "pooled"

    def __init__(self, eps: float = 1e-7, reduction: str = "mean"):
        super().__init__()
        self.eps = check_option("pkt", "eps", eps, positive=True)
        self.reduction = check_option("pkt", "reduction", reduction, ("mean", "sum"))

    def compute(self, s, t, targets):
        return pkt_loss(s, t, self.eps, self.reduction)


@LOSS_TERMS.register("reviewkd")
class ReviewKDTerm(LossTerm):
    """ReviewKD on stage feature maps; its ABF modules are trained with the student.

    ``variant``: ``stages`` (the backbone's stage maps) or ``official`` (the stage maps plus
    the pooled feature as a deepest 1 x 1 level, as the official L2D code's ReviewKDModel
    shapes [1, 7, 14, 28, 56]; that code's own feature path cannot run, so this is its
    reconstruction). ``official`` needs ``student_pooled_dim`` / ``teacher_pooled_dim``.
    """

    name, field = "reviewkd", "features"

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int],
                 mid_channel: int = 256, variant: str = "stages",
                 student_pooled_dim: Optional[int] = None, teacher_pooled_dim: Optional[int] = None):
        super().__init__()
        self.variant = check_option("reviewkd", "variant", variant, ("stages", "official"))
        student_channels, teacher_channels = list(student_channels), list(teacher_channels)
        if variant == "official":
            if student_pooled_dim is None or teacher_pooled_dim is None:
                raise ConfigError("loss term 'reviewkd': variant 'official' needs the pooled feature "
                                  "dims of student and teacher (student_pooled_dim, teacher_pooled_dim)")
            student_channels.append(int(student_pooled_dim))
            teacher_channels.append(int(teacher_pooled_dim))
        self.review = ReviewKD(student_channels, teacher_channels, mid_channel)

    def forward(self, student: ModelOutput, teacher: Optional[ModelOutput], targets: Tensor) -> Tensor:
        s, t = self.value_of(student, "student"), self.value_of(teacher, "teacher")
        if self.variant == "official":
            for output, role in ((student, "student"), (teacher, "teacher")):
                if output.pooled is None:
                    raise ConfigError(f"loss term 'reviewkd' (variant official) needs {_NEEDS['pooled']} "
                                      f"from the {role} model, which has none")
            s = [*s, pooled_as_map(student.pooled)]
            t = [*t, pooled_as_map(teacher.pooled)]
        return self.compute(s, t, targets)

    def compute(self, s, t, targets):
        return self.review(s, t)


class Objective(nn.Module):
    """Weighted sum of named loss terms.

    ``forward(student, teacher, targets) -> (total, values)``: ``total`` is the scalar to
    back-propagate, ``values`` maps each term name to its unweighted value (detached tensor;
    no host sync, call ``.item()`` when logging). When both cd and id are present with the
    same variant, they are computed by one ``cd_id_losses`` call. Parameters (ReviewKD's ABF
    modules) are trained with the student: add ``objective.parameters()`` to its optimiser.
    ``host_targets``: a CPU copy of ``targets`` (the loader's batch); when given, the CD/ID
    pair enumeration is done on the host, so the step makes no host sync on an accelerator.
    """

    def __init__(self, method: str, terms: Mapping[str, LossTerm], weights: Mapping[str, float]):
        super().__init__()
        self.method = method
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights[name]) for name in terms}
        for term in self.terms.values():
            term.method = method
        both = "cd" in self.terms and "id" in self.terms
        self._fused = both and self.terms["cd"].variant == self.terms["id"].variant

    @property
    def needs_teacher(self) -> bool:
        return any(term.needs_teacher for term in self.terms.values())

    def forward(self, student: ModelOutput, teacher: Optional[ModelOutput], targets: Tensor,
                host_targets: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
        values: dict[str, Tensor] = {}
        if self._fused:
            cd_term = self.terms["cd"]
            s = cd_term.value_of(student, "student")
            t = cd_term.value_of(teacher, "teacher")
            plan = None if host_targets is None else pair_plan(host_targets, True, True)
            values["cd"], values["id"] = cd_id_losses(s, t, targets, cd_term.variant, plan)
        for name, term in self.terms.items():
            if name in values:
                continue
            if isinstance(term, _EmbeddingTerm) and host_targets is not None:
                plan = pair_plan(host_targets, term.with_cd, term.with_id)
                values[name] = term(student, teacher, targets, plan)
            else:
                values[name] = term(student, teacher, targets)
        total = sum(self.weights[name] * values[name] for name in self.terms)
        return total, {name: value.detach() for name, value in values.items()}

    def extra_repr(self) -> str:
        return f"method={self.method!r}, weights={self.weights}"


def _check_names(what: str, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in LOSS_TERMS]
    if unknown:
        raise ConfigError(f"unknown loss term(s) {unknown} in {what}; known: "
                          f"{', '.join(LOSS_TERMS.names())}")


def _build_term(name: str, kwargs: Mapping[str, Any]) -> LossTerm:
    cls = LOSS_TERMS.get(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"bad options for loss term {name!r}: {dict(kwargs)} ({err}); "
                          f"see {cls.__name__}.__init__ for the accepted options") from None


def build_objective(method: str, weights: Optional[Mapping[str, float]] = None,
                    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    student_channels: Optional[Sequence[int]] = None,
                    teacher_channels: Optional[Sequence[int]] = None,
                    student_pooled_dim: Optional[int] = None,
                    teacher_pooled_dim: Optional[int] = None) -> Objective:
    """The Objective of a named method (see ``mlkd.losses.methods``).

    weights: {term: weight} overrides; naming a term the method lacks adds it, a weight of 0
    removes the term. options: {term: {kwarg: value}} passed to the term's constructor.
    student_channels / teacher_channels: stage channel lists, needed by reviewkd;
    student_pooled_dim / teacher_pooled_dim: pooled feature dims (F), needed by reviewkd's
    ``official`` variant. Unknown methods, term names, or options raise ConfigError.
    """
    options = {k: dict(v) for k, v in (options or {}).items()}
    _check_names(f"the options of method {method!r}", list(options))
    chosen = method_weights(method, weights)
    stray = [name for name in options if name not in chosen]
    if stray:
        raise ConfigError(f"options given for loss term(s) {stray} that method {method!r} does "
                          f"not use (its terms: {list(chosen)}); add them with a weight")
    if "reviewkd" in chosen:
        opts = options.setdefault("reviewkd", {})
        opts.setdefault("student_channels", student_channels)
        opts.setdefault("teacher_channels", teacher_channels)
        if opts["student_channels"] is None or opts["teacher_channels"] is None:
            raise ConfigError(f"method {method!r} uses reviewkd, which needs the stage channel "
                              "lists: pass student_channels and teacher_channels")
        if opts.get("variant") == "official":
            opts.setdefault("student_pooled_dim", student_pooled_dim)
            opts.setdefault("teacher_pooled_dim", teacher_pooled_dim)
    terms = {name: _build_term(name, options.get(name, {})) for name in chosen}
    log.debug("objective %s: %s", method, chosen)
    return Objective(method, terms, chosen)
