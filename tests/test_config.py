"""Config loading, overrides and the one-line errors for bad configs."""

import pytest

from mlkd.config import apply_overrides, load_config, parse_override
from mlkd.errors import ConfigError


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_follow_the_official_recipe():
    cfg = load_config()
    assert cfg.optim.name == "adam" and cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 1e-4
    assert cfg.optim.pct_start == 0.2 and cfg.data.batch_size == 64 and cfg.optim.epochs == 80
    assert cfg.data.recipe == "official" and cfg.distill.method == "vanilla"


def test_yaml_and_overrides_are_typed(tmp_path):
    path = write(tmp_path, "model:\n  name: resnet34\noptim:\n  epochs: 3\n")
    cfg = load_config(path, ["optim.lr=3e-4", "data.options.root=/data/coco", "train.protocols=[oracle-k]"])
    assert cfg.model.name == "resnet34" and cfg.optim.epochs == 3
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.data.options == {"root": "/data/coco"}
    assert cfg.train.protocols == ["oracle-k"]


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "optim.learning_rate" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_section_from_override():
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(None, ["trian.seed=1"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.epochs=abc", "optim.epochs"),
        ("data.batch_size=-4", "data.batch_size"),
        ("optim.lr=0", "optim.lr"),
        ("data.recipe=fancy", "data.recipe"),
        ("model.name=", "model.name"),
    ],
)
def test_wrong_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert key in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path, "model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = write(tmp_path, "42\n", "scalar.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"optim": 3}, ["optim.lr=1"])


def test_config_differences_names_changes_and_reads_missing_keys_as_defaults():
    from mlkd.config import Config, config_differences

    new = Config().to_dict()
    old = Config().to_dict()
    del old["train"]["threads"]  # a config saved before the key existed
    del old["data"]["options"]
    assert config_differences(old, new) == []
    new["train"]["threads"] = 2
    new["optim"]["lr"] = 5e-3
    new["data"]["options"] = {"root": "/d"}
    assert config_differences(old, new) == ["data.options.root", "optim.lr", "train.threads"]
    assert config_differences(old, new, {("train", "threads"), ("data", "options", "root")}) == ["optim.lr"]


def test_on_off_words_are_values_not_yaml_booleans(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {progress: off, amp: off}\ndistill: {cache: off}\n")
    cfg = load_config(path)
    assert (cfg.train.progress, cfg.train.amp, cfg.distill.cache) == ("off", "off", "off")
    cfg = load_config(path, ["train.progress=on", "distill.cache=auto", "train.amp=bf16"])
    assert (cfg.train.progress, cfg.distill.cache, cfg.train.amp) == ("on", "auto", "bf16")
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(path, ["train.amp=yes"])  # 'on' is not an amp mode: still refused
