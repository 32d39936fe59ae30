"""Config and CLI fuzz: every bad config is a one-line error (exit 2) naming the key, raised
before training starts, never a traceback and never a run that fails later.

Two tables run through ``mlkd.cli.main``: every leaf key of ``Config`` with wrong values for its
type (rejected by validation, before anything is built), and cases that only the pipeline can
judge (paths that do not exist, unknown names, bad term options, an occupied run_dir), each with
the stage it must fail at. Spies (not mocks) record whether a model was built or training began.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch

from engine_helpers import tiny_config
from fault_helpers import CACHE, run_cli, write_config  # noqa: F401 (fixture)
from mlkd.config import Config
from mlkd.engine import trainer
from mlkd.engine.trainer import fit


def leaf_fields(model=Config, prefix=""):
    """(dotted key, annotation, field info) of every leaf of the config."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from leaf_fields(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", ann, field


def wrong_values(ann, field) -> list[str]:
    """YAML texts that must be refused for a field of annotation ``ann``."""
    args = set(typing.get_args(ann)) - {type(None)} or {ann}
    bounded = any(hasattr(m, "gt") or hasattr(m, "ge") for m in field.metadata)
    if typing.get_origin(ann) is typing.Literal:
        return ["bogus", "[1]", "''", "5"]
    if typing.get_origin(ann) is dict:
        value = typing.get_args(ann)[1]
        if value is float:
            return ["5", "abc", "{mld: abc}", "{mld: .nan}", "{mld: .inf}", "{mld: true}"]
        if typing.get_origin(value) is dict:
            return ["5", "[1]", "{mld: 5}"]
        return ["5", "abc", "[1]"]
    if typing.get_origin(ann) is list:
        return ["5", "abc", "{a: 1}", "[bogus]"]
    if args == {bool, str}:
        return ["[1]", "5", "''", "{a: 1}"]
    if bool in args:
        return ["maybe", "2", "[1]", "''"]
    if args & {int, float}:
        out = ["abc", "[1]", "{a: 1}", "true", "''", ".inf", ".nan"]
        if int in args:
            out.append("1.5")
        if bounded:
            out.append("-1")
        return out
    if str in args:
        return ["[1]", "{a: 1}"]
    raise AssertionError(f"no wrong values for {ann}")


TYPE_CASES = [(key, value) for key, ann, field in leaf_fields() for value in wrong_values(ann, field)]
EMPTY_REFUSED = ["run_dir", "model.name", "model.pretrained"]  # refused by validation


@pytest.fixture()
def base(tmp_path, monkeypatch):
    """A tiny valid config file, and spies on model building and training."""
    calls = {"model": 0, "train": 0}
    build_model = trainer.model_from_config

    def model_spy(*args, **kwargs):
        calls["model"] += 1
        return build_model(*args, **kwargs)

    def train_spy(run):
        calls["train"] += 1
        raise AssertionError("training started")

    monkeypatch.setattr(trainer, "model_from_config", model_spy)
    monkeypatch.setattr(trainer, "train_one_epoch", train_spy)
    cfg = tiny_config(tmp_path / "run", CACHE, epochs=1)
    return {"config": str(write_config(cfg, tmp_path / "tiny.yaml")), "calls": calls, "tmp": tmp_path}


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    text = err.strip()
    assert code == 2, text
    assert text.startswith("mlkd: error: ") and "\n" not in text, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text)


def test_every_key_refuses_wrong_types(base, capsys):
    """~250 (key, value) pairs: rejected by validation, nothing built, the key named."""
    failures = []
    for key, value in TYPE_CASES + [(key, "''") for key in EMPTY_REFUSED]:
        code, err = run_cli(["train", "-c", base["config"], f"{key}={value}"], capsys)
        text = err.strip()
        if code != 2 or "\n" in text or not text.startswith("mlkd: error:") or key not in text:
            failures.append(f"{key}={value}: exit {code}: {text[:300]}")
    assert not failures, "\n".join(failures)
    assert base["calls"] == {"model": 0, "train": 0}
    assert len(TYPE_CASES) > 200


def fill(text: str, paths: dict[str, str]) -> str:
    for name, value in paths.items():
        text = text.replace(f"<{name}>", value)
    return text


