"""mlkd.metrics against scikit-learn, slow per-image loops, and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from mlkd.errors import ConfigError
from mlkd.metrics import (
    average_precision,
    binarize,
    evaluate_protocols,
    multilabel_metrics,
    parse_protocol,
)

PROTOCOLS = ["thr@0.5", "thr@0.25", "oracle-k", "topk@1", "topk@3"]


# ---------------------------------------------------------------- slow, obviously-correct oracles
def loop_topk(scores: np.ndarray, ks) -> np.ndarray:
    """Per image: sort classes by (-score, class index), keep the first k."""
    n, q = scores.shape
    pred = np.zeros((n, q), dtype=bool)
    for i in range(n):
        ranked = sorted(range(q), key=lambda c: (-scores[i, c], c))
        for c in ranked[: int(ks[i])]:
            pred[i, c] = True
    return pred


def oracle_predictions(scores: np.ndarray, targets: np.ndarray, protocol: str) -> np.ndarray:
    kind, _, arg = protocol.partition("@")
    if kind == "thr":
        return scores >= float(arg)
    if kind == "topk":
        return loop_topk(scores, [int(arg)] * len(scores))
    return loop_topk(scores, targets.sum(axis=1))


def sklearn_metrics(scores, targets, pred) -> dict:
    aps = [
        average_precision_score(targets[:, c], scores[:, c]) if targets[:, c].any() else math.nan
        for c in range(targets.shape[1])
    ]
    kw = dict(y_true=targets, y_pred=pred.astype(int), zero_division=0)
    return {
        "AP": aps,
        "mAP": float(np.nanmean(aps)),
        "OF1": f1_score(average="micro", **kw),
        "CF1": f1_score(average="macro", **kw),
        "OP": precision_score(average="micro", **kw),
        "CP": precision_score(average="macro", **kw),
        "OR": recall_score(average="micro", **kw),
        "CR": recall_score(average="macro", **kw),
    }


def random_case(seed: int, n: int = 150, q: int = 10, levels: int | None = None, empty_classes: bool = True):
    """Random scores (quantised to `levels` values when given: heavy ties, exact 0.5/0.25).
    Labels: an image with no label, an image with every label (but those of the empty
    classes), an all-positive class 7, and classes 1 and 4 without positive if asked."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, q)) < rng.uniform(0.05, 0.6, size=q)).astype(np.int64)
    targets[:, 7] = 1
    targets[0] = 0
    targets[1] = 1
    if empty_classes:
        targets[:, [1, 4]] = 0
    scores = np.clip(0.35 * targets + 0.65 * rng.random((n, q)), 0, 1)
    if levels is not None:
        scores = np.round(scores * (levels - 1)) / (levels - 1)
    return scores, targets


