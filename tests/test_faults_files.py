"""Run folders as a requeue loop and colleagues meet them: damaged, unreadable, half-rotated
or shared files. A run's history is never overwritten by a fresh start, an intact file is
never called corrupt, and files are readable by whoever the umask lets read them.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, run_cli, write_config

DATA = {"options": {"source": "digits", "num_train": 64, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}}


def config(run_dir, **optim):
    return tiny_config(run_dir, CACHE, epochs=3, data=DATA, optim=optim)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A real run stopped after epoch 2 of 3 (last.pt = epoch 2, prev.pt = epoch 1)."""
    from mlkd.engine.trainer import fit

    run = tmp_path_factory.mktemp("files") / "part"
    fit(config(run, stop_epoch=2))
    return run


def copy_run(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    return run, write_config(config(run), tmp_path / "exp.yaml")


def assert_error(code, err, *needles):
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    for needle in needles:
        assert needle in text, text


def test_a_requeue_after_both_checkpoints_failed_never_restarts_from_scratch(stopped, tmp_path, capsys):
    run, cfg_file = copy_run(stopped, tmp_path)
    for name in ("last.pt", "prev.pt"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    metrics = (run / "metrics.jsonl").read_bytes()
    assert_error(*run_cli(["train", "-c", str(cfg_file), "--resume"], capsys), "no readable checkpoint")
    assert (run / "checkpoints" / "last.pt.corrupt").exists() and (run / "checkpoints" / "prev.pt.corrupt").exists()
    for argv in (["train", "-c", str(cfg_file), "--resume"], ["train", "-c", str(cfg_file)]):  # the requeue, a new run
        assert_error(
            *run_cli(argv, capsys),
            f"run_dir {run} already holds a run",
            "last.pt.corrupt",
            "metrics.jsonl",
            "nothing to resume from",
            f"mv {run} {run}.old",
        )
    assert (run / "metrics.jsonl").read_bytes() == metrics
    assert not (run / "checkpoints" / "last.pt").exists()


def test_a_folder_holding_another_config_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        open(write_config(config(run), tmp_path / "old.yaml")).read().replace("lr: 0.001", "lr: 0.01")
    )
    before = (run / "config.yaml").read_bytes()
    cfg_file = write_config(config(run), tmp_path / "exp.yaml")
    assert_error(
        *run_cli(["train", "-c", str(cfg_file), "--resume"], capsys), "config.yaml of another config", "optim.lr"
    )
    assert (run / "config.yaml").read_bytes() == before


def without_root_bypass(argv):
    """``argv`` run so that file permissions apply: as root, without the capabilities that let
    root read any file (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH)."""
    if os.geteuid() != 0:
        return argv
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *argv]


