"""Temporary files for atomic writes (write, fsync, ``os.replace``) that follow the umask, and a
streaming SHA-256 of a file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


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