# ---------------------------------------------------------------- agreement with scikit-learn
@pytest.mark.parametrize("levels", [None, 5, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_every_protocol(seed, levels):
    scores, targets = random_case(seed, levels=levels)
    results = evaluate_protocols(scores, targets, PROTOCOLS)
    assert list(results) == PROTOCOLS
    for protocol in PROTOCOLS:
        pred = oracle_predictions(scores, targets, protocol)
        np.testing.assert_array_equal(binarize(scores, protocol, targets), pred)
        ours, ref = results[protocol], sklearn_metrics(scores, targets, pred)
        assert ours["protocol"] == protocol
        assert ours["num_classes_excluded"] == 2 and ours["num_images"] == len(scores)
        assert math.isnan(ours["AP"][1]) and math.isnan(ours["AP"][4])
        np.testing.assert_allclose(ours["AP"], ref["AP"], rtol=0, atol=1e-9)
        for key in ("mAP", "OF1", "CF1", "CP", "CR", "OP", "OR"):
            assert isinstance(ours[key], float) and 0.0 <= ours[key] <= 1.0
            assert ours[key] == pytest.approx(ref[key], abs=1e-9), (protocol, key)


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_heavy_ties_matches_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    n, q = 300, 6
    targets = (rng.random((n, q)) < 0.3).astype(int)
    targets[0] = 1  # every class has a positive
    scores = rng.integers(0, [1, 2, 3, 7, 40, 10**6], size=(n, q)).astype(float)  # col 0 all tied
    ours = average_precision(scores, targets)
    ref = [average_precision_score(targets[:, c], scores[:, c]) for c in range(q)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    assert ours[0] == pytest.approx(targets[:, 0].mean(), abs=1e-12)  # one threshold: prevalence


# ---------------------------------------------------------------- top-k rules vs per-image loops
@pytest.mark.parametrize("protocol", ["oracle-k", "topk@1", "topk@2", "topk@5", "topk@50"])
def test_topk_rules_match_loop(protocol):
    # many ties at the top-k boundary; image 1 carries all 8 labels (oracle-k predicts all)
    scores, targets = random_case(7, n=120, q=8, levels=4, empty_classes=False)
    pred = binarize(scores, protocol, targets)
    np.testing.assert_array_equal(pred, oracle_predictions(scores, targets, protocol))
    k = targets.sum(1) if protocol == "oracle-k" else min(int(protocol[5:]), 8)
    np.testing.assert_array_equal(pred.sum(1), k)  # exactly k per image, ties or not


# ---------------------------------------------------------------- hand-computed 3 images x 4 classes
# class 3 has no positive; img0 ties c1/c3 at 0.6; c0 ties two images at 0.5; c2 ties at 0.7.
HAND_S = np.array([[0.9, 0.6, 0.5, 0.6], [0.5, 0.8, 0.7, 0.6], [0.5, 0.4, 0.7, 0.2]])
HAND_T = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
# AP: c0 sorted 0.9(+), {0.5(-), 0.5(+)} -> 1/2*1 + 1/2*2/3 = 5/6; c1: 0.8(+) first -> 1;
# c2: {0.7(+), 0.7(-)} -> 1/2; c3: NaN.  mAP = (5/6 + 1 + 1/2) / 3 = 7/9.
HAND_AP = [5 / 6, 1.0, 0.5]
HAND = {
    # >= 0.5 keeps the 0.5s. Per class (TP,FP,FN): c0 (2,1,0) c1 (1,1,0) c2 (1,2,0) c3 (0,2,0)
    "thr@0.5": (
        [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0]],
        dict(
            CP=(2 / 3 + 1 / 2 + 1 / 3 + 0) / 4,
            CR=3 / 4,
            CF1=(4 / 5 + 2 / 3 + 1 / 2 + 0) / 4,
            OP=4 / 10,
            OR=1.0,
            OF1=8 / 14,
        ),
    ),
    # k = 1, 2, 1. c0 (1,0,1) c1 (1,0,0) c2 (1,1,0) c3 (0,0,0)
    "oracle-k": (
        [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]],
        dict(
            CP=(1 + 1 + 1 / 2) / 4, CR=(1 / 2 + 1 + 1) / 4, CF1=(2 / 3 + 1 + 2 / 3) / 4, OP=3 / 4, OR=3 / 4, OF1=3 / 4
        ),
    ),
    # img0: c0, then the 0.6 tie goes to c1 (lower index). c0 (2,0,0) c1 (1,1,0) c2 (1,1,0)
    "topk@2": (
        [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0]],
        dict(CP=(1 + 1 / 2 + 1 / 2) / 4, CR=3 / 4, CF1=(1 + 2 / 3 + 2 / 3) / 4, OP=4 / 6, OR=1.0, OF1=8 / 10),
    ),
}


@pytest.mark.parametrize("protocol", list(HAND))
def test_hand_computed(protocol):
    expected_pred, expected = HAND[protocol]
    np.testing.assert_array_equal(binarize(HAND_S, protocol, HAND_T), np.array(expected_pred, bool))
    m = multilabel_metrics(HAND_S, HAND_T, protocol)
    assert m["mAP"] == pytest.approx(7 / 9, abs=1e-12)
    np.testing.assert_allclose(m["AP"][:3], HAND_AP, atol=1e-12)
    assert math.isnan(m["AP"][3])
    assert (m["num_classes_excluded"], m["num_images"], m["protocol"]) == (1, 3, protocol)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_threshold_is_greater_or_equal():
    s = np.array([[0.5, 0.4999, 0.7]])
    np.testing.assert_array_equal(binarize(s, "thr@0.5"), [[True, False, True]])
    np.testing.assert_array_equal(binarize(s, "thr@0.7"), [[False, False, True]])


# ---------------------------------------------------------------- inputs and edge cases
def test_numpy_and_torch_inputs_identical():
    scores, targets = random_case(3, n=64, q=10, levels=9)  # values exact in float16/bfloat16
    ref = evaluate_protocols(scores, targets, PROTOCOLS)
    variants = [
        (torch.tensor(scores, dtype=dt), torch.tensor(targets, dtype=tt))
        for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16)
        for tt in (torch.int64, torch.bool, torch.float32)
    ]
    variants.append((scores.astype(np.float32), targets.astype(bool)))
    if torch.cuda.is_available():
        variants.append((torch.tensor(scores, device="cuda"), torch.tensor(targets, device="cuda")))
    for s, t in variants:
        got = evaluate_protocols(s, t, PROTOCOLS)
        for p in PROTOCOLS:
            np.testing.assert_equal(got[p], ref[p])
            np.testing.assert_array_equal(binarize(s, p, t), binarize(scores, p, targets))


