"""Checks of a Config's named choices before anything is built (no data, no model, no folder).

``check_config(cfg)`` checks every registry choice (dataset, transform recipe, head,
optimiser, method, loss terms and their options) and that a method reading a teacher has
one. The Python builders raise errors worded for Python callers ("unknown method 'L2D';
choose one of: ..."); here they are re-raised naming the config key they were read from
(``distill.method: unknown method ...``). ``fit`` runs it first, so a refused config leaves no
run folder behind.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from mlkd.config import Config
from mlkd.errors import ConfigError, OptionError

T = TypeVar("T")


def at_key(key: str, check: Callable[[], T]) -> T:
    """``check()``; a ConfigError it raises is re-raised as ``<key>: <message>``."""
    try:
        return check()
    except OptionError as err:
        where = ".".join((key, *err.path)) if err.path else key
        raise ConfigError(f"{where}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


def _choose(kind: str, name: str, known: list[str]) -> None:
    from mlkd.losses.methods import unknown_name

    if name not in known:
        raise ConfigError(
            unknown_name(kind, name, known) + " (a plugin module listed under 'plugins:' can register more)"
        )


def check_config(cfg: Config) -> None:
    """Every named choice of ``cfg`` is registered and the method's weights and options are
    valid; a ConfigError names the key. Cheap: nothing is built but the loss terms."""
    from mlkd import registries
    from mlkd.data import dataset_names
    from mlkd.losses.methods import get_method, method_needs_teacher, method_weights
    from mlkd.losses.objective import build_term

    at_key("data.name", lambda: _choose("dataset", cfg.data.name, dataset_names()))
    at_key("data.recipe", lambda: _choose("transform recipe", cfg.data.recipe, registries.RECIPES.names()))
    at_key("model.head", lambda: _choose("model head", cfg.model.head, registries.HEADS.names()))
    at_key("optim.name", lambda: _choose("optimizer", cfg.optim.name, registries.OPTIMIZERS.names()))
    d = cfg.distill
    at_key("distill.method", lambda: get_method(d.method))
    chosen = at_key("distill.weights", lambda: method_weights(d.method, d.weights))
    stray = [name for name in d.options if name not in chosen]
    if stray:
        raise ConfigError(
            f"distill.options: options given for loss term(s) {stray} that method "
            f"{d.method!r} does not use (its terms: {list(chosen)}); add them with a "
            f"weight (distill.weights.{stray[0]}=1)"
        )
    terms = {
        name: at_key("distill.options", lambda name=name: build_term(name, d.options.get(name, {}))) for name in chosen
    }
    if method_needs_teacher(d.method, d.weights) and not d.teacher:
        raise ConfigError(
            f"distill.teacher: method {d.method!r} distils from a teacher; give its "
            "checkpoint (distill.teacher=/path/to/last.pt or --teacher)"
        )
    reading = [name for name, term in terms.items() if "label_embeddings" in term.requires()]
    if cfg.model.head == "linear" and reading:
        raise ConfigError(
            f"model.head: the {', '.join(reading)} term(s) of method {d.method!r} read "
            "label embeddings, which a linear head does not give; use model.head=label_wise"
        )
