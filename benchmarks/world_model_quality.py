"""World-model quality: held-out reconstruction and open-loop prediction vs copying the last frame.

    python benchmarks/world_model_quality.py --env CartPole-v1 --preset small --steps 3000 \
        --expert-episodes 20 --noisy-episodes 40 --epsilon 0.3 --out runs/bench/wm-cartpole

Collects (or reuses) scripted-expert and epsilon-noisy episodes, trains a world
model on both, and prints the final validation metrics (mean squared error per
pixel in [0, 1] units) next to the copy-last-frame baseline, as one JSON line.
The run directory keeps the diagnostics (open_loop.png / .gif).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ditto.config import world_model_config
from ditto.data.collect import collect
from ditto.world_model.trainer import train_world_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--expert", default="scripted")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--expert-episodes", type=int, default=20)
    parser.add_argument("--noisy-episodes", type=int, default=40)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench/world-model-quality")
    args = parser.parse_args()

    out = Path(args.out)
    start = time.perf_counter()
    expert = collect(args.env, args.expert, args.expert_episodes, out / "data-expert", seed=0)
    noisy = collect(
        args.env,
        args.expert,
        args.noisy_episodes,
        out / "data-noisy",
        epsilon=args.epsilon,
        seed=10_000,
    )
    collect_s = time.perf_counter() - start
    config = world_model_config(args.preset, steps=args.steps)
    start = time.perf_counter()
    run_dir = out / f"wm-{args.preset}"
    train_world_model(
        [expert.root, noisy.root],
        run_dir,
        config,
        device=args.device,
        resume=(run_dir / "checkpoint.safetensors").exists(),
    )
    train_s = time.perf_counter() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validation = [r for r in records if "val/recon_mse" in r]
    print(
        json.dumps(
            {
                "env": args.env,
                "preset": args.preset,
                "steps": args.steps,
                "expert_return": expert.summary()["return_mean"],
                "noisy_return": noisy.summary()["return_mean"],
                "episodes": len(expert) + len(noisy),
                "collect_s": round(collect_s, 1),
                "train_s": round(train_s, 1),
                "first_validation": validation[0],
                "final_validation": validation[-1],
                "diagnostics": str(run_dir / "diagnostics"),
            }
        )
    )


if __name__ == "__main__":
    main()
