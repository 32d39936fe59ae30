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
from pathlib import PurePath
from typing import Iterable

from mlkd.errors import ConfigError
from mlkd.registries import load_all_builtins

log = logging.getLogger(__name__)

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _file_name_error(name: str, where: str) -> ConfigError:
    """The error for a plugin given as a file name or path: the module name to give instead."""
    path = PurePath(name)
    module = path.stem if path.suffix == ".py" else path.name
    if str(path.parent) in ("", "."):
        folder = f"the folder that holds {module}.py on PYTHONPATH, e.g. PYTHONPATH=. when it is the current folder"
    else:
        folder = f"{path.parent} on PYTHONPATH: PYTHONPATH={path.parent} mlkd ..."
    return ConfigError(
        f"{where}{name!r} is a file name, not a module name: give {module} (with {folder}; or install "
        "it); a plugin is imported as a module, never run as a file"
    )


def check_plugin_names(names: Iterable, source: str, key: str = "plugins") -> list[str]:
    """The names as a list of dotted module names; anything else (a file name or path such as
    ``my_kd.py``, a number) is a ConfigError naming ``source`` and ``key`` (either may be "",
    e.g. under a validator that names them), before anything is imported."""
    where = "".join(f"{part}: " for part in (source, key) if part)
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"{where}must be a list of module names (e.g. [my_kd.methods]), got {names!r}")
    for name in names:
        if isinstance(name, str) and (name.endswith(".py") or "/" in name or "\\" in name):
            raise _file_name_error(name, where)
    bad = [name for name in names if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name)]
    if bad:
        raise ConfigError(
            f"{where}{bad} are not module names; give dotted import names such as my_kd.methods "
            "(not file paths), with its folder on PYTHONPATH"
        )
    return list(names)


class PluginInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a KeyboardInterrupt raised by the module) while a plugin was importing; still
    a KeyboardInterrupt, whose message names the module (the CLI prints it, exit status 130)."""


def load_plugins(names: Iterable, source: str = "config", key: str = "plugins") -> list[str]:
    """Import each named module (once), after every registry's built-ins (so a plugin that
    registers a built-in name fails here, naming itself, whatever it imports). A module that
    cannot be found, raises, or exits (``sys.exit``) while importing is a ConfigError naming it,
    the ``key`` it was given under and ``source``; an interrupt is a :class:`PluginInterrupted`
    naming them. Returns the names."""
    names = check_plugin_names(names, source, key)
    if names:
        load_all_builtins()
    for name in names:
        where = f"{source}: {key}: module {name!r}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            raise ConfigError(
                f"{where} cannot be imported ({err}); install it or put its folder on PYTHONPATH"
            ) from None
        except SystemExit as err:
            raise ConfigError(
                f"{where} called sys.exit({err.code!r}) while importing; a plugin module registers "
                "its entries and returns, it never exits"
            ) from None
        except KeyboardInterrupt:
            raise PluginInterrupted(f"interrupted while importing plugin module {name!r} ({source}: {key})") from None
        except Exception as err:
            message = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
            raise ConfigError(f"{where} failed while importing: {message}") from err
        log.debug("plugin %s imported", name)
    return names