def test_empty_and_full_images_and_degenerate_classes():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4], [0.6, 0.6, 0.6], [0.0, 0.0, 0.0]])
    targets = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 or empty means
        for p in PROTOCOLS + ["topk@3", "topk@99"]:
            m = multilabel_metrics(scores, targets, p)
            assert m["mAP"] == pytest.approx(np.mean(m["AP"]))
            assert all(0 <= m[k] <= 1 for k in ("OF1", "CF1", "CP", "CR", "OP", "OR"))
        ok = binarize(scores, "oracle-k", targets)
        np.testing.assert_array_equal(ok.sum(1), [0, 3, 0, 0])
        # no positive anywhere: mAP NaN, every class excluded, F1s are 0
        m = multilabel_metrics(scores, np.zeros_like(targets), "oracle-k")
        assert math.isnan(m["mAP"]) and m["num_classes_excluded"] == 3
        assert m["OF1"] == m["CF1"] == 0.0
        # zero images
        m = multilabel_metrics(np.zeros((0, 3)), np.zeros((0, 3)), "topk@1")
        assert m["num_images"] == 0 and m["num_classes_excluded"] == 3


@pytest.mark.parametrize(
    "bad",
    [
        "thr",
        "thr@",
        "thr@abc",
        "thr@nan",
        "thr@inf",
        "topk@0",
        "topk@-1",
        "topk@1.5",
        "topk",
        "oracle",
        "oracle-k@2",
        "THR@0.5",
    ],
)
def test_bad_protocol_names_the_string_and_valid_forms(bad):
    with pytest.raises(ValueError) as info:
        parse_protocol(bad)
    assert isinstance(info.value, ConfigError)
    assert repr(bad) in str(info.value) and "oracle-k" in str(info.value)
    assert "topk@<k>" in str(info.value) and "thr@<t>" in str(info.value)
    with pytest.raises(ConfigError):  # evaluate fails before doing any work
        evaluate_protocols(np.zeros((2, 2)), np.zeros((2, 2)), ["thr@0.5", bad])


def test_canonical_protocol_tags():
    assert parse_protocol(" thr@0.50 ").name == "thr@0.5"
    assert parse_protocol("thr@1").name == "thr@1"
    assert parse_protocol("thr@-2").name == "thr@-2"
    assert parse_protocol("thr@0.123456789").name == "thr@0.123456789"
    assert parse_protocol("topk@03").name == "topk@3"
    res = evaluate_protocols(HAND_S, HAND_T, ["thr@0.50", "thr@0.5", "oracle-k"])
    assert list(res) == ["thr@0.5", "oracle-k"]
    assert list(evaluate_protocols(HAND_S, HAND_T)) == ["thr@0.5", "oracle-k"]
    assert list(evaluate_protocols(HAND_S, HAND_T, "topk@1")) == ["topk@1"]


def test_invalid_inputs_raise_clear_errors():
    s = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        multilabel_metrics(s, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"shape \[N, q\]"):
        multilabel_metrics(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(s, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        multilabel_metrics(np.array([[0.1, np.nan, 0.2]]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="oracle-k.*targets"):
        binarize(s, "oracle-k")


# ---------------------------------------------------------------- the official code's strict rule
def loop_strict(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per image: threshold = the (k+1)-th highest score (none when k = q); keep scores above it."""
    pred = np.zeros(scores.shape, dtype=bool)
    for i, row in enumerate(scores):
        k = int(targets[i].sum())
        ordered = sorted(row.tolist(), reverse=True)
        cut = ordered[k] if k < len(ordered) else -math.inf
        pred[i] = [x > cut for x in row]
    return pred


def test_oracle_k_strict_is_the_official_rule_with_ties():
    scores, targets = random_case(7, n=120, q=8, levels=4, empty_classes=False)
    strict = binarize(scores, "oracle-k-strict", targets)
    np.testing.assert_array_equal(strict, loop_strict(scores, targets))
    plain = binarize(scores, "oracle-k", targets)
    assert (strict <= plain).all() and (strict.sum(1) < plain.sum(1)).any()  # ties lose predictions
    assert strict[1].all() and not strict[0].any()  # k = q and k = 0 images
    res = evaluate_protocols(scores, targets, ["oracle-k-strict"])["oracle-k-strict"]
    ref = sklearn_metrics(scores, targets, strict)
    for key in ("OF1", "CF1", "CP", "CR", "OP", "OR"):
        assert res[key] == pytest.approx(ref[key], abs=1e-9), key
    # Hand case: k = 2 with scores (0.9, 0.7, 0.7, 0.1): strict keeps only 0.9, oracle-k two.
    s, t = np.array([[0.9, 0.7, 0.7, 0.1]]), np.array([[1, 1, 0, 0]])
    assert binarize(s, "oracle-k-strict", t).tolist() == [[True, False, False, False]]
    assert binarize(s, "oracle-k", t).tolist() == [[True, True, False, False]]
