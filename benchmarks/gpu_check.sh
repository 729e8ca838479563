#!/usr/bin/env bash
# The GPU checks of issues 3 and 4, as one short run on the device machine (one H100/H200,
# PyTorch preinstalled, no internet). Prepare here, then run there with .whl carried:
#   bash benchmarks/gpu_wheels.sh                      # here: gymnasium + ale-py wheels
#   bash benchmarks/gpu_check.sh [tests] [bench] [pong]   # there (default: tests bench)
# "tests bench" ends within 10 minutes (one device command); "pong" (within 6) is worth
# a second command only where device time is left. Everything goes to $OUT (default
# runs/gpu_check): log.txt, the benchmarks' JSON lines, the Pong run's metrics, GIF, score.
# Each stage has a time limit, and at its limit gets Ctrl-C (SIGINT): a trainer then saves
# its checkpoint and stops, pytest prints its summary, a benchmark keeps its finished modes.
# The exit status is the last failed stage's (0 when all passed).
# A dry run of the script itself on a CPU: DEVICE=cpu QUICK=1 PYTHON=.venv/bin/python bash ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ "${QUICK:-0}" = 1 ]; then  # the debug preset, one timed step: checks the script, not speed
    wm_presets=debug img_presets=debug timing="--steps 1 --warmup 1"
    pong_preset=debug wm_steps=20 agent_steps=20
else
    wm_presets=paper img_presets="small paper" timing="--steps 10 --warmup 3"
    pong_preset=paper wm_steps=1000 agent_steps=500
fi
failed=0

stage() {  # stage NAME SECONDS [--to FILE] COMMAND...: run under a time limit, stdout also to FILE
    local name=$1 limit=$2 start=$SECONDS to=/dev/null rc
    shift 2
    if [ "$1" = --to ]; then
        to=$2
        shift 2
    fi
    echo "=== $name (limit ${limit}s): $*" >&2
    timeout -s INT -k 10 "$limit" "$@" | tee "$to"
    rc=${PIPESTATUS[0]}
    echo "=== $name: rc=$rc in $((SECONDS - start))s" >&2
    [ "$rc" = 0 ] || failed=$rc
}

main() {
    date -u
    nvidia-smi -L 2>/dev/null
    if [ -d .whl ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/ditto-site .whl/*.whl || return 1
        export PYTHONPATH=/tmp/ditto-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DITTO_TEST_DEVICE=$DEVICE
    export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS (before its first use), for resume
    # Everything ditto imports, or a one-line reason to stop here.
    "$PY" -c "import cv2, PIL, gymnasium, ale_py, safetensors, tqdm, torch, ditto
print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.is_available() and torch.cuda.get_device_name(), '| ditto', ditto.__version__)" ||
        return 1

    if [[ " $stages " == *" tests "* ]]; then
        # test_device.py runs on $DEVICE; the others on "auto", which is cuda on a GPU machine.
        stage tests 150 "$PY" -m pytest -q -p no:cacheprovider -ra \
            tests/test_device.py tests/test_world_model.py tests/test_agents.py
    fi
    if [[ " $stages " == *" bench "* ]]; then
        # Each result is a JSON line written as its mode finishes, so a stage cut short by
        # its limit keeps the modes it finished.
        stage bench-world-model 210 --to "$OUT/bench_world_model.jsonl" \
            "$PY" -m ditto bench world-model --preset $wm_presets --device "$DEVICE" \
            --modes fp32 bf16 bf16+compile bf16+compile+graphs $timing --json
        stage bench-imagination 100 --to "$OUT/bench_imagination.jsonl" \
            "$PY" -m ditto bench imagination --preset $img_presets --device "$DEVICE" \
            --modes fp32 bf16 bf16+compile $timing --json
    fi
    if [[ " $stages " == *" pong "* ]]; then
        # End to end on the device, briefly: scripted Pong data (expert and noisy), the world
        # model at the preset's sizes for up to 1000 steps, DITTO on it, scored in the real env.
        local work=${WORK:-/tmp/ditto-pong}
        local ditto=("$PY" -m ditto)
        rm -rf "$work"  # a second run starts afresh rather than finding finished runs
        stage pong-collect 45 "${ditto[@]}" collect --env ALE/Pong-v5 --expert scripted \
            --episodes 6 --out "$work/expert"
        stage pong-collect-noisy 45 "${ditto[@]}" collect --env ALE/Pong-v5 --expert scripted \
            --epsilon 0.5 --episodes 6 --seed 100 --out "$work/noisy"
        stage pong-world-model 120 "${ditto[@]}" train-world-model --data "$work/expert" \
            "$work/noisy" --out "$work/wm" --preset $pong_preset --steps $wm_steps \
            --device "$DEVICE" --set eval_every=250 checkpoint_every=250
        stage pong-ditto 60 "${ditto[@]}" train --algo ditto --world-model "$work/wm" \
            --expert-data "$work/expert" --expert-episodes 4 --out "$work/ditto" \
            --preset $pong_preset --steps $agent_steps --device "$DEVICE" --set checkpoint_every=100
        stage pong-evaluate 60 --to "$OUT/pong_eval.json" "${ditto[@]}" evaluate "$work/ditto" \
            --checkpoints 2 --episodes 4 --device "$DEVICE" --json
        cp "$work/wm/metrics.jsonl" "$OUT/pong_world_model_metrics.jsonl"
        cp "$work/wm/diagnostics/open_loop.gif" "$OUT/pong_open_loop.gif"
    fi
    return "$failed"
}

stages=" ${*:-tests bench} "
main 2>&1 | tee -a "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
