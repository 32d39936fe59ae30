"""File helpers: temporary files for atomic writes (write, fsync, ``os.replace``) that follow
the umask, and SHA-256 digests of files for checking derived files against what was written.

``sha256_file`` streams a file (1 MiB reads, never the whole file in memory). ``file_sha256``
remembers its digest for this process, keyed by the file's identity and version (device,
inode, size, mtime and ctime in ns): a file is hashed once per process however often it is
checked. A file changed less than ``RACY_S`` seconds before it was hashed is not remembered
(git's "racily clean" rule): a change within the filesystem's timestamp granularity would keep
the key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

RACY_S = 2.0
_digests: dict[tuple[int, ...], str] = {}


def current_umask() -> int:
    """This process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temporary(path: Path, prefix: str) -> tuple[int, str]:
    """``mkstemp`` next to ``path`` (its folder created), with the mode a plain ``open`` would give.

    mkstemp's 0600 would lock colleagues out of a shared checkpoint or cache. Returns (fd, name).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 (hex) of the file at ``path``, read in ``block``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """``sha256_file``, remembered per process (see the module docstring)."""
    started = time.time_ns()
    stat = os.stat(path)
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _digests:
        return _digests[key]
    digest = sha256_file(path)
    if max(stat.st_mtime_ns, stat.st_ctime_ns) < started - RACY_S * 1e9:
        _digests[key] = digest  # changed after the stat: a later stat gives another key
    return digest


def forget_digests() -> None:
    """Forget the remembered digests (a benchmark timing the hashing itself)."""
    _digests.clear()


def file_record(path: str | Path) -> dict:
    """``{"bytes": size, "sha256": digest}`` of a file, for ``file_problem`` to check later."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def file_problem(path: str | Path, record: dict) -> Optional[str]:
    """What differs between ``path`` and its ``file_record``, in words naming the file; None
    when it has the recorded size and digest."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path.name} is missing"
    if size != record["bytes"]:
        shorter = "is truncated" if size < record["bytes"] else "is longer than written"
        return f"{path.name} {shorter} ({size} bytes, {record['bytes']} written)"
    if file_sha256(path) != record["sha256"]:
        return f"{path.name} does not match the SHA-256 digest written with it (damaged or replaced)"
    return None
