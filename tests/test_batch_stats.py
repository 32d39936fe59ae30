"""Per-batch label statistics (what CD / ID groups see) against a loop over batches and hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from mlkd.data.batch_stats import batch_label_statistics, shuffled_batches


def loop_statistics(labels: np.ndarray, batches: np.ndarray) -> dict[str, float]:
    """Obviously-correct version: count groups batch by batch, class by class, image by image."""
    sums = dict.fromkeys(["present", "g2", "g3", "share", "id2", "id3", "cdp", "idp", "ppc"], 0.0)
    for batch in batches:
        rows = [labels[i] for i in batch]
        counts = [sum(int(r[k]) for r in rows) for k in range(labels.shape[1])]
        sizes = [int(sum(r)) for r in rows]
        sums["ppc"] += sum(counts) / len(counts)
        sums["present"] += sum(c >= 1 for c in counts)
        sums["g2"] += sum(c == 2 for c in counts)
        sums["g3"] += sum(c >= 3 for c in counts)
        sums["share"] += sum(c for c in counts if c >= 3) / max(sum(counts), 1)
        sums["id2"] += sum(s >= 2 for s in sizes)
        sums["id3"] += sum(s >= 3 for s in sizes)
        sums["cdp"] += sum(c * (c - 1) / 2 for c in counts)
        sums["idp"] += sum(s * (s - 1) / 2 for s in sizes)
    return {k: v / len(batches) for k, v in sums.items()}


def test_statistics_equal_a_loop_over_batches():
    rng = np.random.default_rng(3)
    labels = (rng.random((97, 7)) < rng.random(7) * 0.6).astype(np.uint8)
    stats = batch_label_statistics(labels, batch_size=16, num_batches=23, seed=5)
    ref = loop_statistics(labels, shuffled_batches(97, 16, 23, seed=5))
    got = {
        "ppc": stats["positives_per_class"],
        "present": stats["classes_present"],
        "g2": stats["cd_groups_2"],
        "g3": stats["cd_groups_3plus"],
        "share": stats["cd_share_of_positives"],
        "id2": stats["id_groups_2plus"],
        "id3": stats["id_groups_3plus"],
        "cdp": stats["cd_pairs"],
        "idp": stats["id_pairs"],
    }
    assert got == pytest.approx(ref, rel=1e-12)


def test_hand_case_one_batch():
    # 4 images, 3 classes: class 0 in 3 images (a CD group that counts), class 1 in 2 (zero loss
    # in the official variant), class 2 in 1; image 0 has 3 labels, images 1-2 have 2.
    labels = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    s = batch_label_statistics(labels, batch_size=4, num_batches=1)
    assert (s["cd_groups_3plus"], s["cd_groups_2"], s["classes_present"]) == (1, 1, 3)
    assert (s["id_groups_2plus"], s["id_groups_3plus"]) == (2, 1)
    assert s["cd_share_of_positives"] == pytest.approx(3 / 6)
    assert (s["cd_pairs"], s["id_pairs"]) == (3 + 1, 3 + 1)


def test_batches_are_shuffled_epochs_without_repeats():
    batches = shuffled_batches(10, 3, 7, seed=0)
    assert batches.shape == (7, 3)
    for epoch in range(2):  # 3 full batches per epoch: no index twice within an epoch
        chunk = batches[3 * epoch : 3 * epoch + 3].ravel()
        assert len(set(chunk.tolist())) == 9
    with pytest.raises(ValueError, match="batch_size"):
        shuffled_batches(5, 6, 1)
