"""One process per run folder: an advisory lock on ``<run_dir>/.lock`` while a run trains.

``fit`` and ``mlkd sweep`` take it, so two processes never write one run's checkpoints. Under
torchrun only rank 0 takes it (the ranks of one job share its folder). It is a ``flock`` on an
open file, so the kernel releases it when the holder exits in any way (a SIGKILLed run never
leaves a stale lock). The lock is re-entrant within a process (a sweep holds it, then ``fit``
takes it again). On platforms without ``fcntl`` it does nothing; on a network filesystem without
lock support it does not protect. The teacher cache holds it on its temporary build folder, so
that a killed build's folder is known by its free lock (``mlkd.engine.stale_builds``).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mlkd.errors import ConfigError, RunBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # lock file -> nesting depth in this process


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; RunBusyError naming the holder if another has it."""
    path = (Path(run_dir) / LOCK_NAME).resolve()
    if fcntl is None or path in _held or int(os.environ.get("RANK", "0")) != 0:
        _held[path] = _held.get(path, 0) + 1
        try:
            yield
        finally:
            _release_depth(path)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(
            f"run_dir: cannot create the lock file {path} ({err.strerror or err}); choose a writable folder"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunBusyError(
            f"{Path(run_dir)} is being trained by another process ({holder}); wait "
            f"for it to finish or use another run_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[path] = 1
    try:
        yield
    finally:
        _release_depth(path)
        if path not in _held:
            os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    """The "pid N on HOST" line the holder wrote into the lock file."""
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"


def _release_depth(path: Path) -> None:
    _held[path] -= 1
    if not _held[path]:
        del _held[path]


def held_here(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return (Path(run_dir) / LOCK_NAME).resolve() in _held


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """Who holds ``run_dir``'s lock ("pid N on HOST"), or None when nobody (or no fcntl)."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.is_file() or path.resolve() in _held:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None
