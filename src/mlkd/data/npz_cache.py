"""Atomic ``.npz`` caches of generated datasets (mosaics, scenes).

A cache file is written to a temporary file in its folder and renamed into place, so readers
see a whole file or none; a file that cannot be read or fails its check is regenerated.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mlkd.fileio import make_temporary

log = logging.getLogger(__name__)


def load_npz(path: Path, keys: Sequence[str], check: Callable[[dict], None], what: str) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` of ``path``, or None when it is absent or damaged (a warning names
    it). ``check(arrays)`` raises (any exception) when the shapes are not the expected ones."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in keys}
        check(arrays)
        return arrays
    except Exception as err:  # any unreadable cache is rebuilt, never fatal
        log.warning("%s cache %s is corrupt (%s: %s); regenerating it", what, path, type(err).__name__, err)
        return None


def save_npz(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Write ``arrays`` to ``path`` atomically; an OSError only warns (the data is still used)."""
    tmp = None
    try:
        fd, tmp = make_temporary(path, prefix=path.stem)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("cannot write %s cache %s (%s); continuing without it", what, path, err)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
