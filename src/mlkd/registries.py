"""The registries of named components that a config chooses from, in one place.

Each is filled by the module that defines its entries (``mlkd.losses.terms`` registers the
loss terms, ``mlkd.models.head`` the heads, ...) and by any plugin module (``plugins:`` in a
config, ``--plugin`` on the command line). Declaring them here, below every package, lets the
config validate a name before anything is built without importing those packages::

    from mlkd.registries import HEADS
    HEADS.get("label_wise", "model.head")
"""

from __future__ import annotations

import importlib

from mlkd.registry import Registry

LOSS_TERMS = Registry("loss term", name_attr="name")  # a term class's ``name`` is its key
METHODS = Registry("method")
HEADS = Registry("model head")
RECIPES = Registry("transform recipe")
OPTIMIZERS = Registry("optimizer")

# The modules whose import registers the built-in entries (imported by name on first use, as
# mlkd.data.registry does for the datasets, so that this module imports no package).
_BUILTIN_MODULES = ("mlkd.losses", "mlkd.models.head", "mlkd.data.transforms", "mlkd.engine.optim")


def ensure_builtins() -> None:
    """Import the modules that register the built-in entries (cheap after the first call)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
