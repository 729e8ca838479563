"""Which input lets a clone of the MinAtar Breakout expert keep the ball in play?

Behaviour cloning from N expert episodes, the same small MLP and training on each input:
the true game grid (10x10 cells x channels, booleans), the frame's mean level in each of
its 10x10 cells (as drawn in gray and in colour), the same read from the world model's
reconstruction of the frame, the posterior features (h, a sample of z, both; z's
probabilities or its most likely value instead of the sample, alone and with h) and the encoder's embedding. Each
clone then plays greedily in the real game, its inputs filtered through the world model
as a deployed latent agent's are, with sticky actions as the evaluation protocol has them
(without them a greedy clone replays one of two games). An input the grid beats by far
holds the state less usably than the frame shows it.

    python benchmarks/clone_inputs.py runs/minatar/breakout2/wm --episodes 15 [--recipe dbc --sample]
        [--sticky-data] [--no-sticky-actions]

Run on one thread (OMP_NUM_THREADS=1); all inputs at 15 episodes take about 10 minutes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from ditto.agents.networks import Actor
from ditto.envs import make_env
from ditto.envs.minatar import BORDER, CELL, GRID, draw_grid, palette
from ditto.experts.minatar import MinAtarBreakoutExpert
from ditto.world_model.trainer import load_world_model

INPUTS = (
    "grid",
    "cells",
    "cells_rgb",
    "decoded",
    "h",
    "z",
    "hz",
    "z_probs",
    "h_z_probs",
    "h_z_mode",
    "embed",
)


class Filter:
    """The deployed latent agent's filter: each frame through encoder + posterior, with the
    previous action as pre-action; returns every candidate input for the current frame."""

    def __init__(self, model, env):
        self.model, self.env = model, env

    def reset(self) -> None:
        self.state = self.model.initial(1)
        self.previous = torch.zeros(1, self.model.spec.action.n)
        self.first = True

    @torch.no_grad()
    def __call__(self, frame: np.ndarray) -> dict[str, torch.Tensor]:
        model = self.model
        frames = torch.tensor(frame[None])
        embed = model.encoder(frames)
        pre_action = model.policy_action_input(self.previous)
        self.state = model.obs_step(self.state, pre_action, frames, torch.tensor([self.first]))
        self.first = False
        feature = model.features(self.state)[0]
        state = self.env.get_wrapper_attr("state")
        grid = state.astype(np.float32).ravel()
        rgb = draw_grid(state, palette(state.shape[-1], grayscale=False), frame.shape[-1])
        deter = model.deter_size
        decoded = model.decode(feature[None])[0] + 0.5  # the posterior's reconstruction, in [0, 1]
        real = torch.tensor(frame, dtype=torch.float32) / 255
        probs = self.state.logits[0].softmax(-1)  # z's posterior, not a sample of it
        mode = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float().flatten()
        probs = probs.flatten()
        return {
            "grid": torch.tensor(grid),
            "cells": _cells(real),
            "cells_rgb": _cells(torch.tensor(rgb, dtype=torch.float32) / 255),
            "decoded": _cells(decoded),
            "h": feature[:deter],
            "z": feature[deter:],
            "hz": feature,
            "z_probs": probs,
            "h_z_probs": torch.cat([feature[:deter], probs]),
            "h_z_mode": torch.cat([feature[:deter], mode]),
            "embed": embed[0],
        }

    def acted(self, action: int) -> None:
        self.previous = torch.zeros(1, self.model.spec.action.n)
        self.previous[0, action] = 1


def _cells(frame: torch.Tensor) -> torch.Tensor:
    """A (C, 64, 64) frame as the mean level of each of its 10x10 cells, (C * 100,)."""
    inner = frame[:, BORDER : BORDER + GRID * CELL, BORDER : BORDER + GRID * CELL]
    return inner.reshape(-1, GRID, CELL, GRID, CELL).mean((2, 4)).flatten()


def expert_inputs(env, filt: Filter, episodes: int, seed: int):
    """Every candidate input of `episodes` expert episodes, and the expert's actions."""
    expert = MinAtarBreakoutExpert(seed=seed)
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in INPUTS}
    actions = []
    for episode in range(episodes):
        frame, _ = env.reset(seed=seed + episode)
        expert.reset(env)
        filt.reset()
        done = False
        while not done:
            for name, value in filt(frame).items():
                inputs[name].append(value)
            action = expert.act(env, frame)
            actions.append(action)
            filt.acted(action)
            frame, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return {name: torch.stack(values) for name, values in inputs.items()}, torch.tensor(actions)


