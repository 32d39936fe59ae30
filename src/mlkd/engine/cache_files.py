"""The files of a teacher-cache folder on disk (see ``mlkd.engine.teacher_cache``): the digests
of its array files (taken when a build completes, written into meta.json, checked when the
cache is opened), the temporary folder a build writes into (locked while the build runs,
published by a rename, removed by a later build once stale: ``mlkd.engine.stale_builds``) and
the removal of a damaged cache before it is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Optional

from mlkd.engine.runlock import LOCK_NAME, run_lock
from mlkd.engine.stale_builds import remove_stale
from mlkd.errors import CacheCorruptError, DataError
from mlkd.fileio import file_problem, file_record

log = logging.getLogger("mlkd")

META = "meta.json"
#: A build's temporary folder, next to its target: ``.<target>.tmp-<8 hex digits>``.
TMP = re.compile(r"\..+\.tmp-[0-9a-f]{8}")


def array_files(fields) -> list[str]:
    """The .npy files a cache of ``fields`` reads."""
    return [*(f"{name}.npy" for name in fields), *(f"offset_{name}.npy" for name in fields), "written.npy"]


def damage(folder: Path, meta: dict) -> Optional[str]:
    """What is wrong with the files of a cache folder against the digests in its ``meta`` (a
    missing, truncated or damaged file, or no digests at all), in words; None when intact."""
    records = meta.get("files")
    if not isinstance(records, dict):
        return f"{META} holds no content digests (an earlier mlkd wrote it), so its files cannot be checked"
    for name in array_files(meta["fields"]):
        if name not in records:
            return f"{META} holds no digest of {name}"
        problem = file_problem(folder / name, records[name])
        if problem:
            return problem
    return None


def discard(folder: Path, problem: str) -> None:
    """Remove a damaged cache folder (renamed aside first, so that its name is free at once)."""
    aside = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:  # discarded meanwhile by another run
        return
    except OSError as err:
        raise CacheCorruptError(
            f"teacher cache {folder}: {problem}; it cannot be removed to rebuild it ({err.strerror or err}): "
            "delete it, or choose another distill.cache folder"
        ) from None
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_builds(parent: Path) -> None:
    """Remove the temporary folders of teacher-cache builds that were killed (see stale_builds)."""
    remove_stale(parent, TMP, lambda name: name == META or name.endswith(".npy"))


def make_temporary(folder: Path, need: int, lock: contextlib.ExitStack) -> Path:
    """Rank 0: remove the folders of killed builds, check free space, create the temporary
    folder next to ``folder`` and hold its lock (on ``lock``) until the build ends."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(folder.parent)
    free = shutil.disk_usage(folder.parent).free
    if need > free:
        raise DataError(
            f"teacher cache: {need / 2**30:.1f} GiB needed at {folder.parent}, "
            f"{free / 2**30:.1f} GiB free; choose another distill.cache folder"
        )
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    lock.enter_context(run_lock(tmp))  # held until the build ends: a free lock marks a killed build
    return tmp


def publish(tmp: Path, folder: Path, meta: dict) -> bool:
    """Rank 0: write ``meta`` with the digest of every array file into ``tmp``, then rename it to
    ``folder``. False when ``folder`` appeared meanwhile (built by another run)."""
    meta = {**meta, "files": {name: file_record(tmp / name) for name in array_files(meta["fields"])}}
    with open(tmp / META, "w") as handle:
        json.dump(meta, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    (tmp / LOCK_NAME).unlink(missing_ok=True)  # still held; the published folder has no lock file
    try:
        os.rename(tmp, folder)
    except OSError:  # built concurrently by another run: keep theirs if it matches
        log.info("teacher cache: %s appeared while building; using it", folder)
        return False
    return True
