"""Faults of the teacher-output cache, performed for real on a tiny built cache: damaged,
replaced, truncated or deleted array files are rebuilt when the teacher is at hand and refused
(naming the file) when the cache is opened on its own; a killed build's temporary folder is
removed by the next build, a live build's is kept."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time

import numpy as np
import pytest
import torch

import mlkd.engine.teacher_cache as tc
from engine_helpers import tiny_config
from mlkd.engine.cache_files import remove_stale_builds
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.trainer import build_run, fit
from mlkd.errors import CacheCorruptError, DataError

ARRAYS = ("logits.npy", "label_embeddings.npy", "pooled.npy", "written.npy")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny teacher, a second teacher (other weights), and a pristine cache of each."""
    root = tmp_path_factory.mktemp("tcache")
    data = root / "data"
    fit(tiny_config(root / "teacher", data, epochs=1))
    ckpt = root / "teacher" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key] + 1e-2
    torch.save(state, root / "other.pt")
    out = {"root": root, "data": data, "ckpt": str(ckpt), "other": str(root / "other.pt")}
    build_run(_cfg(out, root / "r0", root / "pristine"))
    build_run(_cfg(out, root / "r1", root / "pristine-other", teacher=out["other"]))
    return out


def _cfg(built, run_dir, cache, teacher=None, epochs=1):
    return tiny_config(
        run_dir,
        built["data"],
        method="l2d",
        teacher=teacher or built["ckpt"],
        epochs=epochs,
        distill={"cache": str(cache)},
    )


def _copy(built, tmp_path, name="pristine"):
    folder = tmp_path / "c"
    shutil.copytree(built["root"] / name, folder)
    return folder