def train_clone(x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """A 2x256 MLP on standardised inputs, cross-entropy, Adam 1e-3, batch 256: logits."""
    mean, std = x.mean(0), x.std(0) + 1e-3
    net = nn.Sequential(
        nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3)
    )
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        batch = torch.randint(len(x), (256,))
        loss = nn.functional.cross_entropy(net((x[batch] - mean) / std), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return nn.Sequential(_Standardise(mean, std), net)


def train_dbc(x: torch.Tensor, y: torch.Tensor, steps: int, spec) -> nn.Module:
    """D-BC's own recipe as benchmarks/minatar.sh runs it: ditto's Actor (3 x 128) on raw
    inputs, Adam 1e-4, batch 128, entropy bonus 0.1: logits."""
    actor = Actor(x.shape[1], spec.action, layers=3, units=128)
    optimiser = torch.optim.Adam(actor.parameters(), 1e-4)
    one_hot = nn.functional.one_hot(y, 3).float()
    for _ in range(steps):
        batch = torch.randint(len(x), (128,))
        dist = actor(x[batch])
        loss = -dist.log_prob(one_hot[batch]).mean() - 0.1 * dist.entropy().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return actor.net


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def play(
    env, filt: Filter, clone: nn.Module, name: str, episodes: int, seed: int, sample: bool
) -> list[float]:
    returns = []
    for episode in range(episodes):
        frame, _ = env.reset(seed=seed + episode)
        filt.reset()
        total, done = 0.0, False
        while not done:
            logits = clone(filt(frame)[name][None])[0]
            action = (
                int(torch.distributions.Categorical(logits=logits).sample())
                if sample
                else int(logits.argmax())
            )
            filt.acted(action)
            frame, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world_model", help="a Breakout world-model run directory")
    parser.add_argument("--episodes", type=int, default=15, help="expert episodes to clone")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per clone")
    parser.add_argument("--inputs", default=",".join(INPUTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe",
        choices=["mlp", "dbc"],
        default="mlp",
        help="mlp: the 2x256 MLP above; dbc: D-BC's actor and settings",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="sample the clone's actions, as the protocol does, instead of its mode",
    )
    parser.add_argument(
        "--sticky-data",
        action="store_true",
        help="the expert plays its episodes with sticky actions too",
    )
    parser.add_argument(
        "--no-sticky-actions",
        action="store_true",
        help="play without sticky actions (a greedy clone then replays few games)",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = load_world_model(args.world_model).model.eval()
    grayscale = model.spec.obs_shape[0] == 1
    env = make_env(
        "MinAtar/Breakout-v1",
        size=model.spec.obs_shape[1],
        grayscale=grayscale,
        sticky_actions=args.sticky_data,
    )
    x, y = expert_inputs(env, Filter(model, env), args.episodes, args.seed)
    env = make_env(
        "MinAtar/Breakout-v1",
        size=model.spec.obs_shape[1],
        grayscale=grayscale,
        sticky_actions=not args.no_sticky_actions,
    )
    filt = Filter(model, env)
    print(f"{args.episodes} expert episodes, {len(y)} frames")
    for name in args.inputs.split(","):
        torch.manual_seed(args.seed)  # each input's numbers do not depend on which others ran
        if args.recipe == "dbc":
            clone = train_dbc(x[name], y, args.steps, model.spec)
        else:
            clone = train_clone(x[name], y, args.steps)
        accuracy = (clone(x[name]).argmax(1) == y).float().mean()
        returns = play(env, filt, clone, name, args.eval_episodes, 1000 + args.seed, args.sample)
        print(
            f"{name:6s} dim {x[name].shape[1]:4d}  training accuracy {accuracy:.3f}  "
            f"{'sampled' if args.sample else 'greedy'} return {np.mean(returns):5.1f} +- {np.std(returns) / len(returns) ** 0.5:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
