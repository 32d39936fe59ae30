"""Whether two run trees hold the same metrics, bit for bit.

For every run folder under A that has a metrics.jsonl, the folder at the same relative path
under B must have one whose epoch records carry equal ``eval`` entries (every protocol, every
metric, compared as the floats written) and equal training losses (those both record). Prints one line per run and
exits 1 on any difference or missing run.

    python scripts/same_metrics.py runs/old runs/new
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TIMING = ("seconds", "images_per_s")


def compared(record: dict, keys: set[str]) -> dict:
    """The parts of an epoch record that depend on the training numerics only: the epoch, its
    evaluation and the training losses named in ``keys`` (those both versions record)."""
    train = {k: v for k, v in (record.get("train") or {}).items() if k in keys}
    return {"epoch": record.get("epoch"), "train": train, "eval": record.get("eval")}


def train_keys(*runs: list[dict]) -> set[str]:
    """The training-loss keys every record of every run has (timing left out)."""
    sets = [set(r.get("train") or {}) for run in runs for r in run]
    return set.intersection(*sets) - set(TIMING) if sets else set()


def main(a: str, b: str) -> int:
    root_a, root_b = Path(a), Path(b)
    runs = sorted(p.parent.relative_to(root_a) for p in root_a.rglob("metrics.jsonl"))
    if not runs:
        print(f"no metrics.jsonl under {root_a}")
        return 1
    failed = 0
    for run in runs:
        other = root_b / run / "metrics.jsonl"
        if not other.is_file():
            print(f"MISSING   {run}: no {other}")
            failed += 1
            continue
        left, right = records(root_a / run / "metrics.jsonl"), records(other)
        keys = train_keys(left, right)
        same = [compared(r, keys) for r in left] == [compared(r, keys) for r in right]
        failed += not same
        print(f"{'identical' if same else 'DIFFERENT'} {run} ({len(left)} epoch records)")
    print(f"{len(runs) - failed} of {len(runs)} runs bit-identical")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
