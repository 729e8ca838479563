"""The Episode type: one recorded episode, frozen and shape-checked at construction.

Play data (BabyAI, experts/babyai.py) also carries its segments: the stretches in
which one mission was pursued, with the mission's text where its annotation is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ditto.errors import DatasetError


@dataclass(frozen=True)
class Segment:
    """Steps [start, end) of an episode spent on one mission: frames start..end, actions
    start..end-1. completed: the mission was accomplished at step end. mission: its text
    where the language annotation is kept, else None (the bounds are kept either way)."""

    start: int
    end: int
    completed: bool
    mission: str | None = None

    @property
    def annotated(self) -> bool:
        return self.mission is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "completed": self.completed,
            "annotated": self.annotated,
            "mission": self.mission,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        start, end, completed, mission = (
            data["start"],
            data["end"],
            data["completed"],
            data["mission"],
        )
        bounds = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
        if not (
            bounds
            and isinstance(completed, bool)
            and (mission is None or isinstance(mission, str))
            and data["annotated"] is (mission is not None)
        ):
            raise ValueError(
                "a segment's start and end are whole numbers, completed true or false, and "
                f"mission a text exactly when annotated is true; got {data}"
            )
        return cls(start, end, completed, mission)


def check_segments(segments: tuple[Segment, ...], steps: int) -> None:
    """Segments must lie in [0, steps], each non-empty, in order and not overlapping."""
    previous = 0
    for segment in segments:
        if not previous <= segment.start < segment.end <= steps:
            raise DatasetError(
                f"segment [{segment.start}, {segment.end}) is empty, out of order or overlaps "
                f"another, or lies outside the episode's {steps} steps"
            )
        previous = segment.end


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
    segments: tuple[Segment, ...] | None = None  # play data: one per mission (see Segment)

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
        if self.segments is not None:
            check_segments(self.segments, steps)

    @property
    def length(self) -> int:
        """Number of steps T."""
        return self.actions.shape[0]

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))