def _paths(tmp: Path) -> dict[str, str]:
    (tmp / "a_file").write_text("x")
    (tmp / "garbage.pt").write_bytes(b"\x80\x02not a checkpoint")
    (tmp / "bad.yaml").write_text("model: [unclosed\n")
    occupied = tmp / "occupied" / "checkpoints"
    occupied.mkdir(parents=True)
    (occupied / "last.pt").write_bytes(b"a previous run's checkpoint")
    return {
        "file": str(tmp / "a_file"),
        "garbage": str(tmp / "garbage.pt"),
        "bad_yaml": str(tmp / "bad.yaml"),
        "occupied": str(tmp / "occupied"),
    }


# (overrides, words the message must hold, stage): "data" = before any model is built,
# "build" = before training starts (the student is built before the method is resolved and
# the teacher loaded, so that its initial weights depend on the seed only). <file>, <garbage>, ... are filled in by fill().
PIPELINE_CASES = [
    (["data.name=voc2007", "data.options={root: /nonexistent/voc}"], ["/nonexistent/voc"], "data"),
    (["data.name=coco2014", "data.options={root: /nonexistent/coco}"], ["/nonexistent/coco"], "data"),
    (["data.name=nuswide", "data.options={root: /nonexistent/nus}"], ["/nonexistent/nus"], "data"),
    (
        ["data.name=list", "data.options={train_file: /nonexistent/l.csv, test_file: /n.csv}"],
        ["/nonexistent/l.csv"],
        "data",
    ),
    (["data.name=list", "data.options={}"], ["train_file"], "data"),
    (["data.name=voc2007", "data.options={}"], ["root"], "data"),
    (["data.name=imagenet22k"], ["imagenet22k"], "data"),
    (["data.name=''"], ["dataset ''"], "data"),
    (["data.options.bogus=1"], ["bogus"], "data"),
    (["data.options.num_train=-5"], ["num_train"], "data"),
    (["data.options.source=''"], ["source"], "data"),
    (["train.device=gpu"], ["train.device"], "data"),
    (["train.device=''"], ["train.device"], "data"),
    (["train.device=cuda"], ["train.device"], "data"),
    (["train.amp=fp16"], ["train.amp"], "data"),
    (["run_dir=<file>"], ["run_dir", "<file>"], "data"),
    (["run_dir=/proc/no/such/dir"], ["run_dir"], "data"),
    (["run_dir=<occupied>"], ["run_dir", "--resume"], "data"),
    (["distill.method=l3d"], ["l3d"], "build"),
    (["distill.method=''"], ["method ''"], "build"),
    (["distill.weights={foo: 1}"], ["foo"], "build"),
    (["distill.method=mld"], ["distill.teacher"], "build"),
    (["distill.method=mld", "distill.teacher=/nonexistent/t.pt"], ["distill.teacher", "/nonexistent/t.pt"], "build"),
    (["distill.method=mld", "distill.teacher=<garbage>"], ["<garbage>"], "build"),
    (["distill.method=mld", "distill.teacher=<tmp>"], ["distill.teacher"], "build"),
    (["model.name=no_such_net"], ["model.name", "no_such_net"], "build"),
    (["model.pretrained=/nonexistent/w.safetensors"], ["model.pretrained"], "build"),
    (["model.options={no_such_kwarg: 1}"], ["model.options", "no_such_kwarg"], "build"),
    (["model.embed_dim=30", "model.num_heads=4"], ["model.embed_dim"], "build"),
    (["distill.options.bce.reduction=bogus"], ["distill.options.bce.reduction"], "build"),
    (["distill.options.bce.reduction=5"], ["distill.options.bce.reduction"], "build"),
    (["distill.options.bce.no_such_option=1"], ["bce", "no_such_option"], "build"),
    (["distill.options.mld.temperature=1"], ["mld"], "build"),  # options for an unused term
]


