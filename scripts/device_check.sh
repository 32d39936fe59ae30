#!/usr/bin/env bash
# mlkd's GPU checks as one prepared command (for a session lent the `device` machine; CI never
# runs this). What it measures, each as a Markdown table + JSON under $OUT:
#   hostsync  train_step of every method under torch.cuda.set_sync_debug_mode("error")
#   step      step time per method as ratios to the BCE-only step (bf16 autocast)
#   memory    resident and per-step peak GPU memory per method
#   losses    CD+ID (led_loss) vs its loop oracle on the GPU
#   eval      evaluation throughput, NCHW vs channels_last
# The H200 image has python3 with torch, timm, scikit-learn, PyYAML, Pillow, safetensors, tqdm,
# matplotlib; it lacks pydantic. Prepare once on the CPU machine, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic pydantic-core annotated-types typing-inspection
# then call the device tool: run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=540)
# Here, on CPU, `DEVICE=cpu QUICK=1 bash scripts/device_check.sh` runs the same commands small.
set -uo pipefail
DEVICE=${DEVICE:-cuda}
out=${OUT:-/tmp/mlkd-device-check}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlkd-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/mlkd-site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ "${QUICK:-0}" = 1 ]; then
    step_args=(--teacher tiny --student tiny --img-size 32 --batch-size 8 --classes 6)
    repeats=(--repeats 1 --warmup 0); eval_args=(--models tiny --img-size 32 --num-images 16 --repeats 1)
    loss_args=(--repeats 1)
else
    step_args=(); repeats=(--repeats 11); eval_args=(); loss_args=(--repeats 9)
fi
amp=(--amp bf16); [ "$DEVICE" = cpu ] && amp=(--amp off)
status=0
run() { echo "== $*"; "$PY" -m mlkd.bench "$@" || status=1; }
{ command -v nvidia-smi >/dev/null && nvidia-smi -L; "$PY" -c "import torch; print('torch', torch.__version__)"; } \
    2>&1 | tee "$out/machine.txt"
run hostsync --device "$DEVICE" "${amp[@]}" "${step_args[@]}" --json "$out/hostsync.json" | tee "$out/hostsync.md"
run step --device "$DEVICE" "${amp[@]}" "${step_args[@]}" "${repeats[@]}" --json "$out/step.json" | tee "$out/step.md"
run memory --device "$DEVICE" "${amp[@]}" "${step_args[@]}" --json "$out/memory.json" | tee "$out/memory.md"
run losses --device "$DEVICE" "${loss_args[@]}" --json "$out/losses.json" | tee "$out/losses.md"
run eval --device "$DEVICE" "${amp[@]}" "${eval_args[@]}" --json "$out/eval.json" | tee "$out/eval.md"
exit $status
