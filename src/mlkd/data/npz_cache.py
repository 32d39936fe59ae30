"""Keyed, digested and atomic ``.npz`` caches of generated datasets (mosaics, scenes).

A cache file holds its arrays and ``__meta__`` (JSON bytes as uint8): ``key``, every input that
shapes the arrays (options, sizes, seed, source files, code and library versions; the dataset
module builds it), and ``sha256``, a digest of the key and of each array's name, dtype, shape
and bytes. A read checks that the file opens, that its key equals the expected one field by
field, that it holds the expected arrays (and shapes, ``check``), and its digest, once per file
and process (a file already verified, same inode, size and mtime, is not hashed again). A
failure logs one warning naming the file and what differs, and the file is regenerated: these
caches are derived data. A file that is bad and cannot be regenerated is one DataError naming
it and the fix.

Writes are atomic: a temporary file ``<name>.<host>.<pid>.<random>.tmp`` in the cache's folder,
fsynced, then renamed over the target. Before writing, a build removes the temporary files of its
own kind (``<what>-*.tmp``) that killed builds left: those named with this host and a pid that is
no longer running, and any untouched for :data:`STALE_SECONDS` (another host's, a reused pid's,
an older mlkd's). A live build's file is never taken: its pid runs, and it is being written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mlkd.errors import DataError, shorten
from mlkd.fileio import make_temporary

log = logging.getLogger(__name__)

META = "__meta__"
STALE_SECONDS = 24 * 3600
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMPORARY = re.compile(r"\.npz\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]*\.tmp$")
_VERIFIED: set[tuple] = set()  # (path, device, inode, size, mtime_ns) of files whose digest held


class CacheProblem(Exception):
    """Why a cache file cannot be used; the text completes "<what> cache <path> ..."."""


# ------------------------------------------------------------------ key and digest
def code_digest(*modules) -> str:
    """SHA-256 (16 hex digits) of the source files of ``modules``: a cache key field, so that a
    change to the code that draws a dataset regenerates its cache files (any edit counts)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def release(package: str) -> str:
    """``major.minor`` of an installed distribution (its random streams, resampling, ... may
    change with it), or "absent"."""
    try:
        return ".".join(importlib.metadata.version(package).split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _canonical(key: dict) -> dict:
    return json.loads(json.dumps(key, sort_keys=True))


def key_name(key: dict) -> str:
    """16 hex digits naming a file by its key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _start_digest(key: dict):
    return hashlib.sha256(json.dumps(_canonical(key), sort_keys=True).encode())


def _feed_header(digest, name: str, dtype: np.dtype, shape: tuple) -> None:
    digest.update(f"{name}:{dtype.str}:{tuple(shape)};".encode())


def arrays_digest(key: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of ``key`` and of each array's name, dtype, shape and C-order bytes (by name)."""
    digest = _start_digest(key)
    for name in sorted(arrays):
        array = np.require(arrays[name], requirements="C")
        _feed_header(digest, name, array.dtype, array.shape)
        digest.update(array)
    return digest.hexdigest()


def key_differences(stored: Any, expected: Any, prefix: str = "") -> list[str]:
    """``"field: <in the file> in the file, <expected> here"`` per differing field (nested
    fields dotted)."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        out = []
        for name in sorted(set(stored) | set(expected)):
            missing = "(absent)"
            out += key_differences(stored.get(name, missing), expected.get(name, missing), f"{prefix}{name}.")
        return out
    if json.dumps(stored) == json.dumps(expected):
        return []
    return [
        f"{prefix.rstrip('.')}: {shorten(json.dumps(stored), 80)} in the file, {shorten(json.dumps(expected), 80)} here"
    ]


def _check_key(meta: dict, key: dict) -> None:
    differences = key_differences(meta.get("key", {}), _canonical(key))
    if differences:
        raise CacheProblem(f"was made with other options ({'; '.join(differences)})")


def _check_names(found: Sequence[str], keys: Sequence[str]) -> None:
    if sorted(found) != sorted(keys):
        raise CacheProblem(f"is corrupt (it holds arrays {sorted(found)}, expected {sorted(keys)})")


def _identity(f) -> tuple:
    stat = os.fstat(f.fileno())
    return (f.name, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _meta(names: Sequence[str], read: Callable[[], np.ndarray]) -> dict:
    """The file's ``__meta__`` ({"key", "sha256"}); ``names``: its arrays, ``read``: reads it."""
    if META not in names:
        raise CacheProblem("has no key (written by an older mlkd)")
    return json.loads(read().tobytes().decode())


# ------------------------------------------------------------------ reading
def _read(path: Path, keys: Sequence[str], check: Callable[[dict], None], key: dict) -> dict[str, np.ndarray]:
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        meta = _meta(data.files, lambda: data[META])
        _check_key(meta, key)
        _check_names([n for n in data.files if n != META], keys)
        arrays = {k: data[k] for k in keys}
        identity = _identity(f)
    check(arrays)
    if identity not in _VERIFIED:
        if arrays_digest(key, arrays) != meta.get("sha256"):
            raise CacheProblem("is corrupt (its arrays do not match their SHA-256)")
        _VERIFIED.add(identity)
    return arrays


def _header(member) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {version}")


def _member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _verify(path: Path, keys: Sequence[str], key: dict) -> bool:
    """The checks of :func:`_read` without keeping the arrays (each is streamed into the
    digest); True, or a CacheProblem (any exception) saying why not."""
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        names = [n.removesuffix(".npy") for n in zf.namelist()]
        meta = _meta(names, lambda: _member(zf, META))
        _check_key(meta, key)
        _check_names([n for n in names if n != META], keys)
        identity = _identity(f)
        if identity in _VERIFIED:
            return True
        digest = _start_digest(key)
        for name in sorted(keys):
            with zf.open(f"{name}.npy") as member:
                shape, fortran, dtype = _header(member)
                if fortran:  # save_npz writes C order only
                    raise CacheProblem(f"is corrupt ({name} is stored in Fortran order)")
                _feed_header(digest, name, dtype, shape)
                while block := member.read(1 << 20):
                    digest.update(block)
    if digest.hexdigest() != meta.get("sha256"):
        raise CacheProblem("is corrupt (its arrays do not match their SHA-256)")
    _VERIFIED.add(identity)
    return True


def _problem(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """(read(), None), or (None, why it failed)."""
    try:
        return read(), None
    except CacheProblem as problem:
        return None, str(problem)
    except Exception as err:  # any unreadable cache is rebuilt, never fatal
        return None, f"is corrupt ({type(err).__name__}: {shorten(err)})"


def verify_npz(path: Path, keys: Sequence[str], what: str, key: dict) -> bool:
    """Whether ``path`` holds exactly the arrays ``keys`` made with ``key``, intact (streamed,
    never held in memory); False when absent, or with a warning naming it and why."""
    if not path.is_file():
        return False
    ok, problem = _problem(lambda: _verify(path, keys, key))
    if problem:
        log.warning("%s cache %s %s; regenerating it", what, path, problem)
    return bool(ok)


def cached_arrays(
    path: Path,
    keys: Sequence[str],
    check: Callable[[dict], None],
    what: str,
    key: dict,
    make: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """The arrays of ``path`` if usable, else ``make()``'s, written there. A usable file absent
    and ``make`` failing: its own error, or, when a bad file is there, a DataError naming it."""
    if not path.is_file():
        arrays = make()
    else:
        arrays, problem = _problem(lambda: _read(path, keys, check, key))
        if arrays is not None:
            return arrays
        log.warning("%s cache %s %s; regenerating it", what, path, problem)
        try:
            arrays = make()
        except Exception as err:
            raise DataError(
                f"{what} cache {path} {problem} and cannot be regenerated here "
                f"({type(err).__name__}: {shorten(err)}); fix that and run again, or delete it, or "
                "put in its place a good copy built with the same options"
            ) from err
    save_npz(path, arrays, what, key)
    return arrays


# ------------------------------------------------------------------ writing
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _leftover(tmp: Path, now: float) -> bool:
    named = _TEMPORARY.search(tmp.name)
    if named and named["host"] == HOST and not _alive(int(named["pid"])):
        return True
    return now - tmp.stat().st_mtime > STALE_SECONDS


def remove_leftovers(folder: Path, what: str) -> list[Path]:
    """Remove the temporary files of ``what`` caches in ``folder`` left by killed builds (see
    the module docstring); returns them."""
    removed, now = [], time.time()
    for tmp in sorted(folder.glob(f"{what}-*.tmp")) if folder.is_dir() else []:
        try:
            if _leftover(tmp, now):
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        log.info(
            "removed %d temporary file(s) of killed %s cache builds: %s",
            len(removed),
            what,
            ", ".join(str(p) for p in removed),
        )
    return removed


def save_npz(path: Path, arrays: dict[str, np.ndarray], what: str, key: dict) -> None:
    """Write ``arrays`` with ``key`` and their digest to ``path`` atomically; an OSError only
    warns (the data is still used)."""
    remove_leftovers(path.parent, what)
    arrays = {k: np.require(v, requirements="C") for k, v in arrays.items()}
    meta = {"key": _canonical(key), "sha256": arrays_digest(key, arrays)}
    tmp = None
    try:
        fd, tmp = make_temporary(path, prefix=f"{path.name}.{HOST}.{os.getpid()}.")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{META: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        log.warning("cannot write %s cache %s (%s); continuing without it", what, path, err)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
