"""Teacher-output cache: equal to live teacher outputs for the same view, refuses what it was
not built for, atomic writes, and a cached distillation run matching a live one."""

from __future__ import annotations

import pytest
import torch

import mlkd.engine.teacher_cache as tc
from engine_helpers import tiny_config
from mlkd.engine.builders import load_teacher
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.trainer import build_run, fit
from mlkd.errors import ConfigError, DataError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    data = root / "data"
    fit(tiny_config(root / "teacher", data, epochs=1))
    return {"root": root, "data": data, "ckpt": str(root / "teacher" / "checkpoints" / "last.pt")}


def _cfg(teacher, run_dir, cache, method="l2d", **sections):
    distill = {"cache": str(cache), **sections.pop("distill", {})}
    return tiny_config(
        run_dir, teacher["data"], method=method, teacher=teacher["ckpt"], epochs=1, distill=distill, **sections
    )


def _assert_live_equals_cached(run, live_teacher, epochs):
    for epoch in epochs:
        run.train_loader.sampler.set_epoch(epoch)
        view = run.teacher_cache.view_of_epoch(epoch)
        for batch in run.train_loader:
            cached = run.teacher_cache.lookup(batch["index"], view, CPU)
            with torch.no_grad():
                live = live_teacher(batch["images"])
            for name in ("logits", "label_embeddings", "pooled"):
                a, b = getattr(cached, name), getattr(live, name)
                assert a.dtype == torch.float32 and a.shape == b.shape
                # float16 rounding: relative 2**-11, plus the subnormal range near 0
                torch.testing.assert_close(a, b, rtol=2**-10, atol=1e-4)


def test_cached_equals_live_for_the_eval_view(teacher, tmp_path):
    run = build_run(_cfg(teacher, tmp_path / "r", tmp_path / "c"))
    assert run.teacher is None and run.teacher_cache.views == 1
    assert (tmp_path / "c" / "meta.json").exists()
    live = load_teacher(teacher["ckpt"], run.classes, CPU)
    _assert_live_equals_cached(run, live, [0, 1])


def test_cached_equals_live_for_fixed_augmented_views(teacher, tmp_path):
    cfg = _cfg(
        teacher,
        tmp_path / "r",
        tmp_path / "c",
        data={"recipe": "official"},
        distill={"cache_view": "train", "cache_views": 2},
    )
    run = build_run(cfg)
    live = load_teacher(teacher["ckpt"], run.classes, CPU)
    _assert_live_equals_cached(run, live, [1, 2])  # views 1 and 0
    dataset = run.train_loader.dataset
    a, b, a2 = dataset[(5, 0)][0], dataset[(5, 1)][0], dataset[(5, 0)][0]
    assert torch.equal(a, a2) and not torch.equal(a, b)  # deterministic per view, views differ


def test_refuses_another_teacher_dataset_or_transform(teacher, tmp_path):
    folder = tmp_path / "c"
    build_run(_cfg(teacher, tmp_path / "r0", folder))
    state = load_checkpoint(teacher["ckpt"])
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key] + 1e-3
    other = tmp_path / "other.pt"
    torch.save(state, other)
    cfg = _cfg(teacher, tmp_path / "r1", folder).model_copy(deep=True)
    cfg.distill.teacher = str(other)
    with pytest.raises(ConfigError, match=r"another teacher \(weights_sha256\)"):
        build_run(cfg)
    cfg = _cfg(teacher, tmp_path / "r2", folder)
    cfg.data.options["num_train"] = 96
    with pytest.raises(ConfigError, match=r"dataset \(labels_sha256, num_images, options\)"):
        build_run(cfg)
    with pytest.raises(ConfigError, match=r"view \(transform\)"):
        build_run(_cfg(teacher, tmp_path / "r3", folder, data={"normalize": True}))
    with pytest.raises(ConfigError, match=r"view \(policy"):
        build_run(_cfg(teacher, tmp_path / "r4", folder, distill={"cache_view": "train"}))


def test_refuses_methods_needing_stage_features(teacher, tmp_path):
    with pytest.raises(ConfigError, match="reviewkd.*cache=off"):
        build_run(_cfg(teacher, tmp_path / "r", tmp_path / "c", method="reviewkd"))
    assert not (tmp_path / "c").exists()


