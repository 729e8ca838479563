#!/bin/bash
# The ALE PPO experts that ship in experts/: train one (resumably, a chunk at a time), then
# export its policy weights to experts/ and score it over 30 episodes, without and with
# sticky actions (the scores land in experts/scores/ as JSON, for experts/README.md).
#
#   bash benchmarks/atari_experts.sh Breakout 3000000   # train towards 3M env steps; Ctrl-C saves,
#                                                       # and running it again continues
#   STAGE=ship bash benchmarks/atari_experts.sh Breakout  # export and score the latest checkpoint
#
# Training runs on one thread (about 100 env steps/s on the dev CPU) in runs/atari_experts/.
# Keep one --steps target per game: PPO's learning rate and clip range decay linearly to 0
# at that target, so raising it midway changes the schedule from then on.
set -euo pipefail
GAME=${1:?usage: atari_experts.sh GAME [TOTAL_STEPS]}
STEPS=${2:-3000000}
NAME=$(echo "$GAME" | tr '[:upper:]' '[:lower:]')
ENV=ALE/$GAME-v5
DITTO=${DITTO:-.venv/bin/ditto}
RUN=runs/atari_experts/$NAME.zip
SHIPPED=experts/$NAME-ppo.zip
EPISODES=${EPISODES:-30}
export OMP_NUM_THREADS=1

if [ "${STAGE:-train}" = train ]; then
  "$DITTO" expert train --env "$ENV" --steps "$STEPS" --out "$RUN"
fi
CKPT=runs/atari_experts/$NAME.checkpoint.zip
[ -f "$RUN" ] && [ "$RUN" -nt "$CKPT" ] && CKPT=$RUN
"$DITTO" expert export "$CKPT" --out "$SHIPPED"
mkdir -p experts/scores
"$DITTO" expert eval --env "$ENV" --expert "sb3:$SHIPPED" --episodes "$EPISODES" --json \
  > "experts/scores/$NAME-ppo.json"
"$DITTO" expert eval --env "$ENV" --expert "sb3:$SHIPPED" --episodes "$EPISODES" --json \
  --sticky-actions > "experts/scores/$NAME-ppo-sticky.json"
"$DITTO" expert eval --env "$ENV" --expert random --episodes "$EPISODES" --json \
  > "experts/scores/$NAME-random.json"
