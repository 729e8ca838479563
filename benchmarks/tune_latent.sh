#!/bin/bash
# Tune a latent method's settings on a finished MinAtar (or any) run directory: each variant is
# trained and scored (the paper's protocol, sticky actions) on each tuning seed, then the
# variants are printed side by side. Report the chosen variant on other seeds (SEEDS="2 3").
#
#   VARIANTS="base|
#   lr3e-4|--lr 3e-4
#   lr1e-3|--lr 1e-3" bash benchmarks/tune_latent.sh runs/minatar/breakout2 dbc
#
# RUN must hold wm/ and data/expert/ (benchmarks/minatar.sh makes them). Each variant's flags
# are added after BASE's (minatar.sh's agent settings by default), so later flags win.
# Cells land in RUN/tune/ALGO-ne{NE}-VARIANT-seed{S}; finished cells are skipped.
set -euo pipefail
RUN=${1:?usage: tune_latent.sh RUN ALGO}
ALGO=${2:?usage: tune_latent.sh RUN ALGO}
DITTO=${DITTO:-.venv/bin/ditto}
PY=${PY:-.venv/bin/python}
NE=${NE:-15}
STEPS=${STEPS:-3000}
read -r -a SEEDS <<< "${SEEDS:-0 1}"
read -r -a BASE <<< "${BASE:---lr 1e-4 --batch 128 --set layers=3 units=128 checkpoint_every=100}"
EVAL=(--checkpoints 10 --episodes 20 --num-envs 10 --sticky-actions --save)
export OMP_NUM_THREADS=1
source "$(dirname "$0")/timed.sh"
quiet() { "$@" > /dev/null 2>&1; }  # the cell's own output; timed still prints its time

cells=()
while IFS='|' read -r name flags; do
  [ -z "$name" ] && continue
  read -r -a extra <<< "$flags"
  for seed in "${SEEDS[@]}"; do
    out="$RUN/tune/$ALGO-ne$NE-$name-seed$seed"
    cells+=("$out")
    [ -f "$out/eval.json" ] && continue
    resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
    timed quiet "$DITTO" train --algo "$ALGO" --world-model "$RUN/wm" --expert-data "$RUN/data/expert" \
      --expert-episodes "$NE" --out "$out" --steps "$STEPS" --seed "$seed" --device cpu \
      "${BASE[@]}" "${extra[@]}" "${resume[@]}"
    timed quiet "$DITTO" evaluate "$out" "${EVAL[@]}"
  done
done <<< "${VARIANTS:?set VARIANTS: one 'name|flags' line per variant}"

for name in $(printf '%s\n' "${cells[@]}" | sed -E "s|.*/$ALGO-ne$NE-(.*)-seed[0-9]+$|\1|" | uniq); do
  echo "== $ALGO N_E=$NE $name"
  "$PY" benchmarks/aggregate_runs.py $(printf '%s\n' "${cells[@]}" | grep "/$ALGO-ne$NE-$name-seed") | tail -1
done
