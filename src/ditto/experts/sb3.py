"""Experts from stable-baselines3 checkpoints and RL-Baselines3-Zoo run folders.

    expert = load_sb3_expert("experts/walker.zip", "BipedalWalker-v3")
    expert = load_sb3_expert("PPO:experts/walker.zip", "BipedalWalker-v3")  # algorithm named
    expert = load_zoo_expert("rl-trained-agents/ppo/BreakoutNoFrameskip-v4_1", "ALE/Breakout-v5")

This module gathers the public names of four:

- `ditto.experts.sb3_expert`: the expert acting on its own observation (`SB3Expert`,
  Atari preprocessing, frame stacks, observation normalisation);
- `ditto.experts.sb3_checkpoint`: SB3 zips and VecNormalize statistics loaded without
  running code from them (`load_sb3_expert`; `--trust-pickle` as the way out);
- `ditto.experts.zoo`: RL-Baselines3-Zoo run folders and their config.yml;
- `ditto.experts.records`: the restricted unpickler both of the last two read pickles with.
"""

from __future__ import annotations

from ditto.experts.sb3_checkpoint import (
    ALGORITHMS,
    load_sb3_expert,
    load_vecnormalize,
    vecnormalize_path,
)
from ditto.experts.sb3_expert import AtariPreprocessing, ObsNormalizer, SB3Expert
from ditto.experts.zoo import load_zoo_config, load_zoo_expert

__all__ = [
    "ALGORITHMS",
    "AtariPreprocessing",
    "ObsNormalizer",
    "SB3Expert",
    "load_sb3_expert",
    "load_vecnormalize",
    "load_zoo_config",
    "load_zoo_expert",
    "vecnormalize_path",
]