@pytest.mark.parametrize(
    "overrides, needles, stage", PIPELINE_CASES, ids=[" ".join(case[0])[:60] for case in PIPELINE_CASES]
)
def test_pipeline_refuses_before_training(base, capsys, overrides, needles, stage):
    paths = {**_paths(base["tmp"]), "tmp": str(base["tmp"])}
    overrides = [fill(o, paths) for o in overrides]
    code, err = run_cli(["train", "-c", base["config"], *overrides], capsys)
    assert_one_line_error(code, err, *[fill(n, paths) for n in needles])
    assert base["calls"]["train"] == 0
    if stage == "data":
        assert base["calls"]["model"] == 0, "a model was built before the error"
    assert not (base["tmp"] / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "-c", "/nonexistent/exp.yaml"], ["/nonexistent/exp.yaml"]),
        (["train", "-c", "<tmp>"], ["<tmp>"]),
        (["train", "-c", "<bad_yaml>"], ["<bad_yaml>", "YAML"]),
        (["train", "-c", "<config>", "optim.lr"], ["key.sub=value"]),
        (["train", "-c", "<config>", "=5"], ["empty key"]),
        (["train", "-c", "<config>", "optim.lr=3e-4", "optim.lr.x=1"], ["optim.lr"]),
        (["train", "-c", "<config>", "data=5"], ["'data'"]),
        (["train", "-c", "<config>", "trian.seed=1"], ["trian"]),
        (["eval", "/nonexistent/last.pt"], ["/nonexistent/last.pt"]),
        (["eval", "<garbage>"], ["<garbage>"]),
        (["eval", "<tmp>"], ["<tmp>"]),
        (["data", "summary", "/nonexistent/exp.yaml"], ["/nonexistent/exp.yaml"]),
    ],
)
def test_cli_files_and_syntax(base, capsys, argv, needles):
    paths = {**_paths(base["tmp"]), "tmp": str(base["tmp"]), "config": base["config"]}
    code, err = run_cli([fill(a, paths) for a in argv], capsys)
    assert_one_line_error(code, err, *[fill(n, paths) for n in needles])
    assert base["calls"] == {"model": 0, "train": 0}


def test_eval_refuses_a_bad_protocol_before_predicting(tmp_path, capsys, monkeypatch):
    fit(
        tiny_config(
            tmp_path / "run",
            CACHE,
            epochs=1,
            data={"options": {"source": "digits", "num_train": 32, "num_test": 8, "seed": 0, "cache_dir": str(CACHE)}},
        )
    )
    from mlkd.engine import evaluation

    def predict_spy(*args, **kwargs):
        raise AssertionError("predicted before checking the protocol")

    monkeypatch.setattr(evaluation, "predict", predict_spy)
    code, err = run_cli(["eval", str(tmp_path / "run" / "checkpoints" / "last.pt"), "-p", "thr@high"], capsys)
    assert_one_line_error(code, err, "thr@high")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 1


def test_a_multi_line_cause_is_printed_on_one_line(base, capsys):
    """torch's own messages span lines (here a weights-only unpickling refusal quoted by the
    CheckpointError); the CLI still prints one line."""
    import torch

    evil = base["tmp"] / "evil.pt"
    torch.save({"model": {}, "classes": [], "config": {}, "epoch": 0, "x": Path("/")}, evil)
    code, err = run_cli(["train", "-c", base["config"], "distill.method=mld", f"distill.teacher={evil}"], capsys)
    assert_one_line_error(code, err, str(evil))


@pytest.mark.parametrize("change", ["no model config", "bad model config", "foreign weights"])
def test_a_checkpoint_that_does_not_fit_together_is_named(tmp_path, capsys, change):
    import torch

    fit(
        tiny_config(
            tmp_path / "t",
            CACHE,
            epochs=1,
            data={"options": {"source": "digits", "num_train": 32, "num_test": 8, "seed": 0, "cache_dir": str(CACHE)}},
        )
    )
    state = torch.load(tmp_path / "t" / "checkpoints" / "last.pt", weights_only=False)
    state.pop("integrity")
    if change == "no model config":
        del state["config"]["model"]
    elif change == "bad model config":
        state["config"]["model"]["embed_dim"] = -3
    else:
        state["model"] = {"fc.weight": torch.zeros(2, 2)}
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    code, err = run_cli(["eval", str(bad)], capsys)
    assert_one_line_error(code, err, str(bad))


def test_unknown_command_line_flags_exit_2_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["train", "--no-such-flag"], capsys)
    assert exit_info.value.code == 2 and "--no-such-flag" in capsys.readouterr().err
