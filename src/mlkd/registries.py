"""The registries of named components that a config chooses from, and their Registry class:
one module.

Names are explicit keys (never looked up through a module's ``__dict__``)::

    from mlkd.registries import HEADS

    @HEADS.register("my_head")
    class MyHead(nn.Module): ...

    HEADS.get("label_wise", "model.head")  # -> LabelWiseHead

Each registry is filled by the modules that define its entries (``mlkd.losses.terms``
registers the loss terms, ``mlkd.models.head`` the heads, ``mlkd.data.voc`` its datasets, ...)
and by any plugin module (``plugins:`` in a config, ``--plugin`` on the command line). A
registry imports its built-in modules by name on first lookup, so this module imports no
mlkd package and a config can validate a name before anything is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mlkd.errors import ConfigError

T = TypeVar("T")


class Registry:
    """A name -> object mapping filled by a decorator.

    ``name_attr``: when set, ``register`` sets that attribute of each registered object to its
    (first) registry key, so a class's name is never written twice. ``builtins``: the modules
    whose import registers the built-in entries, imported on the first lookup.
    """

    def __init__(self, kind: str, name_attr: str | None = None, builtins: tuple[str, ...] = ()):
        self.kind = kind
        self.name_attr = name_attr
        self.builtins = builtins
        self._entries: dict[str, Any] = {}

    def load_builtins(self) -> None:
        """Import the modules that register the built-in entries (cheap after the first call)."""
        for module in self.builtins:
            importlib.import_module(module)

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` and each alias."""

        def add(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._entries:
                    raise ConfigError(
                        f"{self.kind} {key!r} is already registered (a built-in or an earlier module's); "
                        "register yours under another name"
                    )
                self._entries[key] = obj
            if self.name_attr:
                setattr(obj, self.name_attr, name)
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        """Register a plain object (not a decorated class) as ``name``."""
        return self.register(name)(obj)

    def get(self, name: str, key: str = "") -> Any:
        """The object registered as ``name``; a ConfigError lists the known names (and names
        the config ``key`` it was read from, when given)."""
        self.load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}; known: {known} (a plugin "
                "module listed under 'plugins:' can register more)"
            ) from None

    @contextmanager
    def scoped(self) -> Iterator[Registry]:
        """Registrations made inside the ``with`` block are removed on exit (for tests)."""
        self.load_builtins()  # built-ins first loaded inside the block must outlive it
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)

    def values(self) -> list[Any]:
        """The registered objects, one per name (aliases included), in name order."""
        return [self._entries[name] for name in self.names()]

    def names(self) -> list[str]:
        self.load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


LOSS_TERMS = Registry("loss term", name_attr="name", builtins=("mlkd.losses",))  # a term's ``name`` is its key
METHODS = Registry("method", builtins=("mlkd.losses",))
HEADS = Registry("model head", builtins=("mlkd.models.head",))
RECIPES = Registry("transform recipe", builtins=("mlkd.data.transforms",))
OPTIMIZERS = Registry("optimizer", builtins=("mlkd.engine.optim",))
#: Dataset builders, called as ``builder(split, transform, **options)`` (see ``mlkd.data.build_dataset``).
DATASETS = Registry(
    "dataset",
    builtins=tuple(f"mlkd.data.{module}" for module in ("mosaic", "voc", "coco", "nuswide", "listfile", "scenes")),
)

_ALL = (LOSS_TERMS, METHODS, HEADS, RECIPES, OPTIMIZERS, DATASETS)


def load_all_builtins() -> None:
    """Import every registry's built-in entries: called before any plugin module is imported,
    so that a plugin registering a built-in's name fails while it imports (naming itself)
    rather than at a later lookup."""
    for registry in _ALL:
        registry.load_builtins()
