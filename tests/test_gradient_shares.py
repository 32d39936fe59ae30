"""Gradient shares of the term diagnostics (the demo's chart), against hand-computed records."""

from __future__ import annotations

import pytest

from mlkd.analysis.gradient_shares import effective_weights, gradient_share_chart, gradient_shares


def record(epoch, grads, balance=None):
    out = {"epoch": epoch, "diagnostics": {"terms": {t: {"grad": g, "weight": 1.0} for t, g in grads.items()}}}
    if balance:
        out["balance"] = {"terms": balance}
    return out


def test_shares_are_each_terms_norm_over_the_sum_per_epoch():
    records = [{"epoch": 1}, record(2, {"bce": 1.0, "cd": 3.0}), record(3, {"bce": 2.0, "cd": 1.0, "id": 1.0})]
    epochs, shares = gradient_shares(records)
    assert epochs == [2, 3]  # the epoch without diagnostics is left out
    assert shares == {"bce": [0.25, 0.5], "cd": [0.75, 0.25], "id": [0.0, 0.25]}


def test_effective_weights_read_the_balance_record():
    r = record(1, {"bce": 1.0}, {"cd": {"weight": 100.0, "effective": 12.5}, "mld": {"weight": 10, "effective": 10}})
    assert effective_weights(r) == {"cd": (100.0, 12.5), "mld": (10.0, 10.0)}
    assert effective_weights(record(1, {"bce": 1.0})) == {}


def test_chart_skips_runs_without_diagnostics(tmp_path):
    pytest.importorskip("matplotlib")
    assert not gradient_share_chart({"Student": [{"epoch": 1}]}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    runs = {"L2D": [record(1, {"bce": 1.0, "cd": 9.0}), record(2, {"bce": 1.0, "cd": 4.0})], "Student": []}
    assert gradient_share_chart(runs, tmp_path / "shares.png", "title")
    assert (tmp_path / "shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
