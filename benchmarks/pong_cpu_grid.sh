#!/usr/bin/env bash
# The Pong comparison (DITTO, D-BC, D-GAIL, pixel BC at N_E = 4, 15, 60) at the
# budget a 2-core CPU affords: one seed, the 12000-step small Pong world model
# (RESULTS.md, "Pong at 12000 steps"), 1000 updates per world-model agent, the
# last 5 snapshots x 8 episodes. Needs runs/pong/wm12k and 64 expert episodes:
#   cp -r runs/pong/expert runs/pong/expert64   # its first 12 episodes; collect resumes
#   ditto collect --env ALE/Pong-v5 --expert scripted --episodes 64 --seed 0 --out runs/pong/expert64
# DITTO's nearest-latent reward searches all N_E x ~2000 expert latents at every update:
# most of a DITTO update at N_E = 4 on a CPU (RESULTS.md), and N_E = 60 has 15x more.
# Usage: bash benchmarks/pong_cpu_grid.sh OUT_DIR [N_E ...]   (default 4 15 60)
set -euo pipefail
out=${1:?usage: pong_cpu_grid.sh OUT_DIR [N_E ...]}
shift
sizes=${*:-4 15 60}
mkdir -p "$out"
common='"batch": 128, "layers": 3, "units": 128, "checkpoint_every": 100, "seed": 0'
for n in $sizes; do
  for algo in ditto dbc dgail bc; do
    case $algo in
      ditto) cfg="\"steps\": 1000, \"lr\": 1e-4, \"reward_match\": \"nearest\", \"entropy\": 0.01, $common" ;;
      dbc | dgail) cfg="\"steps\": 1000, \"lr\": 1e-4, $common" ;;
      bc) cfg="\"steps\": 2000, \"batch\": 64, \"bc_cnn_depth\": 16, \"checkpoint_every\": 100, \"seed\": 0" ;;
    esac
    run="$out/${algo}_ne$n"
    [[ -f $run/eval.json ]] && continue
    python benchmarks/overrides.py agent small "{\"algo\": \"$algo\", \"expert_episodes\": $n, $cfg}" \
      --world-model runs/pong/wm12k --expert-data runs/pong/expert64 --out "$run" \
      --checkpoints 5 --episodes 8 > "$run.log" 2>&1
  done
done
