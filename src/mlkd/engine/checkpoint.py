"""Atomic checkpoints that carry their class list, config and metrics.

A run folder keeps ``checkpoints/last.pt`` and the one before it, ``checkpoints/prev.pt``.
Writes go to a temporary file that is fsynced and renamed over the target, so a crash never
leaves a half-written ``last.pt``; ``load_latest`` falls back to ``prev.pt`` when ``last.pt``
cannot be read.

Integrity: ``torch.load`` does not notice damaged bytes inside a tensor (a flipped bit on disk
loads as a silently different weight), so ``save_rotating`` stores a SHA-256 digest of the
whole state (tensor bytes, dtypes and shapes, and every other value) under ``integrity`` and
``load_checkpoint`` recomputes it: a mismatch is a CheckpointError naming the file. Files
without the entry (older checkpoints, states written with plain ``torch.save``) load
unverified; ``load_checkpoint`` returns the state without it.

Safety: a checkpoint never executes code. ``torch.load`` runs with ``weights_only=True``, so
unpickling builds only tensors and plain data (dict, list, tuple, str, int, float, bool,
None); a file that asks for any other global (``os.system``, a class of its own, ...) is
refused with a CheckpointError naming the global, before anything of it runs. The one other
type allowed is the numpy array (and its dtype) that checkpoints of earlier mlkd versions hold
in their numpy RNG state; new checkpoints store that state as a tensor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from mlkd.errors import CheckpointCorruptError, CheckpointError, shorten
from mlkd.fileio import make_temporary

log = logging.getLogger(__name__)

LAST, PREV = "last.pt", "prev.pt"
REQUIRED_KEYS = ("model", "classes", "config", "epoch")
INTEGRITY = "integrity"
# Beyond torch's weights-only set: the numpy RNG state of checkpoints written by earlier mlkd
# versions (a uint32 array: numpy's array rebuilder, ndarray and the dtype). New ones store a tensor.
try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
_LEGACY_GLOBALS = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


# What torch.load raises on damaged bytes (truncated, overwritten, garbage): measured on random
# damage of a checkpoint, these and nothing else. An AttributeError, ImportError or TypeError
# says that the torch API differs from the one mlkd needs, not that the file is damaged: it
# propagates, and ``--resume`` never sets an intact checkpoint aside for it.
_DAMAGED_BYTES = (
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    struct.error,
    RuntimeError,
    ValueError,
    LookupError,
    OverflowError,
)


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        digest.update(f"A{obj.dtype}{obj.shape}".encode())
        digest.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        digest.update(b"{")
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
        digest.update(b"}")
    elif isinstance(obj, (list, tuple)):
        digest.update(b"[")
        for value in obj:
            _feed(digest, value)
        digest.update(b"]")
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint state, ``integrity`` entry excluded; equal before saving
    and after loading (dict order survives pickling)."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != INTEGRITY})
    return digest.hexdigest()


def _write_temporary(obj: Any, path: Path) -> Path:
    """torch.save ``obj`` to a fsynced temporary file next to ``path``; removed on failure."""
    fd, tmp = make_temporary(path, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable (best effort: not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace."""
    os.replace(_write_temporary(obj, path), path)
    _fsync_folder(path.parent)


