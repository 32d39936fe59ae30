#!/usr/bin/env bash
# The paper's official recipe at paper scale on coco_scenes, as one command for one GPU
# (NVIDIA H100, 16 CPU cores, no network): Teacher (EfficientNet-Lite2, BCE), then Student
# (Lite0, BCE), MLD and L2D, one seed, through `mlkd sweep` on configs/study/paper_scenes.yaml
# (configs/recipes/official.yaml: 224 px, label-wise head D 768 / FFN 2048 / 8 heads, lr 1e-4,
# Adam + L2 1e-4, OneCycle pct 0.2, summed BCE, Cutout + RandAugment, λ MLD 10 / CD 100 /
# ID 1000, ImageNet-pretrained EfficientNet-Lite), bf16 autocast, term diagnostics every 20 steps.
# It draws 10,000 test scenes and a training prefix in parallel, times the loader and the
# training steps of every run, sizes the training scenes (>= 20,000) and the epochs so that the
# whole command ends within 9 minutes, prints that sizing, draws the training split, trains,
# sizes the students again from the teacher's measured time, and prints the table (mAP, OF1,
# CF1 at thr@0.5), each student's final-epoch gradient ratios of MLD / CD / ID to BCE and its
# label-embedding geometry. The scenes are synthetic art (COCO 2014's real label sets drawn as
# emoji). The test split is evaluated once, after the last epoch: this is a one-shot report,
# nothing is chosen on it, so no validation holdout is needed.
# Written under $OUT: paper_scenes.md (table), paper_scenes.json (summary), sizing.json,
# runs/<row>/{metrics.jsonl,config.yaml,experiment.json}, log.txt. Checkpoints and scenes stay
# in /tmp/mlkd-paper-scenes.
#
# 1. Prepare once on the CPU machine, in the repo root (writes .whl/ and .device_pack/, both
#    ignored through .git/info/exclude; together < 64 MiB, checked):
#      PYTHON=/path/to/venv/bin/python bash scripts/device_paper_scenes.sh --prepare
#    .device_pack holds the glyph pack (every emoji sprite the scenes paste, pre-rendered from
#    OpenMoji and Noto Color Emoji) and the two weight packages (fp32, as installed).
# 2. Run it with the device tool:
#      run(command="bash scripts/device_paper_scenes.sh", carry=[".whl", ".device_pack"], timeout_s=590)
# Here, on CPU, `bash scripts/device_paper_scenes.sh --smoke` runs the same code at toy size
# (a throw-away pack, 32 px, a few dozen scenes, fp32) in well under a minute.
set -euo pipefail
started=$(date +%s.%N)
mode=${1:-run}
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
base_path=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

download=(-m pip download -q --no-deps --only-binary=:all: --implementation cp
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

case "$mode" in
--prepare)
    exclude=$(git rev-parse --git-common-dir)/info/exclude
    for p in /.whl/ /.device_pack/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"; done
    PYTHONPATH=$base_path "$PY" -m mlkd.reproduce.paper_scenes prepare --pack .device_pack
    # pydantic for the device's CPython 3.12 in .whl (as scripts/device_check.sh); in the pack,
    # pydantic-core for 3.10, 3.11 and 3.13 in case the device's Python is another one, and the
    # typing-extensions pydantic needs (>= 4.16), in case the device's is older
    ls .whl/pydantic-*.whl >/dev/null 2>&1 || "$PY" "${download[@]}" --python-version 3.12 -d .whl \
        pydantic pydantic-core annotated-types typing-inspection
    for v in 3.10 3.11 3.13; do
        "$PY" "${download[@]}" --python-version "$v" -d .device_pack/wheels pydantic-core
    done
    "$PY" "${download[@]}" --python-version 3.12 -d .device_pack/wheels typing-extensions
    bytes=$(du -sb .whl .device_pack | awk '{s += $1} END {print s}')
    echo "carry: .whl + .device_pack = $bytes bytes ($((bytes / 1048576)) MiB; the limit is 64 MiB)"
    [ "$bytes" -lt 67108864 ] || { echo "error: over the device tool's 64 MiB carry limit" >&2; exit 1; }
    ;;
--smoke)
    work=$(mktemp -d /tmp/mlkd-paper-scenes-smoke.XXXXXX)
    out=${OUT:-$work/out}
    PYTHONPATH=$base_path "$PY" -m mlkd.reproduce.paper_scenes prepare --pack "$work/pack"
    PYTHONPATH=$work/pack/site:$base_path "$PY" -m mlkd.reproduce.paper_scenes run --smoke \
        --pack "$work/pack" --out "$out" --work "$work" --started-at "$started" 2>&1 | tee "$work/log.txt"
    mv "$work/log.txt" "$out/log.txt"
    rm -rf "$work/pack" "$work/scenes" "$work"/runs-*
    if [ -n "${OUT:-}" ]; then rmdir "$work"; else echo "smoke output in $out"; fi
    ;;
run)
    out=${OUT:-/tmp/mlkd-paper-scenes/out}
    mkdir -p "$out"
    [ -f .device_pack/manifest.json ] || {
        echo "error: no .device_pack here: run 'bash scripts/device_paper_scenes.sh --prepare' on the CPU" \
             "machine and carry .whl and .device_pack" >&2; exit 1; }
    site=/tmp/mlkd-site
    if ! "$PY" -c "import pydantic" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" \
            --find-links .whl --find-links .device_pack/wheels \
            pydantic pydantic-core annotated-types typing-inspection typing-extensions
        base_path=$base_path:$site
    fi
    { command -v nvidia-smi >/dev/null && nvidia-smi -L || true; } 2>&1 | tee "$out/machine.txt"
    PYTHONPATH=$PWD/.device_pack/site:$base_path "$PY" -m mlkd.reproduce.paper_scenes run \
        --pack .device_pack --out "$out" --started-at "$started" 2>&1 | tee "$out/log.txt"
    ;;
*)
    echo "usage: bash scripts/device_paper_scenes.sh [--prepare | --smoke]" >&2; exit 2 ;;
esac
