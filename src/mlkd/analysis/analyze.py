"""``analyze``: run named analyses on a set of checkpoints, sharing one forward pass per model.

Each analysis writes its files (PNG, Markdown/CSV, JSON) into ``out`` and returns a summary
dict of its numbers; see ``per_class``, ``correlation``, ``retrieval`` and ``attention``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from mlkd.analysis import attention, correlation, per_class, retrieval
from mlkd.analysis.common import open_analysis
from mlkd.errors import ConfigError

ANALYSES = {
    "per-class": per_class.run,
    "correlation": correlation.run,
    "retrieval": retrieval.run,
    "attention": attention.run,
}


def analyze(
    which: Sequence[str],
    specs: Sequence[str],
    out: str | Path,
    config: Optional[str] = None,
    device: str = "auto",
    limit: Optional[int] = None,
    teacher: Optional[str] = None,
    baseline: Optional[str] = None,
    batch_size: Optional[int] = None,
    options: Optional[dict[str, dict[str, Any]]] = None,
) -> dict[str, dict]:
    """Run the analyses ``which`` (names of :data:`ANALYSES`, or ``all``) on the checkpoints
    ``specs`` (``[NAME=]PATH``); ``options[name]`` holds keyword arguments of that analysis.
    Returns {analysis name: summary}."""
    names = list(ANALYSES) if list(which) == ["all"] else list(which)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise ConfigError(f"analyze: unknown analysis {unknown}; choose from {list(ANALYSES)} or all")
    analysis = open_analysis(
        specs, config=config, device=device, limit=limit, teacher=teacher, baseline=baseline, batch_size=batch_size
    )
    out = Path(out)
    options = options or {}
    # Retrieval first: its forward pass also keeps the logits the others need, and it frees each
    # model's label-wise embeddings once used (one pass per model, not two).
    order = sorted(names, key=lambda n: n != "retrieval")
    results = {name: ANALYSES[name](analysis, out, **options.get(name, {})) for name in order}
    return {name: results[name] for name in names}
