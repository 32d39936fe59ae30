"""Hostile or unusual input files and values: every one is a one-line error (exit 2) naming
the file, key or value, bounded in length, or a warning; never a traceback or a silent change.
"""

from __future__ import annotations

import pytest

from engine_helpers import tiny_config
from fault_helpers import CACHE, run_cli, write_config


def assert_one_line(code, err, *needles, limit=2100):
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text[:2000]
    assert len(text) < limit, f"{len(text)} characters: {text[:300]}..."
    for needle in needles:
        assert needle in text, text


def alias_bomb(levels: int = 7) -> str:
    """A YAML list whose anchors nest ``levels`` deep, 9 wide: ~20 lines that expand to 9**levels items."""
    anchors = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    anchors += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


@pytest.mark.parametrize("key", ["seed", "protocols"])
def test_a_yaml_alias_bomb_is_quoted_in_a_few_characters(tmp_path, capsys, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"train:\n  {key}: {alias_bomb()}\n")
    assert_one_line(*run_cli(["train", "-c", str(path)], capsys), str(path), f"train.{key}", "...")


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data, needles",
    [
        ("optim:\n  lr: 0.1\n".encode("utf-16"), ["not UTF-8 text", "UTF-16", "save it as UTF-8"]),
        ("optim:\n  name: adamé\n".encode("latin-1"), ["not UTF-8 text", "byte 0xe9 at offset 19"]),
        (bytes(range(256)) * 4, ["not UTF-8 text"]),
    ],
)
@pytest.mark.parametrize("command", [["train", "-c"], ["data", "summary"]])
def test_a_config_that_is_not_utf8_text_is_named(tmp_path, capsys, data, needles, command):
    path = write(tmp_path, "exp.yaml", data)
    assert_one_line(*run_cli([*command, str(path)], capsys), str(path), *needles)


def test_a_utf8_bom_is_accepted(tmp_path):
    from mlkd.config import load_config

    path = write(tmp_path, "exp.yaml", "\ufeffoptim:\n  lr: 0.5\n".encode("utf-8"))
    assert load_config(path).optim.lr == 0.5


@pytest.mark.parametrize(
    "text, needles",
    [
        ("optim:\n  lr: 0.1\ndata:\n  batch_size: 8\noptim:\n  epochs: 3\n", ["key 'optim' appears twice", "line 5"]),
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", ["key 'lr' appears twice", "line 3"]),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path, text, needles):
    from mlkd.config import load_config
    from mlkd.errors import ConfigError

    path = write(tmp_path, "exp.yaml", text.encode())
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert_one_line(2, f"mlkd: error: {err.value}", str(path), *needles)


def test_yaml_merge_keys_are_not_duplicates():
    from mlkd.config import apply_overrides

    assert apply_overrides({}, ["distill.options={a: &x {k: 1}, b: {<<: *x, k: 2}}"]) == {
        "distill": {"options": {"a": {"k": 1}, "b": {"k": 2}}}
    }


@pytest.mark.parametrize(
    "override, needles",
    [
        ("train.seed=18446744073709551616", ["'train.seed'", "less than 4294967296"]),
        ("train.seed=-1", ["'train.seed'", "greater than or equal to 0"]),
        ("train.protocols=[topk@²]", ["invalid metrics protocol 'topk@²'"]),
        ("train.protocols=[]", ["'train.protocols'", "at least 1 item"]),
        ("distill.weights={mld: 1.0, cd: -2}", ["'distill.weights'", "must be >= 0", "cd=-2"]),
    ],
)
def test_values_that_would_fail_later_or_silently_are_refused(tmp_path, capsys, override, needles):
    cfg = write_config(tiny_config(tmp_path / "run", CACHE, epochs=1), tmp_path / "exp.yaml")
    assert_one_line(*run_cli(["train", "-c", str(cfg), override], capsys), *needles)
    assert not (tmp_path / "run").exists()


def test_sweep_refuses_a_negative_max_runs(tmp_path, capsys):
    assert_one_line(
        *run_cli(["sweep", "configs/demo_table1.yaml", "--out", str(tmp_path), "--max-runs", "-1"], capsys),
        "--max-runs -1",
        "1 or more",
    )


def test_a_class_name_holding_the_label_separator_is_refused(tmp_path, capsys):
    (tmp_path / "classes.txt").write_text("dog\ncat|kitten\n")
    (tmp_path / "train.csv").write_text("path,labels\na.png,dog\n")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"data:\n  name: list\n  options:\n    classes_file: {tmp_path / 'classes.txt'}\n"
        f"    train_file: {tmp_path / 'train.csv'}\n    test_file: {tmp_path / 'train.csv'}\n"
    )
    assert_one_line(
        *run_cli(["data", "summary", str(cfg)], capsys),
        str(tmp_path / "classes.txt"),
        "'cat|kitten' contains the label separator '|'",
    )
