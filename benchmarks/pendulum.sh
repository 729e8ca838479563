#!/bin/bash
# The Pendulum-v1 results of RESULTS.md ("Continuous actions: DITTO on Pendulum-v1 from pixels"
# and its subsections), end to end: data, world model, every agent cell scored under the
# protocol, then each setting aggregated over its seeds. Prints each run's time.
#
#   bash benchmarks/pendulum.sh [OUT]          # OUT defaults to runs/pendulum
#   JOBS=2 bash benchmarks/pendulum.sh         # agent cells two at a time (as RESULTS ran them)
#   QUICK=1 bash benchmarks/pendulum.sh /tmp/p # debug sizes: a smoke test of this script
#   WM_SEED=1 NAMES="ditto dbc" SEEDS=0 bash benchmarks/pendulum.sh
#       # another world-model seed (OUT/wm_seed1, agents in OUT/agents_wm1), some cells only
#
# Finished stages are skipped, so an interrupted run continues where it stopped.
set -euo pipefail
OUT=${1:-runs/pendulum}
DITTO=${DITTO:-.venv/bin/ditto}
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-1}
export OMP_NUM_THREADS=1
if [ "${QUICK:-0}" = 1 ]; then
  EPISODES=(4 4 4) WM=(--preset debug --steps 20) STEPS=4 EVAL=(--checkpoints 2 --episodes 2 --num-envs 2)
  AGENT=(--preset debug --set checkpoint_every=2) BC=(--preset debug --set checkpoint_every=2)
  DEFAULT_SEEDS="0 1"
else
  EPISODES=(20 60 20) WM=(--preset small --steps 6000 --batch 8 --set lr=1e-3 eval_every=1000 checkpoint_every=1000)
  STEPS=6000 EVAL=(--checkpoints 10 --episodes 20 --num-envs 10)
  AGENT=(--lr 1e-4 --batch 128 --set layers=3 units=128 checkpoint_every=100)
  BC=(--set batch=64 bc_cnn_depth=16 checkpoint_every=100)
  DEFAULT_SEEDS="0 1 2"
fi

read -r -a SEEDS <<< "${SEEDS:-$DEFAULT_SEEDS}"
read -r -a NAMES <<< "${NAMES:-ditto dgail dbc bc ditto_nearest ditto_h5}"
WM_SEED=${WM_SEED:-0}
if [ "$WM_SEED" = 0 ]; then WM_DIR=$OUT/wm AGENTS=$OUT/agents; else WM_DIR=$OUT/wm_seed$WM_SEED AGENTS=$OUT/agents_wm$WM_SEED; fi

source "$(dirname "$0")/timed.sh"

mkdir -p "$AGENTS"
timed "$DITTO" collect --env Pendulum-v1 --expert scripted --episodes "${EPISODES[0]}" --out "$OUT/data/expert" --seed 0
timed "$DITTO" collect --env Pendulum-v1 --expert scripted --episodes "${EPISODES[1]}" --epsilon 0.5 --out "$OUT/data/noisy" --seed 1000
timed "$DITTO" collect --env Pendulum-v1 --expert random --episodes "${EPISODES[2]}" --out "$OUT/data/random" --seed 2000
if [ -f "$WM_DIR/checkpoint.safetensors" ]; then WM_FLAGS=(--resume); else WM_FLAGS=(); fi
timed "$DITTO" train-world-model --data "$OUT/data/expert" "$OUT/data/noisy" "$OUT/data/random" --out "$WM_DIR" \
  "${WM[@]}" --seed "$WM_SEED" --device cpu "${WM_FLAGS[@]}"

# One agent cell: NAME SEED, trained and scored unless its eval.json exists.
cell() {
  local name=$1 seed=$2 run="$AGENTS/$1-ne4-seed$2" algo flags=()
  [ -f "$run/eval.json" ] && return
  case $name in
    bc) algo=bc; flags=("${BC[@]}") ;;
    *) algo=${name%%_*}; flags=("${AGENT[@]}" --world-model "$WM_DIR") ;;  # ditto_h5 -> ditto
  esac
  case $name in
    ditto_nearest) flags+=(--reward-match nearest) ;;
    ditto_h5) flags+=(--horizon 5) ;;
  esac
  [ -f "$run/checkpoint.safetensors" ] && flags+=(--resume)
  timed "$DITTO" train --algo "$algo" --expert-data "$OUT/data/expert" --expert-episodes 4 --out "$run" \
    --steps "$STEPS" --seed "$seed" --device cpu "${flags[@]}" > /dev/null
  timed "$DITTO" evaluate "$run" "${EVAL[@]}" --save > /dev/null
}
export -f cell timed
export OUT DITTO STEPS AGENTS WM_DIR
export AGENT_ARGS="${AGENT[*]}" BC_ARGS="${BC[*]}" EVAL_ARGS="${EVAL[*]}"

for name in "${NAMES[@]}"; do for seed in "${SEEDS[@]}"; do echo "$name $seed"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; AGENT=($AGENT_ARGS); BC=($BC_ARGS); EVAL=($EVAL_ARGS); cell "$0" "$1"'

for name in "${NAMES[@]}"; do
  echo "== $name"
  "$PY" benchmarks/aggregate_runs.py $(for seed in "${SEEDS[@]}"; do echo "$AGENTS/$name-ne4-seed$seed"; done) | tail -1
done
