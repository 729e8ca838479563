"""The Episode type: one recorded episode, frozen and shape-checked at construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ditto.errors import DatasetError


@dataclass(frozen=True)
class Episode:
    """T steps of an episode: T+1 frames, T actions, T rewards.

    observations[t] is the frame the policy saw before taking actions[t], which
    earned rewards[t] and led to observations[t+1]. terminated: the episode
    ended in a terminal state; truncated: it was cut off (time limit).
    """

    observations: np.ndarray  # (T+1, C, H, W) uint8
    actions: np.ndarray  # (T,) int64 for discrete, (T, A) float32 for continuous
    rewards: np.ndarray  # (T,) float32
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        obs, actions, rewards = self.observations, self.actions, self.rewards
        if not isinstance(obs, np.ndarray) or obs.dtype != np.uint8 or obs.ndim != 4:
            raise DatasetError(
                f"observations must be a uint8 array of shape (T+1, C, H, W), got "
                f"{getattr(obs, 'dtype', type(obs).__name__)} {getattr(obs, 'shape', '')}"
            )
        steps = obs.shape[0] - 1
        if steps < 1:
            raise DatasetError("an episode needs at least one step (two observations)")
        if actions.ndim not in (1, 2) or actions.shape[0] != steps:
            raise DatasetError(
                f"an episode with {steps + 1} observations needs {steps} actions, got shape {actions.shape}"
            )
        if rewards.ndim != 1 or rewards.shape[0] != steps:
            raise DatasetError(
                f"an episode of {steps} steps needs {steps} rewards, got shape {rewards.shape}"
            )
        if not np.all(np.isfinite(rewards)):
            raise DatasetError("rewards contain NaN or Inf")

    @property
    def length(self) -> int:
        """Number of steps T."""
        return self.actions.shape[0]

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))
