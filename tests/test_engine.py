"""The training engine end to end on digits mosaics: teacher, every method, eval, resume."""

from __future__ import annotations

import json

import pytest
import torch

from engine_helpers import tiny_config
from mlkd.cli import main as cli_main
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit
from mlkd.errors import CheckpointError, ConfigError
from mlkd.losses import METHODS


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    cache = root / "cache"
    cfg = tiny_config(root / "teacher", cache, epochs=2)
    record = fit(cfg)
    return {"root": root, "cache": cache, "ckpt": str(root / "teacher" / "checkpoints" / "last.pt"), "record": record}


def test_teacher_run_folder(teacher):
    run = teacher["root"] / "teacher"
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    last = records[-1]
    for protocol in ("thr@0.5", "oracle-k"):
        assert 0.0 <= last["eval"][protocol]["mAP"] <= 1.0
    assert last["train"]["bce"] > 0 and last["eval"]["num_images"] == 67
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["classes"] == [str(d) for d in range(10)] and state["epoch"] == 2
    assert (run / "checkpoints" / "prev.pt").exists() and (run / "config.yaml").exists()


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_distils_and_eval_recomputes(teacher, method, capsys):
    run_dir = teacher["root"] / f"student-{method}"
    cfg = tiny_config(run_dir, teacher["cache"], method=method, teacher=teacher["ckpt"], epochs=1)
    record = fit(cfg)
    terms = set(record["train"])
    for term in METHODS.get(method).weights:
        assert term in terms, f"{method}: term {term} not logged"
    assert all(torch.isfinite(torch.tensor(record["train"][t])) for t in METHODS.get(method).weights)
    # The logged metrics are recomputable from the checkpoint with `mlkd eval`.
    capsys.readouterr()
    assert cli_main(["eval", str(run_dir / "checkpoints" / "last.pt"), "--compact"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    for protocol in ("thr@0.5", "oracle-k"):
        for key in ("mAP", "OF1", "CF1", "CP", "CR", "OP", "OR"):
            assert recomputed[protocol][key] == record["eval"][protocol][key]


def test_resume_after_first_epoch_gives_identical_weights(teacher):
    cache = teacher["cache"]
    full = teacher["root"] / "full"
    fit(tiny_config(full, cache, method="l2d", teacher=teacher["ckpt"], epochs=2))
    part = teacher["root"] / "part"
    fit(tiny_config(part, cache, method="l2d", teacher=teacher["ckpt"], epochs=2, optim={"stop_epoch": 1}))
    assert load_checkpoint(part / "checkpoints" / "last.pt")["epoch"] == 1
    fit(tiny_config(part, cache, method="l2d", teacher=teacher["ckpt"], epochs=2), resume=True)
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(part / "checkpoints" / "last.pt")
    assert b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert read_jsonl(full / "metrics.jsonl")[-1]["eval"] == read_jsonl(part / "metrics.jsonl")[-1]["eval"]


def test_resume_refuses_a_changed_config(teacher):
    run_dir = teacher["root"] / "changed"
    fit(tiny_config(run_dir, teacher["cache"], epochs=2, optim={"stop_epoch": 1}))
    with pytest.raises(ConfigError, match="optim.lr"):
        fit(tiny_config(run_dir, teacher["cache"], epochs=2, optim={"lr": 5e-3}), resume=True)


def test_missing_teacher_file_is_a_config_error(teacher, tmp_path):
    cfg = tiny_config(tmp_path / "r", teacher["cache"], method="l2d", teacher=str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="none.pt"):
        fit(cfg)


def test_distillation_without_teacher_is_a_config_error(teacher, tmp_path):
    with pytest.raises(ConfigError, match="distill.teacher"):
        fit(tiny_config(tmp_path / "r", teacher["cache"], method="mld"))


def test_teacher_with_other_classes_is_refused(teacher, tmp_path):
    state = load_checkpoint(teacher["ckpt"])
    state["classes"] = list(reversed(state["classes"]))
    bad = tmp_path / "permuted.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="different order"):
        fit(tiny_config(tmp_path / "r", teacher["cache"], method="mld", teacher=str(bad)))


def test_unknown_method_is_a_config_error(teacher, tmp_path):
    with pytest.raises(ConfigError, match="l3d"):
        fit(tiny_config(tmp_path / "r", teacher["cache"], method="l3d", teacher=teacher["ckpt"]))


def test_cli_prints_one_line_errors(tmp_path, capsys):
    assert cli_main(["train", "optim.learning_rate=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlkd: error:") and "optim.learning_rate" in err and "\n" not in err


def test_tensorboard_events_hold_the_logged_metrics(teacher):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = teacher["root"] / "board"
    record = fit(tiny_config(run_dir, teacher["cache"], epochs=1, train={"tensorboard": True}))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    logged = events.Scalars("eval/thr@0.5/mAP")
    assert [e.step for e in logged] == [1]
    assert logged[0].value == pytest.approx(record["eval"]["thr@0.5"]["mAP"], rel=1e-6)
    assert events.Scalars("train/bce")[0].value == pytest.approx(record["train"]["bce"], rel=1e-6)


def test_distilled_student_starts_from_the_vanilla_students_weights(teacher, tmp_path):
    from mlkd.engine.trainer import build_run

    vanilla = build_run(tiny_config(tmp_path / "v", teacher["cache"]))
    distilled = build_run(tiny_config(tmp_path / "d", teacher["cache"], method="l2d", teacher=teacher["ckpt"]))
    assert distilled.teacher is not None and vanilla.teacher is None
    for key, value in vanilla.student.state_dict().items():
        assert torch.equal(value, distilled.student.state_dict()[key]), key


def test_train_threads_applies_during_the_run_and_is_restored(teacher, monkeypatch):
    from mlkd.engine import trainer

    seen = []
    original = trainer.build_run
    monkeypatch.setattr(trainer, "build_run", lambda cfg: seen.append(torch.get_num_threads()) or original(cfg))
    before = torch.get_num_threads()
    fit(tiny_config(teacher["root"] / "threads", teacher["cache"], epochs=1, train={"threads": before + 1}))
    assert seen == [before + 1] and torch.get_num_threads() == before


def test_run_folders_stand_for_their_last_checkpoint(teacher, capsys):
    """distill.teacher and `mlkd eval` take a run folder as well as a checkpoint file."""
    folder = teacher["root"] / "teacher"
    run_dir = teacher["root"] / "from-folder"
    record = fit(tiny_config(run_dir, teacher["cache"], method="mld", teacher=str(folder), epochs=1))
    same = fit(
        tiny_config(teacher["root"] / "from-file", teacher["cache"], method="mld", teacher=teacher["ckpt"], epochs=1)
    )
    assert record["eval"] == same["eval"]
    outputs = []
    for target in (run_dir, run_dir / "checkpoints" / "last.pt"):
        assert cli_main(["eval", str(target), "-p", "thr@0.5"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]
    assert cli_main(["eval", str(teacher["root"] / "nowhere")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_eval_overrides_change_the_checkpoints_own_config(teacher, capsys):
    """`mlkd eval RUN key=value` evaluates with the checkpoint's config changed by the overrides
    (here: a test split of 40 mosaics instead of 67), not with the defaults."""
    ckpt = str(teacher["ckpt"])
    capsys.readouterr()
    assert cli_main(["eval", ckpt, "--compact", "data.options.num_test=40"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 40
    assert cli_main(["eval", ckpt, "--compact"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 67
