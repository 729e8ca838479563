"""Windows of L consecutive frames sampled from one or more datasets.

A window is what a world model trains on: frames t..t+L-1 of one episode, the
pre-action of each frame (the action that led to it; zeros at the episode's
first frame, encoded once by ActionSpec.encode) and is_first flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ditto.data.dataset import Dataset
from ditto.errors import DatasetError
from ditto.specs import EnvSpec


@dataclass(frozen=True)
class WindowBatch:
    frames: np.ndarray  # (B, L, C, H, W) uint8
    actions: np.ndarray  # (B, L, world_model_dim) float32 pre-actions, zero where is_first
    is_first: np.ndarray  # (B, L) bool
    is_last: np.ndarray  # (B, L) bool: the episode's final frame
    is_terminal: np.ndarray  # (B, L) bool: final frame of a terminated (not truncated) episode


class WindowSampler:
    """Uniform over every window of `length` frames that fits inside an episode.

    Episodes shorter than the window are skipped. Reads only the frames of the
    sampled windows from the memory-mapped files.
    """

    def __init__(self, datasets: Sequence[Dataset], length: int, seed: int | None = None):
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        self.spec: EnvSpec = datasets[0].spec
        self.length = length
        self.episodes = [ep for ds in datasets for ep in ds]
        starts = np.array([len(ep.observations) - length + 1 for ep in self.episodes], dtype=np.int64)
        starts = np.maximum(starts, 0)
        if starts.sum() == 0:
            longest = max((len(ep.observations) for ep in self.episodes), default=0)
            raise DatasetError(
                f"no episode has {length} frames (the longest has {longest}); use a shorter window"
            )
        self._cumulative = np.cumsum(starts)
        self.rng = np.random.default_rng(seed)

    @property
    def num_windows(self) -> int:
        return int(self._cumulative[-1])

    def sample(self, batch_size: int) -> WindowBatch:
        flat = self.rng.integers(0, self.num_windows, size=batch_size)
        episode_ids = np.searchsorted(self._cumulative, flat, side="right")
        starts = flat - np.concatenate([[0], self._cumulative])[episode_ids]
        return self.gather(episode_ids, starts)

    def gather(self, episode_ids: np.ndarray, starts: np.ndarray) -> WindowBatch:
        """The windows of `length` frames beginning at frame starts[i] of episode episode_ids[i]."""
        batch, length = len(episode_ids), self.length
        frames = np.empty((batch, length, *self.spec.obs_shape), dtype=np.uint8)
        action_shape = () if self.spec.action.is_discrete else (self.spec.action.n,)
        raw_actions = np.zeros((batch, length, *action_shape), dtype=np.float32 if action_shape else np.int64)
        steps = starts[:, None] + np.arange(length)  # frame index t of every window slot
        is_last = np.zeros((batch, length), dtype=bool)
        is_terminal = np.zeros((batch, length), dtype=bool)
        for i, (e, s) in enumerate(zip(episode_ids, starts, strict=True)):
            episode = self.episodes[e]
            frames[i] = episode.observations[s : s + length]
            first = max(s, 1)  # frame t's pre-action is actions[t-1]
            raw_actions[i, first - s :] = episode.actions[first - 1 : s + length - 1]
            last = episode.length - s  # slot of the final frame, if inside the window
            if last < length:
                is_last[i, last] = True
                is_terminal[i, last] = episode.terminated
        is_first = steps == 0
        actions = self.spec.action.encode(raw_actions, valid=~is_first)
        return WindowBatch(frames, actions, is_first, is_last, is_terminal)
