#!/bin/sh
# One worker of a grid shared by several processes (run-folder locks keep them apart):
# sweeps until no run of the grid is left to train, waiting while others hold the blockers.
#   scripts/sweep_worker.sh configs/scenes_table1.yaml [key=value ...]
# Environment: MLKD (default: .venv/bin/mlkd), SWEEP_WAIT seconds between passes (default 30).
grid="$1"; shift
mlkd="${MLKD:-.venv/bin/mlkd}"
left() {  # the runs still to train ($1: todo|partial, plus |busy to count others' runs too)
    plan=$("$mlkd" sweep "$grid" --dry-run "$@" 2>&1) || { echo "$plan" >&2; exit 2; }
    echo "$plan" | grep -Ec "^[0-9]+ +($statuses)"
}
while :; do
    statuses="todo|partial"
    [ "$(left "$@")" -gt 0 ] || break
    "$mlkd" sweep "$grid" --keep-going "$@" || true
    [ "$(left "$@")" -gt 0 ] || break
    sleep "${SWEEP_WAIT:-30}"
done
