#!/bin/bash
# The issue's Pong comparison (DITTO, D-BC, D-GAIL, pixel BC at N_E = 4, 15, 60) at the budget
# a 2-core CPU affords, end to end (RESULTS.md, "Pong agents at CPU scale"): the data, the
# 12000-step small Pong world model ("Pong at 12000 steps"), one seed per cell, 1000 updates per
# world-model agent, 2000 for pixel BC, each scored on its last 5 snapshots x 8 episodes.
#
#   bash benchmarks/pong.sh [OUT]          # OUT defaults to runs/pong
#   JOBS=2 bash benchmarks/pong.sh         # agent cells two at a time
#   QUICK=1 bash benchmarks/pong.sh /tmp/q # debug sizes: a smoke test of this script
#   LONG=1 bash benchmarks/pong.sh         # also pixel BC (N_E 4, 60) and D-BC (N_E 60) at 10x the
#                                          # updates, each scored with sticky actions too
#
# Cells: ditto (the method's defaults: time-matched reward), dbc, dgail and bc at every N_E, and
# ditto_nearest (the nearest-latent reward, entropy 0.01: CartPole's shipped setting) at N_E = 4
# only, since its search over N_E x ~2000 expert latents per update costs 8.5 s at N_E = 60 here.
# Finished stages are skipped, so an interrupted run continues where it stopped.
set -euo pipefail
OUT=${1:-runs/pong}
DITTO=${DITTO:-.venv/bin/ditto}
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-1}
export OMP_NUM_THREADS=1
if [ "${QUICK:-0}" = 1 ]; then
  EPISODES=(2 2 2 6) WM=(--preset debug --steps 20) STEPS=4 SIZES=(1 2 2) BC_STEPS=4 LONG_STEPS=6
  EVAL=(--checkpoints 2 --episodes 2 --num-envs 2)
  AGENT=(--preset debug --set checkpoint_every=2) BC=(--preset debug --set checkpoint_every=2)
else
  EPISODES=(12 12 8 64) STEPS=1000 SIZES=(4 15 60) BC_STEPS=2000 LONG_STEPS=10000
  WM=(--preset small --steps 12000 --batch 8 --set lr=1e-3 free_nats=1.0 eval_every=1000 checkpoint_every=1000)
  EVAL=(--checkpoints 5 --episodes 8 --num-envs 10)
  AGENT=(--lr 1e-4 --batch 128 --set layers=3 units=128 checkpoint_every=100)
  BC=(--batch 64 --set bc_cnn_depth=16 checkpoint_every=100)
fi

source "$(dirname "$0")/timed.sh"
collect() { timed "$DITTO" collect --env ALE/Pong-v5 --out "$OUT/$1" "${@:2}"; }  # resumes, or returns at once

mkdir -p "$OUT/agents" "$OUT/nearest"
collect expert --expert scripted --episodes "${EPISODES[0]}" --seed 0
collect noisy --expert scripted --epsilon 0.5 --episodes "${EPISODES[1]}" --seed 10000
collect random --expert random --episodes "${EPISODES[2]}" --seed 20000
# The agents' expert data: the world model's expert episodes and more of the same (seeds 12-63).
[ -d "$OUT/expert64" ] || cp -r "$OUT/expert" "$OUT/expert64"
collect expert64 --expert scripted --episodes "${EPISODES[3]}" --seed 0
if [ -f "$OUT/wm/checkpoint.safetensors" ]; then WM_FLAGS=(--resume); else WM_FLAGS=(); fi
timed "$DITTO" train-world-model --data "$OUT/expert" "$OUT/noisy" "$OUT/random" --out "$OUT/wm" \
  "${WM[@]}" --seed 0 --device cpu "${WM_FLAGS[@]}"

# One agent cell: NAME N_E, trained and scored unless its eval.json exists.
cell() {
  local name=$1 n=$2 run="$OUT/agents/$1_ne$2" algo=${1%%_*} flags=()
  [ "$name" = ditto_nearest ] && run="$OUT/nearest/$1_ne$2"  # a report of its own: same cell as ditto
  [ -f "$run/eval.json" ] && return
  case $name in
    bc) flags=("${BC[@]}" --steps "$BC_STEPS") ;;
    *) flags=("${AGENT[@]}" --steps "$STEPS" --world-model "$OUT/wm") ;;
  esac
  [ "$name" = ditto_nearest ] && flags+=(--reward-match nearest --set entropy=0.01)
  [ -f "$run/checkpoint.safetensors" ] && flags+=(--resume)
  timed "$DITTO" train --algo "$algo" --expert-data "$OUT/expert64" --expert-episodes "$n" --out "$run" \
    --seed 0 --device cpu "${flags[@]}" > /dev/null
  timed "$DITTO" evaluate "$run" "${EVAL[@]}" --save > /dev/null
}
export -f cell timed
export OUT DITTO STEPS BC_STEPS
export AGENT_ARGS="${AGENT[*]}" BC_ARGS="${BC[*]}" EVAL_ARGS="${EVAL[*]}"

{
  for n in $(printf '%s\n' "${SIZES[@]}" | uniq); do for name in ditto dbc dgail bc; do echo "$name $n"; done; done
  echo "ditto_nearest ${SIZES[0]}"
} | xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; AGENT=($AGENT_ARGS); BC=($BC_ARGS); EVAL=($EVAL_ARGS); cell "$0" "$1"'

"$DITTO" report "$OUT/agents"
"$DITTO" report "$OUT/nearest"

# LONG=1: one cell at LONG_STEPS updates, scored as the grid is and with sticky actions (RUN.sticky.json).
long() {
  local algo=$1 n=$2 run="$OUT/long/$1_ne$2_10k" flags=()
  if [ "$algo" = bc ]; then flags=("${BC[@]}"); else flags=("${AGENT[@]}" --world-model "$OUT/wm"); fi
  if ! [ -f "$run/eval.json" ]; then
    [ -f "$run/checkpoint.safetensors" ] && flags+=(--resume)
    timed "$DITTO" train --algo "$algo" --expert-data "$OUT/expert64" --expert-episodes "$n" --out "$run" \
      --steps "$LONG_STEPS" --seed 0 --device cpu "${flags[@]}" > /dev/null
    timed "$DITTO" evaluate "$run" "${EVAL[@]}" --save > /dev/null
  fi
  if ! [ -f "$run.sticky.json" ]; then
    timed "$DITTO" evaluate "$run" "${EVAL[@]}" --sticky-actions --json > "$run.sticky.tmp"
    mv "$run.sticky.tmp" "$run.sticky.json"
  fi
}
if [ "${LONG:-0}" = 1 ]; then
  mkdir -p "$OUT/long"
  long bc "${SIZES[0]}"
  long bc "${SIZES[2]}"
  long dbc "${SIZES[2]}"
fi
