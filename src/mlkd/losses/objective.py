"""The weighted-sum Objective of a named method (``mlkd.losses.methods``) over loss terms
(``mlkd.losses.terms``).

``build_objective("l2d")`` gives BCE + 10 MLD + 100 CD + 1000 ID.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Hashable, Mapping, Optional, Sequence, Union, cast

from torch import Tensor, nn

from mlkd.errors import ConfigError, OptionError, quote
from mlkd.losses.methods import method_weights
from mlkd.losses.terms import _FIELDS, LOSS_TERMS, LossTerm
from mlkd.models.output import ModelOutput, OutputShapes

log = logging.getLogger(__name__)


class Objective(nn.Module):
    """Weighted sum of named loss terms: the criterion to call from a training loop::

        criterion = mlkd.build_objective("l2d")     # BCE + 10 MLD + 100 CD + 1000 ID
        loss, parts = criterion(student_out, teacher_out, targets)

    ``student`` / ``teacher``: :class:`~mlkd.ModelOutput` (teacher None for methods without a
    teacher term); targets [B, q] in {0, 1}.
    ``forward(student, teacher, targets) -> (total, values)``: ``total`` is the scalar to
    back-propagate, ``values`` maps each term name to its unweighted value (detached tensor;
    no host sync, call ``.item()`` when logging). Terms that form a group (``LossTerm.group_key``,
    e.g. CD and ID of one variant: one ``cd_id_losses`` call) are computed together, first.
    Parameters (ReviewKD's ABF modules) are trained with the student: add
    ``objective.parameters()`` to its optimiser. ``host_targets``: a CPU copy of ``targets``
    (the loader's batch); when given, each term / group prepares from it on the host (CD/ID
    enumerate their pairs there), so the step makes no host sync on an accelerator.
    """

    def __init__(self, method: str, terms: Mapping[str, LossTerm], weights: Mapping[str, float]):
        super().__init__()
        self.method = method
        self.terms = cast(Mapping[str, LossTerm], nn.ModuleDict(dict(terms)))  # typed by its items
        self.weights = {name: float(weights[name]) for name in terms}
        groups: dict[Hashable, list[str]] = {}
        for name, term in self.terms.items():
            term.method = method
            unknown = [f for f in term.requires() if f not in _FIELDS]
            if unknown:
                raise ConfigError(
                    f"{term.where()} requires {unknown}, which ModelOutput lacks (its fields: {', '.join(_FIELDS)})"
                )
            key = term.group_key()
            if key is not None:
                compute = getattr(type(term).compute_group, "__func__", type(term).compute_group)
                groups.setdefault((compute, key), []).append(name)
        self._groups = [names for names in groups.values() if len(names) > 1]
        self._unchecked = set(self.terms)  # terms whose first value is still to be checked

    @property
    def needs_teacher(self) -> bool:
        return any(term.needs_teacher for term in self.terms.values())

    def forward(
        self,
        student: ModelOutput,
        teacher: Optional[ModelOutput],
        targets: Tensor,
        host_targets: Optional[Tensor] = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        values = self.term_values(student, teacher, targets, host_targets)
        return self.weighted_sum(values), {name: value.detach() for name, value in values.items()}

    def term_values(
        self,
        student: ModelOutput,
        teacher: Optional[ModelOutput],
        targets: Tensor,
        host_targets: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """{term name: unweighted scalar value}, still attached to the autograd graph."""
        _check_inputs(student, teacher, targets, host_targets)
        values: dict[str, Tensor] = {}
        for names in self._groups:
            members = {name: self.terms[name] for name in names}
            cls = type(members[names[0]])
            prepared = None if host_targets is None else cls.prepare_group(members, host_targets)
            values.update(cls.compute_group(members, student, teacher, targets, prepared))
        for name, term in self.terms.items():
            if name not in values:
                prepared = None if host_targets is None else term.prepare(host_targets)
                values[name] = term(student, teacher, targets, prepared)
        if self._unchecked:
            self._check_values(values)
        return values

    def _check_values(self, values: Mapping[str, Any]) -> None:
        """A TypeError naming the term whose (first) value is not a 0-d tensor. Run once per
        term: shape and type are metadata, so the check makes no host sync."""
        for name in sorted(self._unchecked):
            value = values.get(name)
            if isinstance(value, Tensor) and value.dim() == 0:
                self._unchecked.discard(name)
                continue
            if isinstance(value, Tensor):
                got = f"a tensor of shape [{', '.join(str(n) for n in value.shape)}]"
            elif name not in values:
                got = "nothing (its group's compute_group gave no value for it)"
            else:
                got = f"a {type(value).__name__} ({quote(value)})"
            raise TypeError(
                f"{self.terms[name].where()} returned {got}; a loss term must return a 0-d tensor (reduce "
                "a per-sample [B] value with .mean() or .sum(); keep it a tensor, no .item(), so it carries "
                "the gradient)"
            )

    def weighted_sum(
        self, values: Mapping[str, Tensor], weights: Optional[Mapping[str, Union[float, Tensor]]] = None
    ) -> Tensor:
        """The total loss: sum of weight x value over the terms. ``weights``: {term: weight}
        (a float or a 0-d tensor, e.g. ``WeightBalancer.step_weights()``) in force instead of
        the configured ones for the terms it names."""
        weights = {**self.weights, **(weights or {})}
        return cast(Tensor, sum(weights[name] * values[name] for name in self.terms))

    def extra_repr(self) -> str:
        return f"method={self.method!r}, weights={self.weights}"


_EXPECTED = "mlkd.ModelOutput (e.g. ModelOutput(logits=z, label_embeddings=E) with z [B, q], E [B, q, D])"


def _check_inputs(student: Any, teacher: Any, targets: Any, host_targets: Any) -> None:
    """A TypeError naming the expected form when an input is not what ``Objective`` takes."""
    for role, value in (("student", student), ("teacher", teacher)):
        if not isinstance(value, ModelOutput) and not (role == "teacher" and value is None):
            none = " or None (methods without a teacher term)" if role == "teacher" else ""
            raise TypeError(
                f"Objective: {role} must be a {_EXPECTED}{none}, got "
                f"{type(value).__name__}; wrap the model's outputs in a ModelOutput"
            )
    for role, value in (("targets", targets), ("host_targets", host_targets)):
        if not isinstance(value, Tensor) and not (role == "host_targets" and value is None):
            raise TypeError(f"Objective: {role} must be a tensor [B, q] of 0/1 labels, got {type(value).__name__}")


def _check_names(what: str, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in LOSS_TERMS]
    if unknown:
        raise ConfigError(f"unknown loss term(s) {unknown} in {what}; choose from: {', '.join(LOSS_TERMS.names())}")


def build_term(name: str, kwargs: Mapping[str, Any]) -> LossTerm:
    cls = LOSS_TERMS.get(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise OptionError(
            f"bad options for loss term {name!r}: {dict(kwargs)} ({err}); "
            f"see {cls.__name__}.__init__ for the accepted options",
            (name,),
        ) from None


def _shapes(
    shapes: Optional[OutputShapes], channels: Optional[Sequence[int]], pooled_dim: Optional[int]
) -> Optional[OutputShapes]:
    """``shapes`` with the legacy ``*_channels`` / ``*_pooled_dim`` arguments filled in."""
    if channels is None and pooled_dim is None:
        return shapes
    shapes = shapes or OutputShapes()
    if channels is not None:
        shapes = dataclasses.replace(shapes, stage_channels=tuple(int(c) for c in channels))
    if pooled_dim is not None:
        shapes = dataclasses.replace(shapes, pooled_dim=int(pooled_dim))
    return shapes


def build_objective(
    method: str,
    weights: Optional[Mapping[str, float]] = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    student_channels: Optional[Sequence[int]] = None,
    teacher_channels: Optional[Sequence[int]] = None,
    student_pooled_dim: Optional[int] = None,
    teacher_pooled_dim: Optional[int] = None,
    *,
    student_shapes: Optional[OutputShapes] = None,
    teacher_shapes: Optional[OutputShapes] = None,
) -> Objective:
    """The Objective of a named method (see ``mlkd.losses.methods``).

    weights: {term: weight} overrides; naming a term the method lacks adds it, a weight of 0
    removes the term. options: {term: {kwarg: value}} passed to the term's constructor.
    student_shapes / teacher_shapes: the models' :class:`OutputShapes`
    (``mlkd.models.output_shapes(model)``; teacher None without one), given to each term's
    ``setup`` right after it is built (reviewkd sizes its ABF modules from them).
    student_channels ... teacher_pooled_dim: shorthand filling those shapes' stage_channels /
    pooled_dim. Unknown methods, term names, or options raise ConfigError.
    """
    options = {k: dict(v) for k, v in (options or {}).items()}
    _check_names(f"the options of method {method!r}", list(options))
    chosen = method_weights(method, weights)
    stray = [name for name in options if name not in chosen]
    if stray:
        raise ConfigError(
            f"options given for loss term(s) {stray} that method {method!r} does "
            f"not use (its terms: {list(chosen)}); add them with a weight"
        )
    student_shapes = _shapes(student_shapes, student_channels, student_pooled_dim)
    teacher_shapes = _shapes(teacher_shapes, teacher_channels, teacher_pooled_dim)
    terms = {}
    for name in chosen:  # each term is set up as it is built: parameters in the order of the terms
        terms[name] = term = build_term(name, options.get(name, {}))
        term.method = method
        term.setup(student_shapes, teacher_shapes)
    log.debug("objective %s: %s", method, chosen)
    return Objective(method, terms, chosen)
