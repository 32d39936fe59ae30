"""User code plugs in without an edit inside src/mlkd: a method in one file of the user's own
package, run through ``mlkd sweep`` and ``mlkd table`` in subprocesses (as a user would), with
its own row label; registries derive every list; a checkpoint never imports a plugin."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from fault_helpers import cli_env
from mlkd.config import load_config
from mlkd.errors import ConfigError
from mlkd.losses import LOSS_TERMS, METHODS, build_objective, row_label, row_order
from mlkd.models.output import ModelOutput
from mlkd.registries import HEADS, OPTIMIZERS, RECIPES

# The user's file: a loss term (1 - cosine similarity of student and teacher logits, averaged
# over the batch) and a method using it, registered at import.
COSINE_PLUGIN = '''
"""Cosine KD: BCE + (1 - cos(student logits, teacher logits)), mean over the batch."""
import torch.nn.functional as F

from mlkd.losses import LOSS_TERMS, LossTerm, register_method


@LOSS_TERMS.register("cosine")
class CosineTerm(LossTerm):
    def compute(self, s, t, targets):
        return (1 - F.cosine_similarity(s, t.detach(), dim=1)).mean()


register_method("cosine", "Cosine KD", {"bce": 1.0, "cosine": 1.0})
'''

TINY = {"name": "tiny", "embed_dim": 32, "ffn_dim": 64, "num_heads": 4}


def user_package(root):
    package = root / "user_code" / "my_kd"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cosine.py").write_text(textwrap.dedent(COSINE_PLUGIN))
    return root / "user_code"


def run_mlkd(args, pythonpath, cwd):
    env = cli_env()
    env["PYTHONPATH"] = f"{pythonpath}:{env['PYTHONPATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "mlkd.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_a_users_method_runs_through_sweep_and_table(tmp_path):
    code = user_package(tmp_path)
    grid = {
        "dataset": "digits",
        "out": str(tmp_path / "runs"),
        "plugins": ["my_kd.cosine"],
        "data": {
            "name": "mosaic",
            "recipe": "none",
            "img_size": 32,
            "batch_size": 32,
            "num_workers": 0,
            "options": {
                "source": "digits",
                "num_train": 96,
                "num_test": 40,
                "seed": 0,
                "cache_dir": str(tmp_path / "cache"),
            },
        },
        "model": dict(TINY),
        "optim": {"lr": 1e-3, "epochs": 1},
        "train": {"device": "cpu", "progress": "off", "eval_every": 0},
        "pairs": [{"teacher": "tiny", "student": "tiny"}],
        "methods": ["teacher", "vanilla", "cosine", "mld"],
        "seeds": [0],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    run_mlkd(["sweep", str(path)], code, tmp_path)
    run_dir = tmp_path / "runs" / "digits" / "tiny_to_tiny" / "cosine" / "seed0"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["plugins"] == ["my_kd.cosine"]
    cosine = records[-1]["train"]["cosine"]
    assert 0.0 <= cosine <= 2.0 and math.isfinite(cosine)  # 1 - cos lies in [0, 2]
    table = mAP_rows(run_mlkd(["table", str(path), "--format", "csv"], code, tmp_path))
    assert list(table) == ["Teacher", "Student", "Cosine KD", "MLD"]  # the grid's order
    assert table["Cosine KD"] == pytest.approx(100 * records[-1]["eval"]["thr@0.5"]["mAP"], abs=1e-4)
    # run folders: rows in the registries' order (a plugin's method after the built-ins)
    folders = mAP_rows(
        run_mlkd(["--plugin", "my_kd.cosine", "table", str(tmp_path / "runs"), "--format", "csv"], code, tmp_path)
    )
    assert list(folders) == ["Teacher", "Student", "MLD", "Cosine KD"] and folders == {**table}


def mAP_rows(text):
    """{row label: mean mAP} of ``mlkd table --format csv``, in the table's order."""
    return {row["method"]: float(row["mean"]) for row in csv.DictReader(io.StringIO(text)) if row["metric"] == "mAP"}


def test_registered_method_is_first_class_and_scoped():
    from mlkd.losses import LossTerm, register_method

    with LOSS_TERMS.scoped(), METHODS.scoped():

        @LOSS_TERMS.register("user_l1")
        class UserL1(LossTerm):
            def compute(self, s, t, targets):
                return (s - t).abs().mean()

        assert UserL1.name == "user_l1"  # from the registry key
        register_method("user", "User KD", {"bce": 1.0, "user_l1": 2.0}, order=7.5)
        assert row_order().index("User KD") == row_order().index("MLD") + 1
        assert row_label("user", {"user_l1": 3}) == "User KD (user_l1=3)"
        s = ModelOutput(torch.tensor([[0.0, 1.0]]), None, None)
        t = ModelOutput(torch.tensor([[1.0, 3.0]]), None, None)
        total, values = build_objective("user")(s, t, torch.tensor([[0.0, 1.0]]))
        assert values["user_l1"].item() == pytest.approx(1.5)  # (1 + 2) / 2
        assert total.item() == pytest.approx(values["bce"].item() + 2 * 1.5)
    assert "user" not in METHODS and "user_l1" not in LOSS_TERMS and "User KD" not in row_order()


def test_config_choices_come_from_the_registries(tmp_path):
    for key, registry in (("model.head", HEADS), ("data.recipe", RECIPES), ("optim.name", OPTIMIZERS)):
        with pytest.raises(ConfigError, match=f"{key}.*{', '.join(registry.names())}"):
            load_config(None, [f"{key}=bogus"])
        with registry.scoped():
            registry.add("bogus", object())
            section, field = key.split(".")
            assert getattr(getattr(load_config(None, [f"{key}=bogus"]), section), field) == "bogus"


def test_a_plugin_in_a_config_is_imported_and_a_bad_one_named(tmp_path, monkeypatch):
    code = user_package(tmp_path)
    monkeypatch.syspath_prepend(str(code))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"plugins": ["my_kd.cosine"], "distill": {"method": "cosine"}}))
    with METHODS.scoped(), LOSS_TERMS.scoped():
        sys.modules.pop("my_kd.cosine", None)
        assert load_config(path).plugins == ["my_kd.cosine"] and "cosine" in METHODS
        sys.modules.pop("my_kd.cosine", None)
    for bad, message in (
        (["no_such_kd"], "plugins: module 'no_such_kd' cannot be imported"),
        (["../my_kd.py"], "is a file name, not a module name: give my_kd"),
        (["my kd"], "not module names"),
        ("my_kd", "must be a list"),
    ):
        path.write_text(yaml.safe_dump({"plugins": bad}))
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_a_checkpoint_config_never_imports_its_plugins(tmp_path, monkeypatch):
    from mlkd.config import config_from_dict

    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = config_from_dict({"plugins": ["evil_plugin"]}, "checkpoint x.pt: its saved config")
    assert cfg.plugins == ["evil_plugin"] and not marker.exists() and "evil_plugin" not in sys.modules