def _array_start(path) -> int:
    """Byte offset of the data of an .npy file (after its header)."""
    with open(path, "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        return handle.tell()


def _flip(path, offset: int, count: int = 1, bit: int = 0x01) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        data = bytearray(handle.read(count))
        handle.seek(offset)
        handle.write(bytes(b ^ bit for b in data))


def _bit_in_logits(folder, built):
    _flip(folder / "logits.npy", _array_start(folder / "logits.npy") + 37, bit=0x10)
    return "logits.npy"


def _640_bytes_of_one_image(folder, built):
    path = folder / "label_embeddings.npy"
    per_image = int(np.prod(np.load(path, mmap_mode="r").shape[2:])) * 2
    _flip(path, _array_start(path) + 7 * per_image, count=640, bit=0xFF)
    return "label_embeddings.npy"


def _byte_of_offsets(folder, built):
    _flip(folder / "offset_logits.npy", _array_start(folder / "offset_logits.npy") + 2, bit=0x40)
    return "offset_logits.npy"


def _logits_of_another_teacher(folder, built):
    shutil.copyfile(built["root"] / "pristine-other" / "logits.npy", folder / "logits.npy")
    return "logits.npy"


def _every_array_of_another_teacher(folder, built):
    for path in (built["root"] / "pristine-other").glob("*.npy"):
        shutil.copyfile(path, folder / path.name)
    return ".npy"


def _truncated_logits(folder, built):
    path = folder / "logits.npy"
    os.truncate(path, path.stat().st_size - 100)
    return "logits.npy"


def _truncated_label_embeddings(folder, built):
    path = folder / "label_embeddings.npy"
    os.truncate(path, path.stat().st_size // 2)
    return "label_embeddings.npy"


def _deleted_logits(folder, built):
    (folder / "logits.npy").unlink()
    return "logits.npy"


def _deleted_written(folder, built):
    (folder / "written.npy").unlink()
    return "written.npy"


def _no_digests(folder, built):
    """A cache written by an mlkd without content digests (meta.json without them)."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("files", None)
    (folder / "meta.json").write_text(json.dumps(meta))
    return "meta.json"


FAULTS = {
    "bit-in-logits": (_bit_in_logits, "does not match"),
    "640-bytes-of-one-image": (_640_bytes_of_one_image, "does not match"),
    "byte-of-offsets": (_byte_of_offsets, "does not match"),
    "logits-of-another-teacher": (_logits_of_another_teacher, "does not match"),
    "every-array-of-another-teacher": (_every_array_of_another_teacher, "does not match"),
    "truncated-logits": (_truncated_logits, "truncated"),
    "truncated-label-embeddings": (_truncated_label_embeddings, "truncated"),
    "deleted-logits": (_deleted_logits, "missing"),
    "deleted-written": (_deleted_written, "missing"),
    "no-digests": (_no_digests, "no content digests"),
}


def _all_outputs(cache) -> dict[str, torch.Tensor]:
    out = cache.lookup(torch.arange(len(cache)), 0)
    return {name: getattr(out, name) for name in ("logits", "label_embeddings", "pooled")}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_damaged_cache_opened_on_its_own_is_refused_naming_the_file(built, tmp_path, fault):
    folder = _copy(built, tmp_path)
    damage, what = FAULTS[fault]
    name = damage(folder, built)
    pattern = rf"teacher cache {re.escape(str(folder))}: .*{re.escape(name)}.*{what}.*delete the folder"
    with pytest.raises(DataError, match=pattern):
        tc.TeacherCache(folder)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_damaged_cache_is_rebuilt_when_the_teacher_is_at_hand(built, tmp_path, fault, caplog):
    folder = _copy(built, tmp_path)
    expected = _all_outputs(tc.TeacherCache(folder))
    damage, what = FAULTS[fault]
    name = damage(folder, built)
    with caplog.at_level("INFO", logger="mlkd"):
        run = build_run(_cfg(built, tmp_path / "r", folder))
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 1 and name in lines[0] and what in lines[0] and str(folder) in lines[0], lines
    for field, value in _all_outputs(run.teacher_cache).items():
        torch.testing.assert_close(value, expected[field], rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "r") == ["c"]  # nothing left beside it


def test_distillation_over_a_flipped_bit_rebuilds_then_trains_to_the_end(built, tmp_path, caplog):
    folder = _copy(built, tmp_path)
    _bit_in_logits(folder, built)
    with caplog.at_level("INFO", logger="mlkd"):
        result = fit(_cfg(built, tmp_path / "r", folder))
    assert "logits.npy does not match" in caplog.text and "rebuilding" in caplog.text
    assert np.isfinite(result["train"]["cd"])
    tc.TeacherCache(folder)  # intact again


def test_a_cache_of_another_teacher_is_still_refused_not_rebuilt(built, tmp_path):
    """Digests guard the bytes; the fingerprint still guards the provenance (never overwritten)."""
    from mlkd.errors import ConfigError

    folder = _copy(built, tmp_path, "pristine-other")
    with pytest.raises(ConfigError, match=r"another teacher \(weights_sha256\)"):
        build_run(_cfg(built, tmp_path / "r", folder))
    assert (folder / "meta.json").exists()


def test_a_killed_build_leaves_a_folder_the_next_build_removes(built, tmp_path, monkeypatch):
    folder = tmp_path / "caches" / "c"
    real_fill = tc._fill

    def killed(*args, **kwargs):
        real_fill(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # after the teacher pass, before meta.json and the rename

    monkeypatch.setattr(tc, "_fill", killed)
    pid = os.fork()
    if pid == 0:  # the child: a real build, killed for real
        try:
            build_run(_cfg(built, tmp_path / "r0", folder))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    monkeypatch.setattr(tc, "_fill", real_fill)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    left = list(folder.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".c.tmp-"), left  # the fault: its folder is left
    build_run(_cfg(built, tmp_path / "r1", folder))
    assert [p.name for p in folder.parent.iterdir()] == ["c"]


def test_a_live_build_keeps_its_folder_while_another_build_runs(built, tmp_path, monkeypatch):
    caches = tmp_path / "caches"
    real_fill = tc._fill
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def paused(*args, **kwargs):
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        real_fill(*args, **kwargs)

    monkeypatch.setattr(tc, "_fill", paused)
    pid = os.fork()
    if pid == 0:  # the child: a build that is alive (paused) while the parent builds another cache
        code = 1
        try:
            build_run(_cfg(built, tmp_path / "r0", caches / "a"))
            code = 0
        finally:
            os._exit(code)
    monkeypatch.setattr(tc, "_fill", real_fill)
    try:
        os.read(ready_r, 1)
        live = [p.name for p in caches.iterdir()]
        build_run(_cfg(built, tmp_path / "r1", caches / "b"))
        assert sorted(p.name for p in caches.iterdir()) == sorted([*live, "b"])
    finally:
        os.write(go_w, b"1")
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert sorted(p.name for p in caches.iterdir()) == ["a", "b"]
    tc.TeacherCache(caches / "a")


def test_which_left_folders_are_stale(tmp_path):
    here = socket.gethostname()

    def left(name, lock=None, days=0.0, files=("logits.npy",)):
        folder = tmp_path / name
        folder.mkdir()
        for file in files:
            (folder / file).write_bytes(b"x")
        if lock is not None:
            (folder / ".lock").write_text(lock)  # a lock file nobody holds
        then = time.time() - days * 86400
        for path in (*folder.iterdir(), folder):
            os.utime(path, (then, then))

    left(".a.tmp-00000001", f"pid 1 on {here}")  # its builder on this host ended: removed
    left(".a.tmp-00000002", "pid 1 on elsewhere", days=6)  # another host, flock may not reach: kept
    left(".a.tmp-00000003", "pid 1 on elsewhere", days=8)  # another host, a week old: removed
    left(".a.tmp-00000004", days=6)  # no lock (an earlier mlkd): kept for a week
    left(".a.tmp-00000005", days=8)  # ... then removed
    left(".a.tmp-00000006", f"pid 1 on {here}", files=("notes.txt",))  # a file not the cache's: kept
    left(".a.tmp-0000007", f"pid 1 on {here}")  # not a build's name: kept
    left("a", f"pid 1 on {here}")  # a cache: kept
    remove_stale_builds(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".a.tmp-00000002",
        ".a.tmp-00000004",
        ".a.tmp-00000006",
        ".a.tmp-0000007",
        "a",
    ]


def test_each_file_is_hashed_once_per_process_until_it_changes(built, tmp_path, monkeypatch):
    import hashlib
    from types import SimpleNamespace

    from mlkd import fileio

    folder = _copy(built, tmp_path)
    monkeypatch.setattr(fileio, "RACY_S", 0.05)  # files changed more than 50 ms before hashing are remembered
    time.sleep(0.1)
    calls = []
    monkeypatch.setattr(fileio, "hashlib", SimpleNamespace(sha256=lambda: calls.append(1) or hashlib.sha256()))
    tc.TeacherCache(folder)
    tc.TeacherCache(folder)
    assert len(calls) == len(list(folder.glob("*.npy"))) == 7
    path = folder / "pooled.npy"
    before = path.stat()
    _flip(path, _array_start(path) + 3)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: only the ctime moved
    with pytest.raises(CacheCorruptError, match="pooled.npy does not match"):
        tc.TeacherCache(folder)
    assert len(calls) == 8
