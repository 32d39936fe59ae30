"""Loss terms: the :class:`LossTerm` interface and the registered terms (``LOSS_TERMS``).

Each registered term is an ``nn.Module`` built with its options, whose forward is
``(student: ModelOutput, teacher: ModelOutput | None, targets [B, q], prepared=None) -> scalar``;
``mlkd.losses.objective`` combines them into a weighted sum.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable, Mapping, Optional, Sequence

from torch import Tensor, nn

from mlkd.errors import ConfigError, OptionError
from mlkd.losses.embedding import cd_id_losses, cd_loss, id_loss, pair_plan
from mlkd.losses.feature import RKD_VARIANTS, ReviewKD, pkt_loss, pooled_as_map, rkd_loss
from mlkd.losses.logits import bce_loss, logits_mse_loss, mld_loss, ps_loss
from mlkd.models.output import ModelOutput, OutputShapes
from mlkd.registries import LOSS_TERMS

#: field -> (its shape, how a model provides it), for the errors of a term missing a field.
_NEEDS = {
    "logits": ("[B, q]", "every model gives logits"),
    "label_embeddings": (
        "[B, q, D]",
        "a linear head has none — use mlkd.models.LabelWiseHead (model.head: label_wise in a config)",
    ),
    "pooled": ("[B, F]", "give the globally pooled backbone features (MultiLabelNet does)"),
    "features": ("(a list of NCHW stage maps)", "give the backbone's stage feature maps (MultiLabelNet does)"),
    "attention": ("[B, q, T]", "request the head's attention weights (LabelWiseHead.keep_attention)"),
}
_FIELDS = tuple(f.name for f in dataclasses.fields(ModelOutput))


def check_option(
    term: str,
    key: str,
    value: Any,
    choices: Sequence[str] = (),
    minimum: Optional[float] = None,
    positive: bool = False,
) -> Any:
    """Validate one loss-term option when the objective is built (not at the first step).

    ``choices``: the allowed strings; otherwise the value must be a real number (not a bool),
    at least ``minimum`` and, with ``positive``, above 0. An OptionError names the term and the
    option (a config reader re-raises it under ``distill.options.<term>.<key>``).
    """
    where, path = f"loss term {term!r}: option {key!r}", (term, key)
    if choices:
        if value not in choices:
            raise OptionError(f"{where} must be one of {', '.join(choices)}, got {value!r}", path)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise OptionError(f"{where} must be a number, got {value!r}", path)
    if (positive and value <= 0) or (minimum is not None and value < minimum):
        bound = "> 0" if positive else f">= {minimum}"
        raise OptionError(f"{where} must be {bound}, got {value!r}", path)
    return value


class LossTerm(nn.Module):
    """One loss term. ``name`` is its ``LOSS_TERMS`` key (set on registration).

    A subclass implements ``compute(s, t, targets[, prepared]) -> scalar`` and may override:

    - ``needs_teacher`` (class attribute): whether it reads the teacher's outputs.
    - ``requires()``: the ModelOutput fields it reads (student, and teacher if it needs one);
      ``s`` / ``t`` are that field's value when it names one field, else {field: value}.
    - ``setup(student_shapes, teacher_shapes)``: called once by ``build_objective`` with the
      models' :class:`OutputShapes`, before use; terms with modules sized by the models
      build them there.
    - ``prepare(host_targets [B, q] on CPU) -> Any``: per-batch work from the host labels; the
      Objective calls it when it has them and passes the result as ``prepared``.
    - ``group_key()`` with the classmethods ``prepare_group`` / ``compute_group``: terms of one
      Objective whose class shares ``compute_group`` and whose keys are equal (not None) are
      computed together in one call.
    """

    name = "?"
    needs_teacher = True

    def __init__(self) -> None:
        super().__init__()
        self.method: Optional[str] = None  # set by the builder / Objective, for error messages

    def requires(self) -> tuple[str, ...]:
        """The ModelOutput fields this term reads (default: logits)."""
        return ("logits",)

    def setup(self, student: Optional[OutputShapes], teacher: Optional[OutputShapes]) -> None:
        """Size the term's modules from the models' outputs (None: unknown or no teacher)."""

    def prepare(self, host_targets: Tensor) -> Any:
        """Per-batch preparation from the CPU labels [B, q]; passed to ``compute`` (default None)."""
        return None

    def group_key(self) -> Optional[Hashable]:
        """Terms with equal keys (and the same ``compute_group``) are computed together."""
        return None

    @classmethod
    def prepare_group(cls, terms: Mapping[str, LossTerm], host_targets: Tensor) -> Any:
        """``prepare`` for a group: host work shared by ``terms`` (default None)."""
        return None

    @classmethod
    def compute_group(
        cls,
        terms: Mapping[str, LossTerm],
        student: ModelOutput,
        teacher: Optional[ModelOutput],
        targets: Tensor,
        prepared: Any = None,
    ) -> dict[str, Tensor]:
        """{name: scalar} for every term of a group (see ``group_key``): the two models'
        ModelOutputs, targets [B, q], ``prepared`` from ``prepare_group`` (None without host labels)."""
        raise NotImplementedError(f"{cls.__name__} declares a group_key but no compute_group")

    def where(self) -> str:
        """ "the 't' term (method 'm')" (for error messages)."""
        return f"the {self.name!r} term" + (f" (method {self.method!r})" if self.method else "")

    def inputs(self, output: Optional[ModelOutput], role: str) -> Any:
        """The ``requires()`` fields of ``output`` (one: its value; several: {field: value});
        a ConfigError (a ValueError) names the term, the field and the model that lacks it."""
        if output is None:
            raise ConfigError(
                f"{self.where()} needs the teacher's ModelOutput, but teacher is None; "
                "pass the frozen teacher's outputs or choose a method without this term"
            )
        values = {}
        for name in self.requires():
            value = getattr(output, name)
            if value is None or (isinstance(value, (list, tuple)) and not value):
                shape, fix = _NEEDS.get(name, ("", "give that field"))
                raise ConfigError(
                    f"{self.where()} needs ModelOutput.{name} {shape} from the {role}, which has none; {fix}"
                )
            values[name] = value
        return next(iter(values.values())) if len(values) == 1 else values

    def forward(
        self, student: ModelOutput, teacher: Optional[ModelOutput], targets: Tensor, prepared: Any = None
    ) -> Tensor:
        s = self.inputs(student, "student")
        t = self.inputs(teacher, "teacher") if self.needs_teacher else None
        if prepared is None:  # terms without ``prepare`` may define compute(s, t, targets)
            return self.compute(s, t, targets)
        return self.compute(s, t, targets, prepared)

    def compute(self, s: Any, t: Any, targets: Tensor, prepared: Any = None) -> Tensor:
        """The term's value (scalar) from the ``requires()`` inputs ``s`` / ``t`` (t None
        without ``needs_teacher``), targets [B, q] and ``prepared`` (passed when not None)."""
        raise NotImplementedError


@LOSS_TERMS.register("bce")
class BCETerm(LossTerm):
    """BCE with the ground truth; reduction "sum" (official) or "mean" (sum / B)."""

    needs_teacher = False

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = check_option("bce", "reduction", reduction, ("sum", "mean"))

    def compute(self, s, t, targets):
        return bce_loss(s, targets, self.reduction)


@LOSS_TERMS.register("mld")
class MLDTerm(LossTerm):
    """Multi-label logits distillation (per-label Bernoulli KL); ``temperature`` default 1."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = check_option("mld", "temperature", temperature, positive=True)

    def compute(self, s, t, targets):
        return mld_loss(s, t, self.temperature)


