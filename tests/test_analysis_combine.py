"""mlkd analyze combine: mean ± std of analysis folders, checked against numpy on hand values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlkd.analysis.combine import combine, to_markdown
from mlkd.cli import main as cli_main
from mlkd.errors import ConfigError

MAD = {"A": [0.2, 0.3, 0.4], "B": [0.5, 0.7, float("nan")]}


def write_folder(folder, seed):
    folder.mkdir()
    (folder / "per_class.json").write_text(json.dumps({"mAP": {"T": 90.0 + seed, "A": 60.0 + 2 * seed, "B": 50.0}}))
    (folder / "correlation.json").write_text(
        json.dumps({"mad": {m: v[seed] for m, v in MAD.items()}}).replace("NaN", "null")
    )
    (folder / "retrieval.json").write_text(json.dumps({"metrics": {"A": {"pooled": {"mAP@5": 80.0 + seed}}}}))
    if seed < 2:  # the third folder has no attention analysis
        (folder / "attention.json").write_text(json.dumps({"scores": {"A": {"cam_in_class": 0.5 + 0.1 * seed}}}))
    return folder


def test_combine_matches_numpy_and_counts_missing_values(tmp_path, capsys):
    folders = [write_folder(tmp_path / f"s{seed}", seed) for seed in range(3)]
    models = combine(folders)["models"]
    for model, values in MAD.items():
        finite = [v for v in values if np.isfinite(v)]
        cell = models[model]["correlation MAD"]
        assert cell["n"] == len(finite) and cell["mean"] == pytest.approx(np.mean(finite))
        assert cell["std"] == pytest.approx(np.std(finite, ddof=1))
    assert models["A"]["mAP"]["mean"] == pytest.approx(62.0) and models["A"]["mAP"]["std"] == pytest.approx(2.0)
    assert models["A"]["mAP@5 pooled"]["values"] == [80.0, 81.0, 82.0]
    assert models["A"]["cam_in_class"]["n"] == 2
    table = to_markdown(combine(folders))
    assert "| A | 62.00 ± 2.00 | 0.300 ± 0.100 | 81.00 ± 1.00 | 0.550 ± 0.071 (n=2) |" in table
    assert "| B | 50.00 ± 0.00 | 0.600 ± 0.141 (n=2) | – | – |" in table
    assert cli_main(["analyze", "combine", *map(str, folders), "--out", str(tmp_path / "out")]) == 0
    assert table in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "combined.json").read_text())["models"]["A"]["mAP"]["n"] == 3


def test_combine_refuses_folders_without_analyses(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds none of per_class.json"):
        combine([tmp_path / "empty"])
