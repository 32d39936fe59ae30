"""Named methods (L2D, its ablations and the baselines the paper compares with): a method
owns its row label, its loss terms with their default weights, and its place in the result
tables.

Everything that lists methods (the grid's row labels, the demo, the table row order, the CLI
help) reads this registry, so a method registered by a plugin module is first-class::

    from mlkd.losses import register_method
    register_method("cosine", "Cosine KD", {"bce": 1.0, "cosine": 1.0})
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

from mlkd.errors import ConfigError
from mlkd.registries import LOSS_TERMS, METHODS

#: The label of the teacher's row (a grid's "teacher" entry, not a method).
TEACHER_LABEL = "Teacher"


@dataclass(frozen=True)
class Method:
    """A named objective: ``terms`` maps each loss term to its default weight; ``bounded``:
    its distillation terms' weights are always bounded (``distill.balance: bounded``)."""

    key: str
    label: str
    terms: tuple[tuple[str, float], ...]
    order: float  # rows of a table are sorted by it (the paper's order for the built-ins)
    bounded: bool = False

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.terms)


def register_method(
    key: str, label: str, terms: Union[Mapping[str, float], tuple], order: Optional[float] = None, bounded: bool = False
) -> Method:
    """Register method ``key`` with table row ``label`` and {term: default weight};
    ``order`` (default: after every method registered so far) places its row in tables;
    ``bounded``: the method runs under ``distill.balance: bounded`` whatever the config says."""
    terms = tuple((str(name), float(weight)) for name, weight in dict(terms).items())
    if not terms:
        raise ConfigError(f"method {key!r} has no loss terms")
    if order is None:
        order = max((m.order for m in METHODS.values()), default=0.0) + 1.0
    return METHODS.add(key, Method(key, label, terms, float(order), bounded))


# Baseline weights follow the original papers where they state one (RKD's 25/50 live inside
# the rkd term, `variant: official` gives the official L2D code's 10/10; ReviewKD 1.0 as in
# Chen et al. and the official code); PKT, MSE and PS use 1.0 (the authors' code applies no
# extra factor). L2D weights are the paper's: 10 MLD, 100 CD, 1000 ID. The order is the
# paper's row order (Table 1 / Table 4).
for _order, (_key, _label, _terms) in enumerate(
    (
        ("vanilla", "Student", {"bce": 1.0}),
        ("rkd", "RKD", {"bce": 1.0, "rkd": 1.0}),
        ("pkt", "PKT", {"bce": 1.0, "pkt": 1.0}),
        ("reviewkd", "ReviewKD", {"bce": 1.0, "reviewkd": 1.0}),
        ("mse", "MSE", {"bce": 1.0, "mse": 1.0}),
        ("ps", "PS", {"bce": 1.0, "ps": 1.0}),
        ("mld", "MLD", {"bce": 1.0, "mld": 10.0}),
        ("mld+cd", "MLD+CD", {"bce": 1.0, "mld": 10.0, "cd": 100.0}),
        ("mld+id", "MLD+ID", {"bce": 1.0, "mld": 10.0, "id": 1000.0}),
        ("l2d", "L2D", {"bce": 1.0, "mld": 10.0, "cd": 100.0, "id": 1000.0}),
    )
):
    register_method(_key, _label, _terms, float(_order + 1))
# L2D (the paper's weights) under bounded term weights: no term's gradient on the student outputs
# it reads runs above distill.balance_ratio x BCE's (mlkd.engine.balance).
register_method("l2d-bounded", "L2D bounded", METHODS.get("l2d").weights, 10.5, bounded=True)


def unknown_name(kind: str, name: object, known: Sequence[str]) -> str:
    """ "unknown <kind> 'x'; choose one of: a, b, c" (+ "did you mean 'l2d'?" for a near miss)."""
    near = [k for k in known if isinstance(name, str) and k.lower() == name.lower()]
    near = near or difflib.get_close_matches(str(name), list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(known)}"


def method_names() -> list[str]:
    """The registered method keys in table order."""
    return [m.key for m in sorted(METHODS.values(), key=lambda m: (m.order, m.key))]


def get_method(key: str) -> Method:
    """The registered Method ``key``; a ConfigError (a ValueError) lists the known methods
    (a config reader adds the key it read the name from, e.g. ``distill.method``)."""
    if not isinstance(key, str) or key not in METHODS:
        raise ConfigError(unknown_name("method", key, method_names()))
    return METHODS.get(key)


def _check_terms(what: str, names) -> None:
    unknown = [n for n in names if n not in LOSS_TERMS]
    if unknown:
        raise ConfigError(f"unknown loss term(s) {unknown} in {what}; choose from: {', '.join(LOSS_TERMS.names())}")


def method_weights(method: str, weights: Optional[Mapping[str, float]] = None) -> dict[str, float]:
    """{term: weight} of ``method`` after ``weights`` overrides (weight 0 removes a term)."""
    chosen = get_method(method).weights
    _check_terms(f"method {method!r}", list(chosen))
    weights = dict(weights or {})
    _check_terms(f"the weights of method {method!r}", list(weights))
    chosen.update({name: float(w) for name, w in weights.items()})
    chosen = {name: w for name, w in chosen.items() if w != 0.0}
    if not chosen:
        raise ConfigError(f"method {method!r}: every loss term has weight 0; nothing to train")
    return chosen


def method_needs_teacher(method: str, weights: Optional[Mapping[str, float]] = None) -> bool:
    """Whether any term of ``method`` (after overrides) reads the teacher's outputs."""
    return any(LOSS_TERMS.get(name).needs_teacher for name in method_weights(method, weights))


def format_number(value: float) -> str:
    """A weight or factor as written in a row label: 100.0 -> '100', 0.1 -> '0.1'."""
    return f"{float(value):g}"


def row_label(method: str, weights: Optional[Mapping[str, float]] = None) -> str:
    """A table row's label: the method's label, with any weight overrides in brackets
    (``L2D (cd=1, id=10)``); ``teacher`` -> ``Teacher``; an unregistered key stays itself."""
    base = TEACHER_LABEL if method == "teacher" else (METHODS.get(method).label if method in METHODS else method)
    suffix = ", ".join(f"{k}={format_number(v)}" for k, v in sorted((weights or {}).items()))
    return f"{base} ({suffix})" if suffix else base


def row_order() -> tuple[str, ...]:
    """The labels of the rows in table order: Teacher, then each method by its ``order``."""
    methods = sorted(METHODS.values(), key=lambda m: (m.order, m.key))
    return (TEACHER_LABEL, *dict.fromkeys(m.label for m in methods))