@LOSS_TERMS.register("ps")
class PSTerm(LossTerm):
    """Partial softmax distillation (Song et al. 2021)."""

    def compute(self, s, t, targets):
        return ps_loss(s, t, targets)


@LOSS_TERMS.register("mse")
class MSETerm(LossTerm):
    """Mean squared error between logits."""

    def compute(self, s, t, targets):
        return logits_mse_loss(s, t)


class LabelEmbeddingTerm(LossTerm):
    """Base of CD and ID (label_embeddings [B, q, D]). ``prepare``: the term's ``pair_plan`` of
    the host labels. Terms of one variant form a group: one ``cd_id_losses`` call (shared
    positives, pairs and distances) on the joint plan ``pair_plan(host_targets, True, True)``."""

    with_cd = with_id = False  # which groups of a PairPlan the term reads

    def __init__(self, variant: str = "official"):
        super().__init__()
        if variant not in ("official", "paper"):
            raise OptionError(
                f"loss term {self.name!r}: option 'variant' must be 'official' or 'paper', got {variant!r}",
                (self.name, "variant"),
            )
        self.variant = variant

    def requires(self) -> tuple[str, ...]:
        return ("label_embeddings",)

    def prepare(self, host_targets: Tensor) -> Any:
        return pair_plan(host_targets, self.with_cd, self.with_id)

    def group_key(self) -> Optional[Hashable]:
        return ("label_embeddings", self.variant)

    @classmethod
    def prepare_group(cls, terms, host_targets):
        return pair_plan(host_targets, True, True)

    @classmethod
    def compute_group(cls, terms, student, teacher, targets, prepared=None):
        first = next(iter(terms.values()))
        s, t = first.inputs(student, "student"), first.inputs(teacher, "teacher")
        cd, id_ = cd_id_losses(s, t, targets, first.variant, prepared)
        return {
            **{name: cd for name, term in terms.items() if term.with_cd},
            **{name: id_ for name, term in terms.items() if term.with_id},
        }


@LOSS_TERMS.register("cd")
class CDTerm(LabelEmbeddingTerm):
    """Class-aware label-wise embedding distillation; ``variant`` "official" or "paper"."""

    with_cd = True

    def compute(self, s, t, targets, prepared=None):
        return cd_loss(s, t, targets, self.variant, prepared)


