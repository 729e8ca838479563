"""Score an expert over full episodes.

    python benchmarks/expert_scores.py --env ALE/Pong-v5 --expert scripted --episodes 10 --seed 0

Episode i is reset with seed + i; prints each episode's return and length, then
one JSON line with the mean / std / min / max return.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from ditto.envs import make_env
from ditto.experts import make_expert


def run_episode(env, expert, seed: int) -> tuple[float, int]:
    frame, _ = env.reset(seed=seed)
    expert.reset(env)
    total, steps, done = 0.0, 0, False
    while not done:
        frame, reward, terminated, truncated, _ = env.step(expert.act(env, frame))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, help="env id, e.g. ALE/Pong-v5")
    parser.add_argument(
        "--expert", default="scripted", help="expert spec (see ditto.experts.make_expert)"
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, default=0.0)
    args = parser.parse_args()

    env = make_env(args.env)
    expert = make_expert(args.expert, args.env, epsilon=args.epsilon, seed=args.seed)
    returns, lengths = [], []
    start = time.perf_counter()
    for i in tqdm(range(args.episodes), desc=args.env, unit="ep"):
        total, steps = run_episode(env, expert, args.seed + i)
        returns.append(total)
        lengths.append(steps)
        tqdm.write(f"episode {i} (seed {args.seed + i}): return {total:g}, length {steps}")
    env.close()
    summary = {
        "env": args.env,
        "expert": args.expert,
        "episodes": args.episodes,
        "seed": args.seed,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "min": float(np.min(returns)),
        "max": float(np.max(returns)),
        "mean_length": float(np.mean(lengths)),
        "seconds_per_episode": (time.perf_counter() - start) / args.episodes,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
