"""A plugin that goes wrong is named in one line: a module that exits or is interrupted while
importing, a term that returns something else than a 0-d tensor, a module that registers a
built-in's name (the built-ins load first, wherever the plugin is named) and a file name where
a module name belongs (refused before anything is imported). Each plugin is a real module
written into tmp_path and imported through the CLI (``main``, or ``python -m mlkd.cli``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from fault_helpers import cli_command, cli_env
from mlkd.cli import main
from mlkd.losses import LOSS_TERMS, METHODS, build_objective
from mlkd.models.output import ModelOutput


def write_module(folder, name, code):
    (folder / f"{name}.py").write_text(textwrap.dedent(code))
    return name


def run_main(argv, capsys):
    """``main(argv)`` in this process: (exit code, stdout, stderr). Whatever escapes ``main``
    (SystemExit, KeyboardInterrupt, a traceback) is caught and fails the test, not the session."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except BaseException as err:  # noqa: B036 - the old behaviour let these escape
        out, errout = capsys.readouterr()
        pytest.fail(f"main raised {type(err).__name__}: {err!r} (stderr: {errout[-500:]!r})")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user_code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    with METHODS.scoped(), LOSS_TERMS.scoped():
        yield folder
    for name in [m for m in sys.modules if m.startswith("pf_")]:
        del sys.modules[name]


def run_fresh(argv, plugin_dir):
    """``python -m mlkd.cli argv`` in a new process (nothing of mlkd imported yet)."""
    env = cli_env()
    env["PYTHONPATH"] = f"{plugin_dir}:{env['PYTHONPATH']}"
    return subprocess.run(cli_command(*map(str, argv)), env=env, capture_output=True, text=True, timeout=120)


def config_naming(tmp_path, plugins):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"plugins": plugins}))
    return path


# a. a plugin that exits or is interrupted while importing


