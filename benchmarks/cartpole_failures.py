"""Where a CartPole policy fails, and how well world models see the states it visits.

Plays a run's policy snapshots (sampled actions, as the protocol) from pixels and,
per episode, prints its length, the final true (x, x_dot, theta, theta_dot), the
mean cart position, and how often the policy took the scripted expert's action:

    python benchmarks/cartpole_failures.py runs/ne4/ent01_s4 --steps 4400 --episodes 12

With --trace K, the last K steps of the first failed episode: state, action, expert's action.
With --expert-seeds N, where the scripted expert takes the cart in the episodes from env seeds
0..N-1 (a dataset collected with --seed 0 holds those, in that order).
With --recon WM [WM ...], each world model also filters those episodes' frames
(posterior, as the deployed policy does) and its reconstruction error is printed
by the pole's true tilt: how well the model perceives the learner's own states.

CartPole ends an episode when |theta| > 0.21 rad or |x| > 2.4 (or at 500 steps).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ditto.agents.expert_data import encode_episode
from ditto.agents.trainer import SNAPSHOTS
from ditto.checkpoint import load_checkpoint
from ditto.data import Episode
from ditto.envs import make_env
from ditto.evaluation.protocol import agent_loader
from ditto.experts.scripted import CartPoleExpert
from ditto.runs import read_config
from ditto.specs import EnvSpec
from ditto.world_model.networks import frames_to_input
from ditto.world_model.trainer import load_world_model

TILT_BINS = (0.0, 0.03, 0.1, np.inf)  # |theta| in rad


@dataclass
class Played:
    frames: np.ndarray  # (T+1, C, H, W) uint8
    actions: np.ndarray  # (T,)
    states: np.ndarray  # (T+1, 4) true (x, x_dot, theta, theta_dot) of each frame
    expert_actions: np.ndarray  # (T,) what the scripted expert would have done at each step

    @property
    def agreement(self) -> float:
        return float(np.mean(self.actions == self.expert_actions))


def _env(spec: EnvSpec):
    return make_env(spec.env_id, size=spec.obs_shape[1], grayscale=spec.obs_shape[0] == 1)


def play(agent, spec: EnvSpec, seed: int) -> Played:
    torch.manual_seed(seed)
    expert, env = CartPoleExpert(), _env(spec)
    frame, _ = env.reset(seed=seed)
    frames, actions, expert_actions = [frame], [], []
    states = [np.array(env.get_wrapper_attr("state"))]
    try:
        while True:
            action = int(agent.act(frame[None], np.array([len(actions) == 0]))[0])
            expert_actions.append(expert.act(env, frame))
            frame, _, terminated, truncated, _ = env.step(action)
            frames.append(frame)
            actions.append(action)
            states.append(np.array(env.get_wrapper_attr("state")))
            if terminated or truncated:
                break
    finally:
        env.close()
    return Played(np.stack(frames), np.array(actions), np.stack(states), np.array(expert_actions))


@torch.no_grad()
def recon_errors(world_model: str, episodes: list[Played]) -> np.ndarray:
    """Per-frame posterior reconstruction MSE (pixels in [0, 1]) over all episodes."""
    model = load_world_model(world_model, "cpu").model
    # The posterior samples z: seeded, so that a model's row does not depend on the ones before.
    torch.manual_seed(0)
    errors = []
    for ep in episodes:
        episode = Episode(
            ep.frames,
            ep.actions,
            np.ones(len(ep.actions), np.float32),
            terminated=True,
            truncated=False,
        )
        features = encode_episode(model, episode, torch.device("cpu"))
        recon = torch.cat([model.decode(part).float() for part in features.split(128)])
        target = frames_to_input(torch.from_numpy(ep.frames)).float()
        errors.append((recon - target).square().mean((1, 2, 3)).numpy())
    return np.concatenate(errors)


def expert_positions(spec: EnvSpec, seeds: int) -> None:
    expert, env = CartPoleExpert(), _env(spec)
    print("scripted expert, env seed: length, min x, max x, mean x")
    for seed in range(seeds):
        frame, _ = env.reset(seed=seed)
        positions = []
        while True:
            positions.append(env.get_wrapper_attr("state")[0])
            frame, _, terminated, truncated, _ = env.step(expert.act(env, frame))
            if terminated or truncated:
                break
        x = np.array(positions)
        print(f"  {seed:3d}  {len(x):4d}  {x.min():+.2f}  {x.max():+.2f}  {x.mean():+.2f}")
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="snapshot updates")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--seed", type=int, default=100, help="episode i uses env seed SEED+i")
    parser.add_argument("--recon", nargs="+", default=[], metavar="WM", help="world-model runs")
    parser.add_argument("--trace", type=int, default=0, metavar="K")
    parser.add_argument("--expert-seeds", type=int, default=0, metavar="N")
    args = parser.parse_args()
    saved = read_config(args.run, "agent")
    spec = EnvSpec.from_json(saved["env"])
    if args.expert_seeds:
        expert_positions(spec, args.expert_seeds)
    load = agent_loader(saved, torch.device("cpu"), greedy=False)
    played = []
    for step in args.steps:
        agent = load(load_checkpoint(args.run / SNAPSHOTS / f"step_{step:08d}.safetensors"))
        print(
            f"snapshot {step}: length, final (x, x_dot, theta, theta_dot), mean x, expert agreement"
        )
        for i in range(args.episodes):
            agent.reset()
            ep = play(agent, spec, args.seed + i)
            final = np.array2string(ep.states[-1], precision=2)
            print(
                f"  {len(ep.actions):4d}  {final}  {ep.states[:, 0].mean():+.2f}  {ep.agreement:.2f}"
            )
            played.append(ep)

    failed = [ep for ep in played if len(ep.actions) < 500]
    if args.trace and failed:
        ep = failed[0]
        print(
            f"the last {args.trace} steps of the first failed episode: t, state, action, expert's"
        )
        for t in range(max(0, len(ep.actions) - args.trace), len(ep.actions)):
            state = np.array2string(ep.states[t], precision=2)
            print(f"  {t:4d}  {state}  {ep.actions[t]}  {ep.expert_actions[t]}")

    if not args.recon:
        return
    tilt = np.abs(np.concatenate([ep.states[:, 2] for ep in played]))
    bins = list(zip(TILT_BINS[:-1], TILT_BINS[1:], strict=True))
    print("posterior reconstruction MSE x 1e4 on those frames, by |theta| (rad):")
    print("  world model", *(f"[{lo}, {hi})" for lo, hi in bins), "all", sep="  ")
    for world_model in args.recon:
        errors = 1e4 * recon_errors(world_model, played)
        by_tilt = [errors[(tilt >= lo) & (tilt < hi)].mean() for lo, hi in bins]
        print(f"  {world_model}", *(f"{e:.2f}" for e in by_tilt), f"{errors.mean():.2f}", sep="  ")


if __name__ == "__main__":
    main()
