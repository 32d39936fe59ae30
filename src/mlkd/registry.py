"""One small decorator registry used by data, models and losses.

Names are explicit keys (never looked up through a module's ``__dict__``)::

    LOSSES = Registry("loss term")

    @LOSSES.register("mld")
    class MLDTerm(nn.Module): ...

    LOSSES.get("mld")  # -> MLDTerm
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from mlkd.errors import ConfigError

T = TypeVar("T")


class Registry:
    """A name -> object mapping filled by a decorator.

    ``name_attr``: when set, ``register`` sets that attribute of each registered object to its
    (first) registry key, so a class's name is never written twice.
    """

    def __init__(self, kind: str, name_attr: str | None = None):
        self.kind = kind
        self.name_attr = name_attr
        self._entries: dict[str, Any] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` and each alias."""

        def add(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._entries:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
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
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            where = f"{key}: " if key else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; known: {known} (a plugin "
                              "module listed under 'plugins:' can register more)") from None

    @contextmanager
    def scoped(self) -> Iterator["Registry"]:
        """Registrations made inside the ``with`` block are removed on exit (for tests)."""
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
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
