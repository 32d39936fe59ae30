"""The run record: the final-epoch rule on a validated and on a raw config, reading the last
line of metrics.jsonl, and when a run counts as finished."""

import json

import pytest

from mlkd.config import load_config
from mlkd.runrecord import METRICS_FILE, RunRecord, final_epoch


@pytest.mark.parametrize("epochs, stop, expected", [(5, None, 5), (5, 2, 2), (5, 9, 5)])
def test_final_epoch_is_the_same_rule_on_a_config_and_on_its_saved_dict(epochs, stop, expected):
    overrides = [f"optim.epochs={epochs}"] + ([f"optim.stop_epoch={stop}"] if stop else [])
    cfg = load_config(overrides=overrides)
    assert cfg.optim.final_epoch == expected == final_epoch(cfg.to_dict())
    assert final_epoch({}) == 0


def test_last_record_and_the_finished_rule(tmp_path):
    assert RunRecord.last(tmp_path) is None
    (tmp_path / METRICS_FILE).write_text("")
    assert RunRecord.last(tmp_path) is None
    lines = [{"epoch": 1, "train": {}}, {"epoch": 2, "train": {}, "eval": {"thr@0.5": {"mAP": 0.5}}}]
    (tmp_path / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines) + "\n")
    last = RunRecord.last(tmp_path)
    assert last.fields == lines[1] and last.epoch == 2 and last.eval == {"thr@0.5": {"mAP": 0.5}}
    assert last.finished(2) and not last.finished(3)
    assert not RunRecord(lines[0]).finished(1)  # the final epoch, but not evaluated
    assert not RunRecord({"epoch": 1, "eval": {}}).finished(1)
