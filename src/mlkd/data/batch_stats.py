"""Label statistics per training batch: what CD and ID see.

CD forms one group per class from the positives of that class in a batch, ID one group per
image from its positive labels. A group needs 2 members to exist and, in the official variant
(mean-normalised distances), 3 members to contribute anything (a pair gives exactly zero loss
and gradient). So how many classes reach 3 positives in a batch of B decides how much signal
CD carries; this module measures it on any label matrix, for shuffled batches as a loader
draws them (a fresh permutation per epoch, the last incomplete batch dropped).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def shuffled_batches(num_items: int, batch_size: int, num_batches: int, seed: int = 0) -> np.ndarray:
    """Indices [num_batches, batch_size] of shuffled epochs (drop_last), epoch after epoch."""
    if batch_size < 1 or batch_size > num_items:
        raise ValueError(f"batch_size must be in 1..{num_items} (the number of images), got {batch_size}")
    rng = np.random.default_rng(seed)
    per_epoch = num_items // batch_size
    epochs = -(-num_batches // per_epoch)
    order = np.concatenate([rng.permutation(num_items)[: per_epoch * batch_size] for _ in range(epochs)])
    return order[: num_batches * batch_size].reshape(num_batches, batch_size)


def batch_label_statistics(
    labels: np.ndarray, batch_size: int = 64, num_batches: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Mean per-batch label statistics of ``labels`` [N, q] (0/1) over shuffled batches of B.

    Returns (means over batches): ``positives_per_class`` (a class's positives in a batch,
    averaged over classes), ``classes_present`` (classes with >= 1 positive), ``cd_groups_2``
    (classes with exactly 2: a group, but zero loss in the official variant), ``cd_groups_3plus``
    (classes with >= 3: the groups that carry CD), ``cd_share_of_positives`` (share of the
    batch's positives that sit in a >= 3 group), ``id_groups_2plus`` / ``id_groups_3plus``
    (images with >= 2 / >= 3 labels), ``cd_pairs`` / ``id_pairs`` (unordered pairs the losses
    compare), and the inputs ``batch_size``, ``num_batches``, ``classes``.
    """
    labels = np.asarray(labels) > 0.5
    batches = shuffled_batches(len(labels), batch_size, num_batches, seed)
    in_batch = labels[batches]  # [nb, B, q]
    per_class = in_batch.sum(axis=1)  # [nb, q]
    per_image = in_batch.sum(axis=2)  # [nb, B]
    positives = per_class.sum(axis=1)  # [nb]
    in_groups3 = np.where(per_class >= 3, per_class, 0).sum(axis=1)
    return {
        "batch_size": batch_size,
        "num_batches": num_batches,
        "classes": int(labels.shape[1]),
        "positives_per_class": float(per_class.mean()),
        "classes_present": float((per_class >= 1).sum(axis=1).mean()),
        "cd_groups_2": float((per_class == 2).sum(axis=1).mean()),
        "cd_groups_3plus": float((per_class >= 3).sum(axis=1).mean()),
        "cd_share_of_positives": float((in_groups3 / np.maximum(positives, 1)).mean()),
        "id_groups_2plus": float((per_image >= 2).sum(axis=1).mean()),
        "id_groups_3plus": float((per_image >= 3).sum(axis=1).mean()),
        "cd_pairs": float((per_class * (per_class - 1) // 2).sum(axis=1).mean()),
        "id_pairs": float((per_image * (per_image - 1) // 2).sum(axis=1).mean()),
    }
