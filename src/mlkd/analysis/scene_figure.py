"""A figure of example ``coco_scenes`` images with their labels (the demo's and the docs')."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mlkd import optional


def _title(names: Sequence[str], per_line: int = 2) -> str:
    return "\n".join(", ".join(names[j : j + per_line]) for j in range(0, len(names), per_line))


def scene_figure(
    dataset, path, rows: int = 3, cols: int = 6, predicted: Optional[np.ndarray] = None, dpi: int = 90
) -> Path:
    """Save the first ``rows * cols`` scenes of ``dataset`` (a ``coco_scenes`` split: ``images``
    [N, S, S, 3] uint8, ``classes``, ``labels_matrix()`` [N, q]) with their true labels.

    ``predicted``: optional [N', q] bool (N' >= rows * cols), e.g. a student's thr@0.5 labels;
    each panel then lists the misses (``-name``) and false positives (``+name``) below the image.
    """
    plt = optional.pyplot("the scenes figure")

    count = min(rows * cols, len(dataset.images))
    if count == 0:
        raise ValueError("scene_figure: the dataset has no images")
    labels = dataset.labels_matrix().astype(bool)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 2.1, rows * (2.9 if predicted is not None else 2.55)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(dataset.images[i])
        ax.set_title(_title([dataset.classes[c] for c in np.flatnonzero(labels[i])]), fontsize=7)
        if predicted is not None:
            wrong = [f"-{dataset.classes[c]}" for c in np.flatnonzero(labels[i] & ~predicted[i])]
            wrong += [f"+{dataset.classes[c]}" for c in np.flatnonzero(predicted[i] & ~labels[i])]
            ax.text(
                0.5,
                -0.04,
                _title(wrong) if wrong else "all right",
                transform=ax.transAxes,
                ha="center",
                va="top",
                fontsize=6,
                color="#b03030" if wrong else "#307030",
            )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
