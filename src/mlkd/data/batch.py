"""The batch contract between datasets, loaders and the engine.

Every mlkd dataset's ``__getitem__(i)`` returns ``(image [3, H, W] float, target [q] float 0/1,
i)``, or ``None`` when the image is unreadable and the dataset's ``on_bad_image`` policy is
``"skip"``. ``collate`` drops the ``None`` items and counts them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

Item = Optional[tuple[torch.Tensor, torch.Tensor, int]]


def collate(items: Sequence[Item]) -> dict:
    """Stack dataset items into a batch dict.

    Returns {"images": [B, 3, H, W], "targets": [B, q], "index": [B] long, "skipped": int}
    where B counts only the readable items and ``skipped`` the dropped ones.
    """
    kept = [item for item in items if item is not None]
    skipped = len(items) - len(kept)
    if not kept:
        return {"images": None, "targets": None, "index": None, "skipped": skipped}
    images, targets, index = zip(*kept)
    return {
        "images": torch.stack(images),
        "targets": torch.stack(targets).float(),
        "index": torch.as_tensor(index, dtype=torch.long),
        "skipped": skipped,
    }