@LOSS_TERMS.register("id")
class IDTerm(LabelEmbeddingTerm):
    """Instance-aware label-wise embedding distillation; ``variant`` "official" or "paper"."""

    with_id = True

    def compute(self, s, t, targets, prepared=None):
        return id_loss(s, t, targets, self.variant, prepared)


@LOSS_TERMS.register("rkd")
class RKDTerm(LossTerm):
    """Relational KD on pooled features. ``variant``: ``original`` (Park et al.: weights 25
    distance / 50 angle, means) or ``official`` (the official L2D code: 10 / 10, the distance
    term summed / B); ``distance_weight`` / ``angle_weight`` override the variant's weights."""

    def __init__(
        self, variant: str = "original", distance_weight: Optional[float] = None, angle_weight: Optional[float] = None
    ):
        super().__init__()
        self.variant = check_option("rkd", "variant", variant, tuple(RKD_VARIANTS))
        default_distance, default_angle, self.distance_reduction = RKD_VARIANTS[variant]
        self.distance_weight = check_option(
            "rkd", "distance_weight", default_distance if distance_weight is None else distance_weight, minimum=0
        )
        self.angle_weight = check_option(
            "rkd", "angle_weight", default_angle if angle_weight is None else angle_weight, minimum=0
        )

    def requires(self) -> tuple[str, ...]:
        return ("pooled",)

    def compute(self, s, t, targets):
        return rkd_loss(s, t, self.distance_weight, self.angle_weight, self.distance_reduction)


@LOSS_TERMS.register("pkt")
class PKTTerm(LossTerm):
    """Probabilistic knowledge transfer on pooled features."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean"):
        super().__init__()
        self.eps = check_option("pkt", "eps", eps, positive=True)
        self.reduction = check_option("pkt", "reduction", reduction, ("mean", "sum"))

    def requires(self) -> tuple[str, ...]:
        return ("pooled",)

    def compute(self, s, t, targets):
        return pkt_loss(s, t, self.eps, self.reduction)


@LOSS_TERMS.register("reviewkd")
class ReviewKDTerm(LossTerm):
    """ReviewKD on stage feature maps; its ABF modules (built by ``setup`` from the models'
    stage channels) are trained with the student.

    ``variant``: ``stages`` (the backbone's stage maps) or ``official`` (the stage maps plus
    the pooled feature as a deepest 1 x 1 level, as the official L2D code's ReviewKDModel
    shapes [1, 7, 14, 28, 56]; that code's own feature path cannot run, so this is its
    reconstruction). The channel lists and pooled dims come from the models' OutputShapes;
    the options ``student_channels`` ... ``teacher_pooled_dim`` override them.
    """

    def __init__(
        self,
        student_channels: Optional[Sequence[int]] = None,
        teacher_channels: Optional[Sequence[int]] = None,
        mid_channel: int = 256,
        variant: str = "stages",
        student_pooled_dim: Optional[int] = None,
        teacher_pooled_dim: Optional[int] = None,
    ):
        super().__init__()
        self.variant = check_option("reviewkd", "variant", variant, ("stages", "official"))
        self.mid_channel = mid_channel
        self._given = (student_channels, teacher_channels, student_pooled_dim, teacher_pooled_dim)
        self.review: Optional[ReviewKD] = None

    def requires(self) -> tuple[str, ...]:
        return ("features", "pooled") if self.variant == "official" else ("features",)

    def setup(self, student: Optional[OutputShapes], teacher: Optional[OutputShapes]) -> None:
        s_ch, t_ch, s_dim, t_dim = self._given
        s_ch = s_ch if s_ch is not None else getattr(student, "stage_channels", None)
        t_ch = t_ch if t_ch is not None else getattr(teacher, "stage_channels", None)
        if s_ch is None or t_ch is None:
            raise ConfigError(
                f"{self.where()} needs the stage channel lists of student and teacher: "
                "build the objective with both models' OutputShapes (or pass "
                "student_channels and teacher_channels)"
            )
        s_ch, t_ch = list(s_ch), list(t_ch)
        if self.variant == "official":
            s_dim = s_dim if s_dim is not None else getattr(student, "pooled_dim", None)
            t_dim = t_dim if t_dim is not None else getattr(teacher, "pooled_dim", None)
            if s_dim is None or t_dim is None:
                raise ConfigError(
                    "loss term 'reviewkd': variant 'official' needs the pooled feature "
                    "dims of student and teacher (student_pooled_dim, teacher_pooled_dim)"
                )
            s_ch.append(int(s_dim))
            t_ch.append(int(t_dim))
        self.review = ReviewKD(s_ch, t_ch, self.mid_channel)

    def compute(self, s, t, targets):
        if self.review is None:
            raise RuntimeError(f"{self.where()}: call setup(student_shapes, teacher_shapes) first")
        if self.variant == "official":
            s = [*s["features"], pooled_as_map(s["pooled"])]
            t = [*t["features"], pooled_as_map(t["pooled"])]
        return self.review(s, t)
