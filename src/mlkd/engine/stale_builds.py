"""Temporary build folders left by killed builds: found and removed by the next build.

A build (the teacher cache's) writes into a temporary folder next to its target and holds that
folder's lock (:func:`mlkd.engine.runlock.run_lock`: an ``flock`` on ``<folder>/.lock``, which
names "pid N on HOST" and which the kernel releases however its holder ends) until it renames
the folder into place. A folder that matches the build's temporary-name pattern and holds
nothing but the build's own files is stale when:

- its lock is free and names this host: its builder has ended (SIGKILL, out of memory, power
  loss): removed at once;
- its lock is free and names another host (a filesystem shared by several machines): flock does
  not reach across hosts on every network filesystem, so it is removed only once the lock file
  is older than ``STALE_AFTER_S`` (7 days, longer than any build);
- it has no lock file (left by an mlkd without this check, or a platform without ``fcntl``):
  removed once the folder itself is older than ``STALE_AFTER_S``.

A held lock is a live build (under torchrun, rank 0 holds it for every rank writing into the
folder): it is never removed.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Optional

from mlkd.engine.runlock import LOCK_NAME, held_here, lock_holder

log = logging.getLogger(__name__)

STALE_AFTER_S = 7 * 24 * 3600
_HOLDER = re.compile(r"pid (\d+) on (.+)")


def _lock_host(lock: Path) -> Optional[str]:
    """The host named in a lock file ("pid N on HOST"), or None when it names none."""
    try:
        found = _HOLDER.fullmatch(lock.read_text(errors="replace").strip())
    except OSError:
        return None
    return found.group(2) if found else None


def stale_reason(folder: Path, now: Optional[float] = None) -> Optional[str]:
    """Why ``folder`` is a stale build folder (see the module docstring), or None: live or unknown."""
    now = time.time() if now is None else now
    lock = folder / LOCK_NAME
    if not lock.is_file():
        age = now - folder.stat().st_mtime
        return f"no lock, {age / 86400:.1f} days old" if age > STALE_AFTER_S else None
    if held_here(folder) or lock_holder(folder) is not None:
        return None  # a live build holds it
    host = _lock_host(lock)
    if host == socket.gethostname():
        return f"its builder on {host} has ended"
    age = now - lock.stat().st_mtime
    return f"built on {host or 'an unknown host'}, {age / 86400:.1f} days old" if age > STALE_AFTER_S else None


def remove_stale(parent: Path, pattern: re.Pattern, own_file: Callable[[str], bool]) -> list[Path]:
    """Remove the stale folders in ``parent`` whose name fullmatches ``pattern`` and whose files
    all pass ``own_file(name)`` (the lock file included); returns the removed folders."""
    removed = []
    for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
        try:
            if not (pattern.fullmatch(folder.name) and folder.is_dir()):
                continue
            if not all(p.is_file() and (p.name == LOCK_NAME or own_file(p.name)) for p in folder.iterdir()):
                continue
            reason = stale_reason(folder)
        except OSError:  # removed meanwhile (another build, its own rename), or not ours to read
            continue
        if reason:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by a build that did not finish (%s)", folder, reason)
            removed.append(folder)
    return removed