def save_rotating(state: dict[str, Any], folder: Path) -> Path:
    """Write ``state`` (plus its integrity digest) as ``last.pt``; the previous ``last.pt``
    becomes ``prev.pt``. Temporary files left by a process killed while saving are removed.

    The new file is written completely before anything is renamed, so a failed write (disk
    full, quota) is a CheckpointError that leaves ``last.pt`` and ``prev.pt`` as they were.
    """
    last, prev = folder / LAST, folder / PREV
    for stale in folder.glob(f".{LAST}.*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # may fail like the write (disk full)
        tmp = _write_temporary({**state, INTEGRITY: {"sha256": state_digest(state)}}, last)
    except (OSError, RuntimeError) as err:  # torch's zip writer raises RuntimeError on a short write
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        kept = " and ".join(str(p) for p in (last, prev) if p.exists())
        raise CheckpointError(
            f"cannot write checkpoint {last} (disk full or over quota? "
            f"{type(err).__name__}: {reason}); nothing was replaced" + (f": {kept} are intact" if kept else "")
        ) from None
    if last.exists():
        os.replace(last, prev)
    os.replace(tmp, last)
    _fsync_folder(folder)
    return last


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or for a run folder its ``checkpoints/last.pt`` (``prev.pt`` when a
    process killed between ``save_rotating``'s two renames left no last.pt)."""
    path = Path(path)
    if not path.is_dir():
        return path
    last, prev = path / "checkpoints" / LAST, path / "checkpoints" / PREV
    if not last.exists() and prev.is_file():
        log.warning("%s has no %s (a save was interrupted); using %s", path, LAST, prev)
        return prev
    return last


def _unpickle(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load`` restricted to tensors and plain data (see the module doc). A file that
    cannot be opened is a CheckpointError, one that asks for another global is refused, and
    bytes that do not parse are a CheckpointCorruptError."""
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be opened ({err.strerror or err}); it is not "
            "corrupt: fix its permissions (e.g. chmod a+r) and retry"
        ) from None
    with handle:
        # torch >= 2.5 (the declared floor); on an older torch this is an AttributeError, not "corrupt"
        allowed = torch.serialization.safe_globals(_LEGACY_GLOBALS)
        try:
            with allowed:
                return torch.load(handle, map_location=map_location, weights_only=True)
        except _DAMAGED_BYTES as err:
            _raise_damaged(path, err)


def _raise_damaged(path: Path, err: Exception) -> NoReturn:
    """A refused global (a CheckpointError naming it) or damaged bytes (CheckpointCorruptError)."""
    unsafe = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
    if unsafe and "weights only" in str(err).lower():
        raise CheckpointError(
            f"checkpoint {path} refused: it would import {unsafe.group(1)} and loading could run "
            "code; an mlkd checkpoint holds only tensors and plain data (load only files mlkd wrote)"
        ) from None
    raise CheckpointCorruptError(
        f"checkpoint {path} is unreadable or corrupt ({type(err).__name__}: {_torch_reason(err)})"
    ) from None


def _torch_reason(err: Exception) -> str:
    """torch.load's error in a few words: a weights-only refusal without torch's paragraphs of
    advice (which recommend ``weights_only=False``, the very thing mlkd never does)."""
    text = str(err).split("Check the documentation of torch.load")[0]
    if "Weights only load failed" in text:
        text = (
            text.split("WeightsUnpickler error:")[-1]
            if "WeightsUnpickler error:" in text
            else text.strip().split("\n\n")[-1]
        )
    return shorten(text)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a file, or a run folder's last.pt); a missing, corrupt or incomplete
    file is a CheckpointError naming it."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (give a checkpoint file or a run folder holding checkpoints/last.pt)"
        )
    state = _unpickle(path, map_location)
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not an mlkd checkpoint (needs keys {', '.join(REQUIRED_KEYS)})")
    integrity = state.pop(INTEGRITY, None)
    if isinstance(integrity, dict) and integrity.get("sha256") != state_digest(state):
        raise CheckpointCorruptError(
            f"checkpoint {path} is corrupt: its contents do not match the SHA-256 "
            "digest written with it (damaged on disk or in transfer)"
        )
    return state


def load_latest(
    folder: str | Path, map_location: str | torch.device = "cpu", quarantine: bool = False
) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``folder`` (last, else prev), or None if there is none.

    Only a file with damaged bytes (CheckpointCorruptError) is skipped; any other
    CheckpointError (refused, cannot be opened, not an mlkd checkpoint) is raised as it is.
    ``quarantine`` (for a run about to continue): rename a corrupt file to
    ``<name>.corrupt`` (kept for inspection), so that the next ``save_rotating`` does not
    rotate it over the good ``prev.pt``. The state's ``"path"`` entry names the file read.
    """
    folder = Path(folder)
    candidates = [folder / LAST, folder / PREV]
    if not any(path.exists() for path in candidates):
        return None
    errors = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointCorruptError as err:  # only damaged bytes: a refused or unopenable file stops here
            log.warning("%s; trying the previous checkpoint", err)
            errors.append(str(err))
            if quarantine:
                os.replace(path, path.with_name(path.name + ".corrupt"))
                log.warning("renamed %s to %s.corrupt", path, path.name)
            continue
        state["path"] = str(path)
        return state
    raise CheckpointError("no readable checkpoint in " + str(folder) + ": " + " | ".join(errors))


def check_classes(checkpoint_classes: list[str], dataset_classes: list[str], source: str) -> None:
    """Refuse a checkpoint whose class list differs from the dataset's (never permute silently)."""
    if list(checkpoint_classes) == list(dataset_classes):
        return
    if sorted(checkpoint_classes) == sorted(dataset_classes):
        problem = "the same classes in a different order"
    else:
        missing = sorted(set(dataset_classes) - set(checkpoint_classes))[:5]
        extra = sorted(set(checkpoint_classes) - set(dataset_classes))[:5]
        problem = f"different classes (dataset-only: {missing}, checkpoint-only: {extra})"
    raise CheckpointError(
        f"{source} was trained on {len(checkpoint_classes)} classes, the dataset has "
        f"{len(dataset_classes)}: {problem}. Use a checkpoint trained on this dataset's class list."
    )
