#!/bin/sh
# One worker of a grid shared by several processes (run-folder locks keep them apart):
# sweeps until no run of the grid is left to train, waiting while others hold the blockers.
#   scripts/sweep_worker.sh configs/scenes_table1.yaml [key=value ...]
# Environment: MLKD (default: .venv/bin/mlkd), SWEEP_WAIT seconds between passes (default 30).
grid="$1"; shift
mlkd="${MLKD:-.venv/bin/mlkd}"
while "$mlkd" sweep "$grid" --dry-run "$@" | grep -Eq '^[0-9]+ +(todo|partial|busy)'; do
    "$mlkd" sweep "$grid" --keep-going "$@" || true
    "$mlkd" sweep "$grid" --dry-run "$@" | grep -Eq '^[0-9]+ +(todo|partial)' || break
    sleep "${SWEEP_WAIT:-30}"
done
