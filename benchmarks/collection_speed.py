"""Atari collection speed: ALE's C++ vector env vs a plain Python loop over one env.

    python benchmarks/collection_speed.py --env ALE/Pong-v5 --steps 20000 --num-envs 8 --repeats 3

Both paths step a uniformly random policy and produce the same 64x64 frames
(tests/test_envs.py checks they are identical); prints the median agent
steps/s of each over the repeats, and their ratio, as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from ditto.envs import make_env, make_vector_env


def python_loop(env_id: str, steps: int, seed: int) -> float:
    env = make_env(env_id, seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env(env_id: str, steps: int, num_envs: int, seed: int) -> float:
    venv = make_vector_env(env_id, num_envs, seed=seed)
    venv.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n = venv.single_action_space.n
    batches = steps // num_envs
    start = time.perf_counter()
    for _ in range(batches):
        venv.step(rng.integers(n, size=num_envs))
    elapsed = time.perf_counter() - start
    venv.close()
    return batches * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loop = [python_loop(args.env, args.steps, seed) for seed in range(args.repeats)]
    vec = [vector_env(args.env, args.steps, args.num_envs, seed) for seed in range(args.repeats)]
    result = {
        "env": args.env,
        "num_envs": args.num_envs,
        "python_loop_steps_per_s": statistics.median(loop),
        "vector_env_steps_per_s": statistics.median(vec),
        "ratio": statistics.median(vec) / statistics.median(loop),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
