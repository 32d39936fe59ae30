"""User code that plugs into mlkd: modules imported before a config is built.

A plugin is an importable module (on ``PYTHONPATH`` or installed) whose import registers loss
terms, methods, heads, recipes, optimisers or datasets in ``mlkd.registries``. It is named by a
config's ``plugins:`` list, a grid's ``plugins:`` key or ``mlkd --plugin MODULE``. Only a config
or grid file the user runs, or the command line, imports plugins: reading a checkpoint or a
results folder never does (a file never runs code).
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Iterable

from mlkd.errors import ConfigError

log = logging.getLogger(__name__)

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_plugin_names(names: Iterable, source: str) -> list[str]:
    """The names as a list of dotted module names; anything else (a path, a number) is a
    ConfigError naming ``source``."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"{source}: 'plugins' must be a list of module names (e.g. [my_kd.methods]), got {names!r}")
    bad = [name for name in names if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name)]
    if bad:
        raise ConfigError(
            f"{source}: plugins {bad} are not module names; give dotted import names "
            "such as my_kd.methods (not file paths), with its folder on PYTHONPATH"
        )
    return list(names)


def load_plugins(names: Iterable, source: str = "config", key: str = "plugins") -> list[str]:
    """Import each named module (once); a module that cannot be found or fails on import is a
    ConfigError naming it, the ``key`` it was given under and ``source``. Returns the names."""
    names = check_plugin_names(names, source)
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            raise ConfigError(
                f"{source}: {key}: module {name!r} cannot be imported ({err}); install it or "
                "put its folder on PYTHONPATH"
            ) from None
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(
                f"{source}: {key}: module {name!r} failed while importing: {type(err).__name__}: {err}"
            ) from err
        log.debug("plugin %s imported", name)
    return names