@pytest.mark.slow  # a subprocess
def test_an_intact_checkpoint_that_cannot_be_opened_is_not_called_corrupt(stopped, tmp_path):
    import subprocess

    from fault_helpers import cli_command, cli_env

    run, cfg_file = copy_run(stopped, tmp_path)
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    last.chmod(0)
    try:
        done = subprocess.run(
            without_root_bypass(cli_command("train", "-c", str(cfg_file), "--resume")),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        last.chmod(0o644)
    assert_error(
        done.returncode,
        done.stderr.strip().splitlines()[-1],
        f"checkpoint {last} cannot be opened",
        "Permission denied",
        "not corrupt",
    )
    assert last.read_bytes() == before and not list(run.glob("checkpoints/*.corrupt"))
    assert [p.name for p in sorted((run / "checkpoints").glob("*.pt"))] == ["last.pt", "prev.pt"]


def test_files_of_a_run_follow_the_umask(tmp_path):
    from mlkd.engine.trainer import fit

    old = os.umask(0o027)
    try:
        fit(tiny_config(tmp_path / "run", CACHE, epochs=2, data=DATA))
    finally:
        os.umask(old)
    run = tmp_path / "run"
    for path in (
        run / "checkpoints" / "last.pt",
        run / "checkpoints" / "prev.pt",
        run / "config.yaml",
        run / "metrics.jsonl",
    ):
        assert oct(path.stat().st_mode & 0o777) == oct(0o640), path


def test_a_generated_dataset_cache_follows_the_umask(tmp_path):
    from mlkd.data import build_dataset

    old = os.umask(0o027)
    try:
        build_dataset(
            "mosaic", "train", None, source="digits", num_train=8, num_test=4, cache_dir=str(tmp_path / "cache")
        )
    finally:
        os.umask(old)
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == oct(0o640)


def test_eval_of_a_run_folder_killed_between_the_two_renames_uses_prev(stopped, tmp_path, capsys):
    run, _ = copy_run(stopped, tmp_path)
    folder = run / "checkpoints"
    os.replace(folder / "last.pt", folder / "prev.pt")  # save_rotating's first rename, then the kill
    (folder / ".last.pt.x.tmp").write_bytes(b"the new checkpoint, complete but not renamed yet")
    code, err = run_cli(["eval", str(run), "--compact"], capsys)
    assert code == 0, err


def test_eval_prints_valid_json_for_classes_without_positives(stopped, tmp_path, capsys):
    import json

    from mlkd.cli import main

    _, cfg_file = copy_run(stopped, tmp_path)
    capsys.readouterr()
    code = main(["eval", str(stopped), "-c", str(cfg_file), "data.options.num_test=2", "--compact"])
    out = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    result = json.loads(out, parse_constant=refuse)
    assert code == 0 and result["thr@0.5"]["num_classes_excluded"] > 0
    assert None in result["thr@0.5"]["AP"]


def test_eval_of_a_checkpoint_from_a_newer_version_names_the_key(stopped, tmp_path, capsys):
    from mlkd.engine.checkpoint import load_checkpoint, save_rotating

    state = load_checkpoint(stopped / "checkpoints" / "last.pt")
    state["config"]["train"]["future_key"] = 1
    state["mlkd_version"] = "9.0.0"
    path = save_rotating(state, tmp_path / "checkpoints")
    assert_error(
        *run_cli(["eval", str(path)], capsys),
        f"checkpoint {path}: its saved config",
        "unknown key 'train.future_key'",
        "written by mlkd 9.0.0",
    )


@contextlib.contextmanager
def file_size_limit(n: int):
    """The kernel refuses bytes past ``n`` in any file (EFBIG, as a full disk refuses with
    ENOSPC) inside the block. Restored before the test returns: pytest's own report, written to
    a file in CI, must not meet the limit."""
    import resource
    import signal

    if signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN:
        pytest.skip("needs SIGXFSZ ignored (CPython does)")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_disk_full_while_writing_metrics_keeps_the_old_file(stopped, tmp_path):
    from mlkd.engine.logs import read_jsonl, write_jsonl
    from mlkd.errors import RunFolderError

    run, _ = copy_run(stopped, tmp_path)
    metrics = run / "metrics.jsonl"
    before = metrics.read_bytes()
    records = read_jsonl(metrics)
    with file_size_limit(100), pytest.raises(RunFolderError, match=f"cannot write {metrics}.tmp .*disk full"):
        write_jsonl(records + records, metrics)
    assert metrics.read_bytes() == before and not (run / "metrics.jsonl.tmp").exists()


def test_disk_full_while_writing_the_config_is_a_one_line_error(tmp_path, capsys):
    cfg_file = write_config(config(tmp_path / "run"), tmp_path / "exp.yaml")
    with file_size_limit(200):
        code, err = run_cli(["train", "-c", str(cfg_file)], capsys)
    assert_error(code, err, f"cannot write {tmp_path / 'run' / 'config.yaml'}", "disk full")


def test_a_checkpoints_folder_that_cannot_be_created_is_a_one_line_error(tmp_path):
    from mlkd.engine.checkpoint import save_rotating
    from mlkd.errors import CheckpointError

    (tmp_path / "run").write_text("a file where the run folder should be")
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*nothing was replaced"):
        save_rotating({"epoch": 1}, tmp_path / "run" / "checkpoints")
