"""Per-label thresholds against a brute-force oracle, and the 'calibrated' protocol against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mlkd.calibration import choose_thresholds, read_thresholds, write_thresholds
from mlkd.errors import ConfigError
from mlkd.metrics import evaluate_protocols, parse_protocol


def _oracle(scores: np.ndarray, targets: np.ndarray, min_positives: int) -> list[tuple[float, str]]:
    """Per label: the best F1 over every distinct score used as a threshold (sklearn's F1), or
    (0.5, 'default') below the positives floor."""
    out = []
    for k in range(scores.shape[1]):
        s, y = scores[:, k], targets[:, k]
        if y.sum() < max(1, min_positives):
            out.append((f1_score(y, s >= 0.5, zero_division=0), "default"))
            continue
        out.append((max(f1_score(y, s >= t, zero_division=0) for t in np.unique(s)), "f1"))
    return out


HAND_SCORES = np.array(
    [
        [0.9, 0.2, 0.7, 0.1],
        [0.8, 0.6, 0.7, 0.3],
        [0.4, 0.6, 0.2, 0.9],
        [0.4, 0.1, 0.7, 0.2],
        [0.1, 0.5, 0.3, 0.6],
        [0.3, 0.9, 0.2, 0.8],
    ]
)
HAND_TARGETS = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]])


def test_hand_data_thresholds():
    """Label 0: scores of its positives 0.9, 0.8, 0.4 (0.4 tied with a negative): cutting at 0.8
    gives F1 0.8, at 0.4 F1 6/7 = 0.857 (best), so t is the midpoint of 0.4 and the next lower
    score 0.3. Label 3 has one positive: below the floor of 2, it keeps 0.5."""
    choice = choose_thresholds(HAND_SCORES, HAND_TARGETS, min_positives=2)
    assert choice.thresholds[0] == pytest.approx(0.35)
    assert choice.f1[0] == pytest.approx(6 / 7)
    # label 1: positives 0.6, 0.6, 0.9; negatives 0.5 ... -> all three above 0.55, F1 = 1
    assert choice.thresholds[1] == pytest.approx(0.55) and choice.f1[1] == pytest.approx(1.0)
    assert choice.rules == ["f1", "f1", "f1", "default"] and choice.thresholds[3] == 0.5
    assert list(choice.positives) == [3, 3, 3, 1]


@pytest.mark.parametrize("seed", range(6))
def test_thresholds_reach_the_brute_force_best_f1(seed):
    rng = np.random.default_rng(seed)
    n, q = 40, 7
    targets = (rng.random((n, q)) < rng.uniform(0.05, 0.5, q)).astype(int)
    targets[:, 0] = 0
    targets[:3, 0] = 1  # three positives: below a floor of 4
    scores = np.round(0.6 * targets + rng.random((n, q)) * 0.7, 1)  # rounded: many ties
    choice = choose_thresholds(scores, targets, min_positives=4)
    for k, (best, rule) in enumerate(_oracle(scores, targets, 4)):
        assert choice.rules[k] == rule
        assert f1_score(targets[:, k], scores[:, k] >= choice.thresholds[k], zero_division=0) == pytest.approx(best)
        assert choice.f1[k] == pytest.approx(best)
        if rule == "f1":  # the highest cut-off of best F1, strictly above the next lower score
            kept = scores[:, k] >= choice.thresholds[k]
            lowest = scores[kept, k].min()
            better_higher = [
                t
                for t in np.unique(scores[:, k])
                if t > lowest and f1_score(targets[:, k], scores[:, k] >= t) >= best - 1e-12
            ]
            assert not better_higher


def test_calibrated_protocol_equals_sklearn_f1_at_the_thresholds():
    rng = np.random.default_rng(3)
    scores, targets = rng.random((30, 5)), (rng.random((30, 5)) < 0.4).astype(int)
    thresholds = np.array([0.2, 0.5, 0.7, 0.35, 0.9])
    result = evaluate_protocols(scores, targets, ["calibrated", "thr@0.5"], thresholds)
    pred = scores >= thresholds
    assert result["calibrated"]["CF1"] == pytest.approx(f1_score(targets, pred, average="macro", zero_division=0))
    assert result["calibrated"]["OF1"] == pytest.approx(f1_score(targets, pred, average="micro", zero_division=0))
    assert result["calibrated"]["mAP"] == result["thr@0.5"]["mAP"]
    assert parse_protocol("calibrated").name == "calibrated"
    with pytest.raises(ConfigError, match="mlkd calibrate"):
        evaluate_protocols(scores, targets, ["calibrated"])
    with pytest.raises(ConfigError, match="4 thresholds for 5 classes"):
        evaluate_protocols(scores, targets, ["calibrated"], thresholds[:4])


def test_train_protocols_refuse_calibrated(tmp_path):
    from engine_helpers import tiny_config

    with pytest.raises(ValueError, match="mlkd calibrate"):
        tiny_config(tmp_path / "r", tmp_path / "c", train={"protocols": ["calibrated"]})


def test_thresholds_file_round_trip_and_refusals(tmp_path):
    path = write_thresholds(tmp_path / "thresholds.json", {"classes": ["a", "b"], "thresholds": [0.3, 0.5]})
    assert read_thresholds(path, ["a", "b"])["thresholds"] == [0.3, 0.5]
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="classes differ"):
        read_thresholds(path, ["b", "a"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable thresholds file"):
        read_thresholds(tmp_path / "bad.json")
