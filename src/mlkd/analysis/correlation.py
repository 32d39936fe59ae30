"""Inter-class correlation of predicted probabilities: student minus teacher (the
paper's correlation heat-map figure).

For each model, C = the Pearson correlation matrix [q,q] of its predicted probabilities over
the test images (column k = sigmoid(z_k) of every image, in float64, from the float32 logits).
For each student, D = C_student − C_teacher is shown as a heat-map, and summarised by

    MAD = mean over off-diagonal (i != j) entries of |D_ij|,

which is 0 when the student reproduces the teacher's label co-occurrence structure exactly
and at most 2.

NaN policy: a class whose predicted probability is the same for every test image (a dead or
saturated output, or N < 2) has no correlation; its row and column of C are NaN, exactly as
``np.corrcoef`` gives them (without its warning). Entries of D that are NaN in either matrix
are left out of MAD and counted in ``excluded_pairs`` (unordered pairs); MAD is NaN when every
pair is excluded. The heat-map shows them in grey.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mlkd.analysis.common import Analysis, pyplot, write_json


def prediction_correlation(probs: np.ndarray) -> np.ndarray:
    """Pearson correlation [q,q] (float64) of the columns of ``probs [N,q]``; NaN rows/columns
    for constant columns (np.corrcoef(probs, rowvar=False) with its NaNs, no warning)."""
    x = np.asarray(probs, dtype=np.float64)
    n, q = x.shape
    if n < 2:
        return np.full((q, q), np.nan)
    centred = x - x.mean(axis=0, keepdims=True)
    cov = centred.T @ centred
    std = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    constant = std == 0
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    return np.clip(corr, -1.0, 1.0)


def probabilities64(logits: np.ndarray) -> np.ndarray:
    """sigmoid(logits) [N,q] in float64 (overflow-free for large |z|)."""
    z = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def correlation_difference(student: np.ndarray, teacher: np.ndarray) -> dict:
    """D = student − teacher [q,q], its off-diagonal mean absolute value ``mad`` (NaN-safe) and
    ``excluded_pairs`` (unordered off-diagonal pairs left out because either entry is NaN)."""
    diff = np.asarray(student, dtype=np.float64) - np.asarray(teacher, dtype=np.float64)
    q = diff.shape[0]
    off = ~np.eye(q, dtype=bool)
    finite = off & np.isfinite(diff)
    mad = float(np.abs(diff[finite]).mean()) if finite.any() else math.nan
    return {"diff": diff, "mad": mad, "excluded_pairs": int((off & ~finite).sum() // 2), "pairs": q * (q - 1) // 2}


def heatmaps(teacher_corr: np.ndarray, diffs: dict[str, dict], classes: list[str], teacher: str, path: Path) -> None:
    """One panel for the teacher's C, then one per student of D (a shared symmetric scale)."""
    plt = pyplot()
    import matplotlib

    panels = 1 + len(diffs)
    q = len(classes)
    size = min(5.0, max(3.2, 0.18 * q + 1.5))
    fig, axes = plt.subplots(1, panels, figsize=(size * panels + 0.6, size + 0.6), squeeze=False)
    limit = max([np.nanmax(np.abs(d["diff"])) for d in diffs.values() if np.isfinite(d["diff"]).any()] or [1.0])
    limit = float(limit) if limit > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")
    images = [axes[0, 0].imshow(teacher_corr, cmap=cmap, vmin=-1, vmax=1)]
    axes[0, 0].set_title(f"{teacher}: corr", fontsize=9)
    for ax, (name, d) in zip(axes[0, 1:], diffs.items()):
        images.append(ax.imshow(d["diff"], cmap=cmap, vmin=-limit, vmax=limit))
        ax.set_title(f"{name} − {teacher}\nMAD {d['mad']:.4f}", fontsize=9)
    for ax, image in zip(axes[0], images):
        if q <= 30:
            ax.set_xticks(range(q))
            ax.set_yticks(range(q))
            ax.set_xticklabels(classes, rotation=90, fontsize=6)
            ax.set_yticklabels(classes, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(analysis: Analysis, out: Path) -> dict:
    """Write correlation.png and correlation.json; return {student: MAD, ...} and details."""
    out.mkdir(parents=True, exist_ok=True)
    # float64 probabilities from the logits (less saturation than the float32 scores).
    corr = {name: prediction_correlation(probabilities64(analysis.outputs(name)["logits"])) for name in analysis.names}
    teacher = analysis.teacher
    diffs = {name: correlation_difference(corr[name], corr[teacher]) for name in analysis.students()}
    heatmaps(corr[teacher], diffs, analysis.classes, teacher, out / "correlation.png")
    constant = {name: [analysis.classes[k] for k in np.where(np.isnan(np.diag(c)))[0]] for name, c in corr.items()}
    summary = {
        "analysis": "correlation",
        "teacher": teacher,
        "num_images": int(len(analysis.targets())),
        "mad": {name: d["mad"] for name, d in diffs.items()},
        "excluded_pairs": {name: d["excluded_pairs"] for name, d in diffs.items()},
        "pairs": len(analysis.classes) * (len(analysis.classes) - 1) // 2,
        "constant_classes": {name: c for name, c in constant.items() if c},
        "files": [str(out / "correlation.png")],
    }
    write_json(summary, out / "correlation.json")
    return summary