def test_writes_are_atomic(teacher, tmp_path, monkeypatch):
    real_fill = tc._fill

    def crash(*args, **kwargs):
        real_fill(*args, **kwargs)
        raise RuntimeError("killed while building")

    monkeypatch.setattr(tc, "_fill", crash)
    with pytest.raises(RuntimeError, match="killed"):
        build_run(_cfg(teacher, tmp_path / "r", tmp_path / "c"))
    assert list(tmp_path.iterdir()) == []  # no target folder, no temporary folder left
    monkeypatch.setattr(tc, "_fill", real_fill)
    half = tmp_path / "half"
    half.mkdir()
    (half / "logits.npy").write_bytes(b"partial")
    with pytest.raises(DataError, match="incomplete"):
        build_run(_cfg(teacher, tmp_path / "r2", half))


def test_cached_run_matches_live_run_and_auto_reuses(teacher, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLKD_CACHE", str(tmp_path / "root"))
    # recipe "none": the train transform is the eval transform, so both runs see the same images
    live = fit(tiny_config(tmp_path / "live", teacher["data"], method="l2d", teacher=teacher["ckpt"], epochs=1))
    cached = fit(_cfg(teacher, tmp_path / "cached", "auto"))
    for term in ("bce", "mld", "cd", "id"):
        assert cached["train"][term] == pytest.approx(live["train"][term], rel=1e-4)
    assert cached["eval"]["thr@0.5"]["mAP"] == pytest.approx(live["eval"]["thr@0.5"]["mAP"], abs=1e-3)
    folders = list((tmp_path / "root" / "teacher").iterdir())
    assert len(folders) == 1
    with caplog.at_level("INFO", logger="mlkd"):
        build_run(_cfg(teacher, tmp_path / "again", "auto"))
    assert f"teacher cache: using {folders[0]}" in caplog.text


def test_ranks_fill_disjoint_shards_covering_every_image(teacher, tmp_path):
    """Under torchrun each rank writes its shard (r, r+W, ...) of the same arrays."""
    import numpy as np

    from mlkd.engine.distributed import DistInfo
    from mlkd.engine.runtime import Precision

    run = build_run(_cfg(teacher, tmp_path / "r", tmp_path / "c"))
    cache = run.teacher_cache
    live = load_teacher(teacher["ckpt"], run.classes, CPU)
    dataset = run.train_loader.dataset
    shapes = tc._shapes(live)
    n = len(dataset)
    offsets = {name: np.load(tmp_path / "c" / f"offset_{name}.npy") for name in shapes}
    arrays = {name: np.zeros((1, n, *shape), np.float16) for name, shape in shapes.items()}
    writers = []
    for rank in (0, 1):
        written = np.zeros((1, n), np.uint8)
        tc._fill(
            live, dataset, arrays, written, 1, "eval", DistInfo(rank, 2), CPU, Precision(None, False), 32, 0, offsets
        )
        writers.append(written[0].astype(bool))
    assert not (writers[0] & writers[1]).any() and (writers[0] | writers[1]).all()
    for name in shapes:
        np.testing.assert_allclose(arrays[name], cache._arrays[name], rtol=2**-10, atol=1e-4)


def test_cache_can_serve_follows_what_the_terms_read():
    from mlkd.engine.teacher_cache import cache_can_serve
    from mlkd.losses import LOSS_TERMS, METHODS, LossTerm, register_method

    assert cache_can_serve("l2d") and cache_can_serve("rkd") and cache_can_serve("vanilla")
    assert not cache_can_serve("reviewkd")  # the teacher's stage maps are not stored
    assert not cache_can_serve("mld", {"reviewkd": 1.0}) and cache_can_serve("reviewkd", {"reviewkd": 0})
    with LOSS_TERMS.scoped(), METHODS.scoped():

        @LOSS_TERMS.register("user_maps")
        class UserMaps(LossTerm):
            def requires(self):
                return ("logits", "features")

        register_method("user", "User", {"bce": 1.0, "user_maps": 1.0})
        assert UserMaps.name == "user_maps" and not cache_can_serve("user")
