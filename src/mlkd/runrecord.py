"""A run folder's record: ``metrics.jsonl`` (one JSON object per epoch) and ``experiment.json``.

``fit`` rewrites ``metrics.jsonl`` atomically from the run's history after each epoch. A record
is ``{"epoch": e, "train": {...}, "data": {split: counts}}``, plus ``"eval"`` ({protocol:
metrics}, or {"error": message} for a diverged model) on evaluated epochs. A run is finished
when its last record is the config's final epoch and has an evaluation. ``experiment.json``
(written by ``mlkd sweep``) holds a run's place in a grid (role, models, method, label, seed).
This module imports nothing of mlkd's but the config's final-epoch rule, so that the engine,
``mlkd.reproduce`` and ``mlkd.analysis`` can all read run folders through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from mlkd.config import final_epoch_of

METRICS_FILE = "metrics.jsonl"
EXPERIMENT_FILE = "experiment.json"


def epoch_records(run_dir: str | Path) -> list[dict]:
    """Every record of ``run_dir/metrics.jsonl``, oldest first (empty when the file is absent)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def final_epoch(config: Mapping[str, Any]) -> int:
    """The epoch a run ends at, from a raw config dict (a saved ``config.yaml``); the rule of
    ``OptimConfig.final_epoch`` (``optim.epochs`` absent counts as 0)."""
    optim = config.get("optim") or {}
    return final_epoch_of(optim.get("epochs", 0), optim.get("stop_epoch"))


@dataclass(frozen=True)
class RunRecord:
    """One line of ``metrics.jsonl``; ``fields`` is the plain dict as written."""

    fields: dict

    @property
    def epoch(self) -> Optional[int]:
        return self.fields.get("epoch")

    @property
    def eval(self) -> Optional[dict]:
        return self.fields.get("eval")

    def finished(self, final: int) -> bool:
        """Whether this record ends a run whose final epoch is ``final``: that epoch, evaluated."""
        return self.epoch == final and bool(self.eval)

    @classmethod
    def last(cls, run_dir: str | Path) -> Optional[RunRecord]:
        """The last record of ``run_dir/metrics.jsonl`` (None when absent or empty)."""
        path = Path(run_dir) / METRICS_FILE
        if not path.is_file():
            return None
        last = None
        with open(path) as handle:
            for line in handle:
                if line.strip():
                    last = line
        return cls(json.loads(last)) if last else None
