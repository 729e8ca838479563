"""Windows of L consecutive frames sampled from episodes (a Dataset is a sequence of episodes).

    sampler = WindowSampler(dataset, dataset.spec, length=50, seed=0)

A window is what a world model trains on: frames t..t+L-1 of one episode, the
pre-action of each frame (the action that led to it; zeros at the episode's
first frame, encoded once by ActionSpec.encode) and is_first flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ditto.data.dataset import Dataset
from ditto.data.episode import Episode
from ditto.errors import DatasetError
from ditto.specs import EnvSpec


@dataclass(frozen=True)
class WindowBatch:
    frames: np.ndarray  # (B, L, C, H, W) uint8
    actions: np.ndarray  # (B, L, world_model_dim) float32 pre-actions, zero where is_first
    is_first: np.ndarray  # (B, L) bool
    is_last: np.ndarray  # (B, L) bool: the episode's final frame
    is_terminal: np.ndarray  # (B, L) bool: final frame of a terminated (not truncated) episode


def _check_spec(episodes: Sequence[Episode], spec: EnvSpec) -> None:
    """A Dataset knows its spec: a sampler given another one is refused, not silently obeyed."""
    if isinstance(episodes, Dataset):
        spec.check_compatible(episodes.spec, f"dataset {episodes.root}")


class WindowSampler:
    """Uniform over every window of `length` frames that fits inside an episode.

    Episodes shorter than the window are skipped. Reads only the frames of the
    sampled windows from the memory-mapped files.
    """

    def __init__(
        self, episodes: Sequence[Episode], spec: EnvSpec, length: int, seed: int | None = None
    ):
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        _check_spec(episodes, spec)
        self.spec, self.length = spec, length
        self.episodes = list(episodes)
        starts = np.array(
            [len(ep.observations) - length + 1 for ep in self.episodes], dtype=np.int64
        )
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
        raw_actions = np.zeros(
            (batch, length, *action_shape), dtype=np.float32 if action_shape else np.int64
        )
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


class ChunkSampler:
    """B streams of consecutive L-frame chunks for truncated backprop through time.

    Each of the `batch` rows plays episodes end to end, L frames per call: the
    chunk of a row continues exactly where its previous chunk stopped, so a
    model can carry its recurrent state from one call to the next. When a row's
    episode ends, the row continues with the first frame of a new random episode
    (is_first marks it, and the model resets its state there). Episodes are
    drawn with replacement, uniformly or with probabilities `weights`.

    `shard=(r, W)` (data-parallel training, W processes): the sampler yields rows
    r*B/W to (r+1)*B/W - 1 of the batch-B stream. Every shard advances the cursors of
    all B rows, and so draws from the RNG exactly as one process does (cheap: integers),
    but reads only the frames of its own rows. The W shards of one seed are thus the
    one-process stream split by rows, and each shard's state is the whole stream's.

    `state_dict()` / `load_state_dict()` capture the cursors and the RNG, so a
    resumed run samples exactly the chunks an uninterrupted run would have.
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        spec: EnvSpec,
        batch: int,
        length: int,
        seed: int | None = None,
        weights: Sequence[float] | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        if batch < 1 or length < 1:
            raise ValueError(f"batch and length must be >= 1, got {batch} and {length}")
        rank, world = shard
        if not 0 <= rank < world or batch % world:
            raise ValueError(f"shard {rank} of {world} does not split a batch of {batch} evenly")
        _check_spec(episodes, spec)
        if not episodes:
            raise DatasetError("no episodes to sample from")
        if weights is not None and len(weights) != len(episodes):
            raise ValueError(f"{len(weights)} weights for {len(episodes)} episodes")
        self.episodes, self.spec = list(episodes), spec
        self.batch, self.length = batch, length
        self.rows = range(rank * batch // world, (rank + 1) * batch // world)
        self.probs = None if weights is None else np.asarray(weights) / np.sum(weights)
        self.rng = np.random.default_rng(seed)
        self.episode_of_row = self._draw_episodes(batch)
        self.frame_of_row = np.zeros(batch, dtype=np.int64)

    def _draw_episodes(self, count: int) -> np.ndarray:
        if self.probs is None:  # kept apart: the uniform draw's RNG stream predates weights
            return self.rng.integers(len(self.episodes), size=count)
        return self.rng.choice(len(self.episodes), size=count, p=self.probs)

    def sample(self) -> WindowBatch:
        """The next chunk of this shard's rows (all B rows without a shard)."""
        spec, rows, length = self.spec, len(self.rows), self.length
        frames = np.empty((rows, length, *spec.obs_shape), dtype=np.uint8)
        action_shape = () if spec.action.is_discrete else (spec.action.n,)
        raw_actions = np.zeros(
            (rows, length, *action_shape), dtype=np.float32 if action_shape else np.int64
        )
        is_first = np.zeros((rows, length), dtype=bool)
        is_last = np.zeros((rows, length), dtype=bool)
        is_terminal = np.zeros((rows, length), dtype=bool)
        for row in range(self.batch):
            mine = row - self.rows.start if row in self.rows else None  # None: another shard's
            filled = 0
            while filled < length:
                episode = self.episodes[self.episode_of_row[row]]
                start = self.frame_of_row[row]
                count = min(length - filled, len(episode.observations) - start)
                if mine is not None:
                    end = filled + count
                    frames[mine, filled:end] = episode.observations[start : start + count]
                    is_first[mine, filled] = start == 0
                    first = max(start, 1)  # frame t's pre-action is actions[t-1]
                    raw_actions[mine, filled + first - start : end] = episode.actions[
                        first - 1 : start + count - 1
                    ]
                filled += count
                self.frame_of_row[row] = start + count
                if self.frame_of_row[row] == len(episode.observations):  # episode over: next one
                    if mine is not None:
                        is_last[mine, filled - 1] = True
                        is_terminal[mine, filled - 1] = episode.terminated
                    self.episode_of_row[row] = self._draw_episodes(1)[0]
                    self.frame_of_row[row] = 0
        actions = spec.action.encode(raw_actions, valid=~is_first)
        return WindowBatch(frames, actions, is_first, is_last, is_terminal)

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "episode_of_row": self.episode_of_row.tolist(),
            "frame_of_row": self.frame_of_row.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.episode_of_row = np.asarray(state["episode_of_row"], dtype=np.int64)
        self.frame_of_row = np.asarray(state["frame_of_row"], dtype=np.int64)
