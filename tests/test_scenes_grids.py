"""The coco_scenes grids: the CPU replicas hold the recipe chosen on validation (and say which
split they report), the GPU grids hold the official recipe at 224 px on the full label sets; all
of them dry-run without creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkd.cli import main as cli_main
from mlkd.reproduce.grid import load_grid

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TABLE1_ROWS = ["Teacher", "Student", "RKD", "PKT", "ReviewKD", "MSE", "PS", "MLD", "L2D"]
TABLE4_ROWS = ["Teacher", "Student", "MLD", "MLD+CD", "MLD+ID", "L2D"] + [
    f"L2D {t} x{f} ({w})"
    for t, ws in (("mld", (1, 100)), ("cd", (10, 1000)), ("id", (100, 10000)))
    for f, w in zip(("0.1", "10"), ws)
]


def runs_by_role(grid):
    return {role: [r for r in grid.runs if r.role == role] for role in ("teacher", "student", "distill")}


@pytest.mark.parametrize(
    "name, rows, holdout", [("scenes_table1.yaml", TABLE1_ROWS, 0.0), ("scenes_table4.yaml", TABLE4_ROWS, 0.2)]
)
def test_cpu_scenes_grids_hold_the_validated_recipe(name, rows, holdout):
    grid = load_grid(CONFIGS / name)
    assert [m.label for m in grid.methods] == rows and grid.seeds == [0, 1, 2] and grid.teachers == "shared"
    runs = runs_by_role(grid)
    assert len(runs["teacher"]) == 1 and len(runs["student"]) == 3
    for run in grid.runs:
        cfg = run.config
        assert (cfg.data.name, cfg.data.img_size, cfg.data.holdout, cfg.data.recipe) == (
            "coco_scenes",
            64,
            holdout,
            "official_torchvision",
        )
        assert (cfg.data.options["num_train"], cfg.model.pretrained, cfg.model.embed_dim) == (3000, True, 128)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.pct_start) == ("adam", 1e-3, 1e-4, 0.2)
        teacher = run.role == "teacher"
        assert (cfg.optim.epochs, cfg.optim.head_lr_scale) == ((16, 1.0) if teacher else (10, 10.0))
        assert cfg.distill.weights == {} or run.method == "l2d"  # the paper's λ unless a sensitivity row
    cached = {r.method: r.config.distill.cache for r in runs["distill"]}
    assert cached.pop("reviewkd", "off") == "off" and set(cached.values()) == {"auto"}
    for run in runs["distill"]:
        if run.config.distill.cache == "auto":
            assert (run.config.distill.cache_view, run.config.distill.cache_views) == ("train", 10)


@pytest.mark.parametrize(
    "name, rows, holdout", [("scenes_gpu_table1.yaml", TABLE1_ROWS, 0.0), ("scenes_gpu_table4.yaml", TABLE4_ROWS, 0.2)]
)
def test_gpu_scenes_grids_are_the_official_recipe_at_full_size(name, rows, holdout, tmp_path, capsys):
    grid = load_grid(CONFIGS / name, out=tmp_path)
    assert [m.label for m in grid.methods] == rows
    for run in grid.runs:
        cfg = run.config
        assert (
            cfg.data.img_size,
            cfg.data.holdout,
            cfg.data.recipe,
            cfg.data.options["num_train"],
            cfg.data.options["num_test"],
        ) == (224, holdout, "official", 30000, 10000)
        assert (
            cfg.model.embed_dim,
            cfg.model.ffn_dim,
            cfg.optim.lr,
            cfg.optim.epochs,
            cfg.optim.head_lr_scale,
            cfg.train.amp,
            cfg.distill.cache,
        ) == (768, 2048, 1e-4, 80, 1.0, "official", "off")
        assert cfg.optim.stop_epoch == (30 if run.role == "teacher" else None)
        assert cfg.model.name == ("efficientnet_lite2" if run.role == "teacher" else "efficientnet_lite0")
    assert cli_main(["sweep", str(CONFIGS / name), "--dry-run", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"-> {len(grid.runs)} runs" in text and text.count(" todo ") == len(grid.runs)
    assert list(tmp_path.iterdir()) == []
