"""Where a CartPole policy fails: the true env state when its episodes end.

Plays a run's policy snapshots (sampled actions, as the protocol) from pixels and,
per episode, prints its length, the final (x, x_dot, theta, theta_dot), the mean
cart position, and how often the policy took the scripted expert's action:

    python benchmarks/cartpole_failures.py runs/ne4/ent01_s4 --steps 4400 4200 --episodes 12

CartPole ends an episode when |theta| > 0.21 rad or |x| > 2.4 (or at 500 steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ditto.agents.trainer import SNAPSHOTS
from ditto.checkpoint import load_checkpoint
from ditto.envs import make_env
from ditto.evaluation.protocol import agent_loader
from ditto.experts.scripted import CartPoleExpert
from ditto.runs import read_config
from ditto.specs import EnvSpec


def play(agent, spec: EnvSpec, seed: int) -> tuple[int, np.ndarray, float, float]:
    """One episode: its length, final state, mean cart position, agreement with the expert."""
    torch.manual_seed(seed)
    env = make_env(spec.env_id, size=spec.obs_shape[1], grayscale=spec.obs_shape[0] == 1)
    frame, _ = env.reset(seed=seed)
    positions, agreed, first = [], [], True
    try:
        while True:
            state = np.array(env.get_wrapper_attr("state"))
            action = int(agent.act(frame[None], np.array([first]))[0])
            agreed.append(action == int(CartPoleExpert.GAINS @ state > 0))
            frame, _, terminated, truncated, _ = env.step(action)
            positions.append(state[0])
            first = False
            if terminated or truncated:
                final = np.array(env.get_wrapper_attr("state"))
                return len(positions), final, float(np.mean(positions)), float(np.mean(agreed))
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="snapshot updates")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--seed", type=int, default=100, help="episode i uses env seed SEED+i")
    args = parser.parse_args()

    saved = read_config(args.run)
    spec = EnvSpec.from_json(saved["env"])
    load = agent_loader(saved, torch.device("cpu"), greedy=False)
    for step in args.steps:
        agent = load(load_checkpoint(args.run / SNAPSHOTS / f"step_{step:08d}.safetensors"))
        print(
            f"snapshot {step}: length, final (x, x_dot, theta, theta_dot), mean x, expert agreement"
        )
        for i in range(args.episodes):
            agent.reset()
            length, final, mean_x, agreement = play(agent, spec, args.seed + i)
            print(
                f"  {length:4d}  {np.array2string(final, precision=2)}  {mean_x:+.2f}  {agreement:.2f}"
            )


if __name__ == "__main__":
    main()
