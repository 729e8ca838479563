"""The Expert interface: something that picks an action in a pixel env made by make_env.

An expert may look at more than the 64x64 frame the dataset records: the env's
state vector (`env.get_wrapper_attr("state")`), the Atari console RAM
(`env.unwrapped.ale.getRAM()`) or the full-resolution screen
(`env.get_wrapper_attr("screen")`, made with keep_screen=True).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

from ditto.specs import ActionSpec


class Expert(ABC):
    """Acts in one env, one step at a time.

    reads_env: the expert reads privileged state from the env (RAM, state
    vector, screen), so it cannot drive ALE's vector env, which exposes frames only.
    keep_screen: the env must be made with keep_screen=True.
    """

    reads_env: bool = True
    keep_screen: bool = False

    def reset(self, env: gym.Env) -> None:  # noqa: B027 - optional hook
        """Called after every env.reset(), before the first act()."""

    @abstractmethod
    def act(self, env: gym.Env, frame: np.ndarray) -> int | np.ndarray:
        """The action for the current step; `frame` is the (C, H, W) observation."""


class RandomExpert(Expert):
    """Uniformly random actions: the floor of the expert-normalised score."""

    reads_env = False

    def __init__(self, action: ActionSpec, seed: int | None = None):
        self.action = action
        self.rng = np.random.default_rng(seed)

    def act(self, env, frame):
        return random_action(self.action, self.rng)


def random_action(action: ActionSpec, rng: np.random.Generator) -> int | np.ndarray:
    if action.is_discrete:
        return int(rng.integers(action.n))
    return rng.uniform(action.low, action.high).astype(np.float32)


class EpsilonExpert(Expert):
    """Takes a uniformly random action with probability epsilon, else the inner expert's.

    The inner expert still sees every step (its frame stack stays current).
    """

    def __init__(self, inner: Expert, epsilon: float, action: ActionSpec, seed: int | None = None):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.inner, self.epsilon, self.action = inner, epsilon, action
        self.reads_env, self.keep_screen = inner.reads_env, inner.keep_screen
        self.rng = np.random.default_rng(seed)

    def reset(self, env):
        self.inner.reset(env)

    def act(self, env, frame):
        chosen = self.inner.act(env, frame)
        if self.rng.random() < self.epsilon:
            return random_action(self.action, self.rng)
        return chosen
