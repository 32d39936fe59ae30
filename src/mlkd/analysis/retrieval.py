"""k-nearest-neighbour image retrieval with multi-label relevance (the paper's
retrieval figure).

Protocol (our choice; the paper's figure is qualitative):

- Queries are the test images; the gallery is the rest of the test set (leave-one-out: a
  query never retrieves itself). The train split is not used, so no extra forward pass over it
  is needed and the numbers depend on the test split only.
- Similarity is cosine: every vector is L2-normalised, then ranked by dot product. Two
  representations per model: ``pooled`` (the backbone's global-average-pooled feature [F])
  and ``label_embeddings`` (the q label-wise embeddings concatenated to [q*D] and normalised
  as a whole, so the similarity is the norm-weighted mean of the per-label cosines; the
  head's LayerNorm gives every label embedding a similar norm).
- A gallery item is relevant to a query when they share at least one label.
- P@k = (relevant items among the top k) / k.
  AP@k = sum_{i<=k} P@i * rel_i / (relevant items among the top k), and 0 when there is none
  (the convention of multi-label hashing / retrieval papers, e.g. mAP@5000 on NUS-WIDE).
  mAP@k and P@k are means over the queries that have at least one label (queries without a
  label can have no relevant item; they are left out and counted).
- Ranking: ``torch.topk`` on the similarities; exactly tied similarities are ordered as it
  returns them. Memory: queries are processed in chunks so that a chunk's similarity block
  holds at most ``max_block`` floats (default 2**25, 128 MiB), whatever the test-set size;
  the label-wise embeddings of one model at a time are held (N x q*D floats, plus their
  normalised copy: about 2 x 9.8 GB for COCO's 40,137 test images at q=80, D=768), so use
  ``--limit`` for very large test sets; the pooled features of every model stay cached.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from mlkd.analysis.common import Analysis, pyplot, write_json
from mlkd.errors import ConfigError

REPRESENTATIONS = ("pooled", "label_embeddings")


def normalize_rows(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[N,d] -> [N,d] float32 rows of unit L2 norm (a zero row stays zero)."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    return torch.nn.functional.normalize(x.reshape(len(x), -1), dim=1)


def knn(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, leave_one_out: bool = True, max_block: int = 2**25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k gallery items by dot product, in chunks of queries.

    queries [Nq,d], gallery [Ng,d] (already normalised for cosine). With ``leave_one_out``
    query i is gallery item i (Nq == Ng) and never retrieved. Returns (indices [Nq,k] long,
    similarities [Nq,k]), best first.
    """
    nq, ng = len(queries), len(gallery)
    if leave_one_out and nq != ng:
        raise ValueError("leave_one_out needs the queries to be the gallery (same length)")
    available = ng - 1 if leave_one_out else ng
    if not 1 <= k <= available:
        raise ConfigError(
            f"retrieval: k={k} needs 1 <= k <= {available} gallery items; lower --k or use more test images"
        )
    chunk = max(1, min(nq, max_block // max(1, ng)))
    indices, sims = [], []
    for start in range(0, nq, chunk):
        block = queries[start : start + chunk] @ gallery.T  # [c, Ng]
        if leave_one_out:
            rows = torch.arange(len(block))
            block[rows, rows + start] = -math.inf
        top = torch.topk(block, k, dim=1)
        indices.append(top.indices)
        sims.append(top.values)
    return torch.cat(indices), torch.cat(sims)


def relevance(top: torch.Tensor | np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """[Nq,k] bool: does retrieved item top[i,j] share >= 1 label with query i?
    ``query_labels [Nq,q]``, ``gallery_labels [Ng,q]`` (0/1)."""
    top = np.asarray(top)
    g = np.asarray(gallery_labels, dtype=bool)[top]  # [Nq,k,q]
    return (g & np.asarray(query_labels, dtype=bool)[:, None, :]).any(axis=2)


def retrieval_metrics(rel: np.ndarray, ks: Sequence[int], valid: Optional[np.ndarray] = None) -> dict[str, float]:
    """{"mAP@k", "P@k" for k in ks} (fractions) from ``rel [Nq,K]`` (K >= max ks), over the
    queries where ``valid [Nq]`` (default all)."""
    rel = np.asarray(rel, dtype=np.float64)
    if valid is not None:
        rel = rel[np.asarray(valid, dtype=bool)]
    out: dict[str, float] = {}
    for k in ks:
        r = rel[:, :k]
        hits = r.cumsum(axis=1)
        precision_at = hits / np.arange(1, k + 1)
        found = hits[:, -1] if len(r) else np.zeros(0)
        ap = np.divide((precision_at * r).sum(axis=1), found, out=np.zeros(len(r)), where=found > 0)
        out[f"mAP@{k}"] = float(ap.mean()) if len(r) else math.nan
        out[f"P@{k}"] = float((found / k).mean()) if len(r) else math.nan
    return out


def representation(outputs: dict, name: str) -> Optional[np.ndarray]:
    """[N,d] features of one representation (None when the model has none, e.g. a linear head)."""
    x = outputs.get(name)
    return None if x is None else x.reshape(len(x), -1)


def grid_figure(
    analysis: Analysis, rep: str, queries: list[int], tops: dict[str, np.ndarray], path: Path, shown: int = 5
) -> None:
    """Rows = (query, model); columns = the query then its top ``shown`` items. Each retrieved
    image is framed green when it shares a label with the query (red otherwise) and captioned
    with its labels, the shared ones marked with '*'."""
    plt = pyplot()
    classes, targets = analysis.classes, analysis.targets().astype(bool)
    names = list(tops)
    rows = len(queries) * len(names)
    fig, axes = plt.subplots(rows, shown + 1, figsize=(1.55 * (shown + 1), 1.75 * rows), squeeze=False)

    def caption(labels: np.ndarray, query_labels: np.ndarray) -> str:
        present = np.where(labels)[0]
        shared_first = sorted(present, key=lambda c: not query_labels[c])  # shared labels first
        parts = [("*" if query_labels[c] else "") + classes[c] for c in shared_first]
        text = ",".join(parts) or "-"
        return text if len(text) <= 24 else text[:22] + ".."

    for qi, query in enumerate(queries):
        for mi, name in enumerate(names):
            row = axes[qi * len(names) + mi]
            row[0].imshow(analysis.image(query))
            row[0].set_title(caption(targets[query], targets[query]).replace("*", ""), fontsize=6)
            row[0].set_ylabel(name, fontsize=7)
            for j in range(shown):
                item = int(tops[name][query, j])
                shared = bool((targets[item] & targets[query]).any())
                ax = row[j + 1]
                ax.imshow(analysis.image(item))
                ax.set_title(caption(targets[item], targets[query]), fontsize=6, color="green" if shared else "red")
                for spine in ax.spines.values():
                    spine.set_edgecolor("green" if shared else "red")
                    spine.set_linewidth(2.5)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(f"Top-{shown} retrieval ({rep}, cosine); * = label shared with the query", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(results: dict[str, dict[str, dict[str, float]]], ks: Sequence[int]) -> str:
    cols = [f"{m}@{k}" for k in ks for m in ("mAP", "P")]
    lines = ["| model | representation | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, reps in results.items():
        for rep, metrics in reps.items():
            lines.append(f"| {name} | {rep} | " + " | ".join(f"{100 * metrics[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines)


def run(
    analysis: Analysis,
    out: Path,
    ks: Sequence[int] = (5, 10),
    queries: Optional[list[int]] = None,
    shown: int = 5,
    max_block: int = 2**25,
) -> dict:
    """Write retrieval.md/.json and retrieval_<representation>.png; return the numbers (%)."""
    out.mkdir(parents=True, exist_ok=True)
    ks = sorted(set(int(k) for k in ks))
    depth = max(max(ks), shown)
    targets = analysis.outputs(analysis.names[0], embeddings=True)["targets"]  # one pass, embeddings included
    valid = targets.any(axis=1)
    n = len(targets)
    queries = queries if queries is not None else [int(i) for i in np.where(valid)[0][:2]]
    bad = [i for i in queries if not 0 <= i < n]
    if bad:
        raise ConfigError(f"retrieval: query positions {bad} are outside the test split (0..{n - 1})")
    results: dict[str, dict[str, dict[str, float]]] = {}
    tops: dict[str, dict[str, np.ndarray]] = {rep: {} for rep in REPRESENTATIONS}
    for name in analysis.names:
        outputs = analysis.outputs(name, embeddings=True)
        results[name] = {}
        for rep in REPRESENTATIONS:
            feats = representation(outputs, rep)
            if feats is None:
                continue
            x = normalize_rows(feats).to(analysis.device)
            top, _ = knn(x, x, depth, leave_one_out=True, max_block=max_block)
            top = top.cpu().numpy()
            metrics = retrieval_metrics(relevance(top, targets, targets), ks, valid)
            results[name][rep] = {key: 100.0 * value for key, value in metrics.items()}
            tops[rep][name] = top
            del x
        analysis.release(name, "label_embeddings")  # keep one model's embeddings in memory at a time
    files = []
    for rep, by_model in tops.items():
        if by_model and queries:
            path = out / f"retrieval_{rep}.png"
            grid_figure(analysis, rep, queries, by_model, path, shown)
            files.append(str(path))
    (out / "retrieval.md").write_text(
        markdown(
            {m: {r: {k: v / 100 for k, v in d.items()} for r, d in reps.items()} for m, reps in results.items()}, ks
        )
        + "\n"
    )
    summary = {
        "analysis": "retrieval",
        "protocol": "leave-one-out on the test split, cosine, relevant = shares >= 1 label",
        "num_images": n,
        "queries_without_label": int((~valid).sum()),
        "shown_queries": queries,
        "metrics": results,
        "files": files + [str(out / "retrieval.md")],
    }
    write_json(summary, out / "retrieval.json")
    return summary