def test_a_plugin_calling_sys_exit_is_a_one_line_error(tmp_path, plugin_dir, capsys):
    write_module(plugin_dir, "pf_exits", "import sys\nsys.exit(3)\n")
    code, out, err = run_main(["--plugin", "pf_exits", "train", "--print-config"], capsys)
    assert (code, out) == (2, "") and err.strip().splitlines() == [
        "mlkd: error: command line: --plugin: module 'pf_exits' called sys.exit(3) while importing; "
        "a plugin module registers its entries and returns, it never exits"
    ]
    write_module(plugin_dir, "pf_exits_cfg", "raise SystemExit('bye')\n")
    code, out, err = run_main(["train", "-c", config_naming(tmp_path, ["pf_exits_cfg"]), "--print-config"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "c.yaml: plugins: module 'pf_exits_cfg' called sys.exit('bye') while importing" in err


def test_an_interrupt_while_importing_a_plugin(tmp_path, plugin_dir, capsys):
    write_module(plugin_dir, "pf_interrupted", "raise KeyboardInterrupt\n")
    code, out, err = run_main(["--plugin", "pf_interrupted", "train", "--print-config"], capsys)
    assert (code, out) == (130, "") and err.strip().splitlines() == [
        "mlkd: interrupted while importing plugin module 'pf_interrupted' (command line: --plugin)"
    ]
    code, out, err = run_main(["train", "-c", config_naming(tmp_path, ["pf_interrupted"]), "--print-config"], capsys)
    assert code == 130 and len(err.strip().splitlines()) == 1
    assert err.startswith("mlkd: interrupted while importing plugin module 'pf_interrupted' (") and "plugins)" in err


# b. a term that returns something else than a 0-d tensor

BAD_TERMS = """
import torch.nn.functional as F
from mlkd.losses import LOSS_TERMS, LossTerm, register_method

@LOSS_TERMS.register("pf_per_sample")
class PerSample(LossTerm):
    needs_teacher = False
    def compute(self, s, t, targets):
        return F.binary_cross_entropy_with_logits(s, targets, reduction="none").mean(1)

@LOSS_TERMS.register("pf_float")
class PyFloat(LossTerm):
    needs_teacher = False
    def compute(self, s, t, targets):
        return 0.5

register_method("pf_per_sample", "Per sample", {"bce": 1.0, "pf_per_sample": 1.0})
register_method("pf_float", "Python float", {"bce": 1.0, "pf_float": 1.0})
"""


def test_a_term_returning_a_per_sample_tensor_or_a_float_is_named(plugin_dir):
    write_module(plugin_dir, "pf_terms", BAD_TERMS)
    import pf_terms  # noqa: F401

    student = ModelOutput(torch.zeros(4, 3, requires_grad=True), None, None)
    for method, returned in (("pf_per_sample", r"a tensor of shape \[4\]"), ("pf_float", "a float")):
        objective = build_objective(method)
        with pytest.raises(TypeError, match=rf"the '{method}' term \(method '{method}'\) returned {returned}.*0-d"):
            objective(student, None, torch.ones(4, 3))
    good = build_objective("vanilla")
    for _ in range(2):
        total, values = good(student, None, torch.ones(4, 3))
    assert total.dim() == 0 and good._unchecked == set()  # checked once, on the first call


@pytest.mark.slow
def test_a_bad_term_stops_training_with_its_name(tmp_path, plugin_dir, capsys):
    write_module(plugin_dir, "pf_terms_cli", BAD_TERMS.replace('"pf_', '"pfc_'))
    data = {"name": "mosaic", "recipe": "none", "img_size": 16, "batch_size": 16, "num_workers": 0}
    data["options"] = {"source": "digits", "num_train": 32, "num_test": 16, "cache_dir": str(tmp_path / "cache")}
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "plugins": ["pf_terms_cli"],
        "data": data,
        "model": {"name": "tiny", "embed_dim": 16, "ffn_dim": 32, "num_heads": 2},
        "optim": {"epochs": 1},
        "train": {"device": "cpu", "progress": "off"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_main(["train", "-c", tmp_path / "c.yaml", "--method", "pfc_per_sample"], capsys)
    assert code == 1 and "the 'pfc_per_sample' term (method 'pfc_per_sample') returned a tensor of shape [16]" in err


# c. a plugin registering a built-in's name


CLASH = """
from mlkd.registries import METHODS
METHODS.add("l2d", {"bce": 1.0})
"""


@pytest.mark.slow
def test_a_clash_with_a_builtin_is_the_same_error_wherever_the_plugin_is_named(tmp_path, plugin_dir, capsys):
    # the module imports only mlkd.registries: in a new process, it runs before the built-ins
    # would have loaded (on the first lookup, here the help's list of methods)
    write_module(plugin_dir, "pf_clash", CLASH)
    expected = "module 'pf_clash' failed while importing: method 'l2d' is already registered"
    done = run_fresh(["--plugin", "pf_clash", "distill", "--help"], plugin_dir)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and done.stdout == "" and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("mlkd: error: command line: --plugin: ") and expected in lines[0], lines
    code, out, err = run_main(["train", "-c", config_naming(tmp_path, ["pf_clash"]), "--print-config"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and expected in err, err
    assert "c.yaml: plugins: " in err and METHODS.get("l2d").label == "L2D"  # the built-in is intact


# d. a file name where a module name belongs


def test_a_py_file_name_is_refused_before_it_is_imported(tmp_path, plugin_dir, capsys):
    marker = tmp_path / "ran"
    write_module(plugin_dir, "pf_my_kd", f"open({str(marker)!r}, 'w').close()\n")
    for argv, given in (
        (["train", "-c", config_naming(tmp_path, ["pf_my_kd.py"]), "--print-config"], "pf_my_kd.py"),
        (["--plugin", "pf_my_kd.py", "train", "--print-config"], "pf_my_kd.py"),
        (["--plugin", f"{plugin_dir}/pf_my_kd.py", "train", "--print-config"], f"{plugin_dir}/pf_my_kd.py"),
    ):
        code, out, err = run_main(argv, capsys)
        assert code == 2 and not marker.exists(), (argv, err)
        assert f"{given!r} is a file name, not a module name: give pf_my_kd" in err, err
        folder = plugin_dir if "/" in given else "the folder that holds pf_my_kd.py"
        assert f"(with {folder} on PYTHONPATH" in err, err
