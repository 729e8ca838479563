#!/bin/bash
# One MinAtar game end to end (the fast Atari tier): data from the scripted expert, a world
# model, then DITTO, D-BC, D-GAIL and pixel BC at each N_E and seed, every cell scored under
# the paper's protocol with sticky actions (MinAtar's 0.1), then aggregated over its seeds.
# Prints each stage's time.
#
#   bash benchmarks/minatar.sh Breakout [OUT]        # OUT defaults to runs/minatar/<game>
#   STAGE=data bash benchmarks/minatar.sh Breakout   # stop after the data (or: wm)
#   NAMES="ditto dbc" NE="4 15" SEEDS="0 1" bash benchmarks/minatar.sh Breakout
#   WM_STEPS=14000 bash benchmarks/minatar.sh Breakout  # a longer world model (default 6000;
#                                                      # a finished one is trained further)
#   QUICK=1 bash benchmarks/minatar.sh Breakout /tmp/m  # debug sizes: a smoke test of this script
#
# Finished stages are skipped, so an interrupted run continues where it stopped.
set -euo pipefail
GAME=${1:?usage: minatar.sh GAME [OUT]}
OUT=${2:-runs/minatar/$(echo "$GAME" | tr '[:upper:]' '[:lower:]')}
ENV=MinAtar/$GAME-v1
DITTO=${DITTO:-.venv/bin/ditto}
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-1}
export OMP_NUM_THREADS=1
if [ "${QUICK:-0}" = 1 ]; then
  EPISODES=(6 4 4) WM=(--preset debug --steps 20) STEPS=4 EVAL=(--checkpoints 2 --episodes 2 --num-envs 2)
  AGENT=(--preset debug --set checkpoint_every=2) BC=(--preset debug --set checkpoint_every=2) DBC=()
  DEFAULT_SEEDS="0" DEFAULT_NE="4"
else
  # 66 expert episodes: N_E up to 60 plus held-out ones.
  EPISODES=(66 60 60) WM=(--preset small --steps "${WM_STEPS:-6000}" --batch 8 --set lr=1e-3 eval_every=1000 checkpoint_every=1000)
  STEPS=3000 EVAL=(--checkpoints 10 --episodes 20 --num-envs 10)
  AGENT=(--lr 1e-4 --batch 128 --set layers=3 units=128 checkpoint_every=100)
  BC=(--set batch=64 bc_cnn_depth=16 checkpoint_every=100)
  # D-BC's own rate and size, tuned on Breakout seeds 0-1 (docs/notes/minatar.md, "D-BC's recipe").
  DBC=(--lr 1e-3 --set layers=2 units=256)
  DEFAULT_SEEDS="0 1 2" DEFAULT_NE="4 15 60"
fi
read -r -a SEEDS <<< "${SEEDS:-$DEFAULT_SEEDS}"
read -r -a NE <<< "${NE:-$DEFAULT_NE}"
read -r -a NAMES <<< "${NAMES:-ditto dbc dgail bc}"

source "$(dirname "$0")/timed.sh"

timed "$DITTO" collect --env "$ENV" --expert scripted --episodes "${EPISODES[0]}" --out "$OUT/data/expert" --seed 0
timed "$DITTO" collect --env "$ENV" --expert scripted --episodes "${EPISODES[1]}" --epsilon 0.5 --out "$OUT/data/noisy" --seed 1000
timed "$DITTO" collect --env "$ENV" --expert random --episodes "${EPISODES[2]}" --out "$OUT/data/random" --seed 2000
[ "${STAGE:-}" = data ] && exit 0
if [ -f "$OUT/wm/checkpoint.safetensors" ]; then WM_FLAGS=(--resume); else WM_FLAGS=(); fi
timed "$DITTO" train-world-model --data "$OUT/data/expert" "$OUT/data/noisy" "$OUT/data/random" --out "$OUT/wm" \
  "${WM[@]}" --seed 0 --device cpu "${WM_FLAGS[@]}"
[ "${STAGE:-}" = wm ] && exit 0

# One agent cell: NAME NE SEED, trained and scored unless its eval.json exists.
cell() {
  local name=$1 ne=$2 seed=$3 run="$OUT/agents/$1-ne$2-seed$3" flags=()
  [ -f "$run/eval.json" ] && return
  if [ "$name" = bc ]; then flags=("${BC[@]}"); else flags=("${AGENT[@]}" --world-model "$OUT/wm"); fi
  [ "$name" = dbc ] && flags+=("${DBC[@]}")
  [ -f "$run/checkpoint.safetensors" ] && flags+=(--resume)
  timed "$DITTO" train --algo "$name" --expert-data "$OUT/data/expert" --expert-episodes "$ne" --out "$run" \
    --steps "$STEPS" --seed "$seed" --device cpu "${flags[@]}" > /dev/null
  timed "$DITTO" evaluate "$run" "${EVAL[@]}" --sticky-actions --save > /dev/null
}
export -f cell timed
export OUT DITTO STEPS
export AGENT_ARGS="${AGENT[*]}" BC_ARGS="${BC[*]}" DBC_ARGS="${DBC[*]}" EVAL_ARGS="${EVAL[*]}"

for ne in "${NE[@]}"; do for name in "${NAMES[@]}"; do for seed in "${SEEDS[@]}"; do
  echo "$name $ne $seed"
done; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; AGENT=($AGENT_ARGS); BC=($BC_ARGS); DBC=($DBC_ARGS); EVAL=($EVAL_ARGS); cell "$0" "$1" "$2"'

for ne in "${NE[@]}"; do for name in "${NAMES[@]}"; do
  echo "== $name N_E=$ne"
  "$PY" benchmarks/aggregate_runs.py $(for seed in "${SEEDS[@]}"; do echo "$OUT/agents/$name-ne$ne-seed$seed"; done) | tail -1
done; done
