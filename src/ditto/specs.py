"""What an environment looks like to every stage: frame shape and action space.

These specs are written into every dataset's metadata and every run's config, so
that a world model, an agent and an evaluation can check they talk about the
same environment. They hold plain Python values only (JSON round-trips exactly).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ditto.errors import SpecError

# Atari games are modelled in ALE's full action set, so that one world model
# input layout serves every game (the paper pads to 18 actions).
ATARI_FULL_ACTIONS = 18


@dataclass(frozen=True)
class ActionSpec:
    """The policy's action space.

    kind: "discrete" (actions are ints in [0, n)) or "continuous" (float vectors
    of length n, within [low, high]).
    world_model_index: for Atari, the index in ALE's full 18-action set of each
    of the game's minimal actions; the world model sees the full set.
    """

    kind: str
    n: int
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    world_model_index: tuple[int, ...] | None = None
    meanings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise SpecError(f"action kind must be 'discrete' or 'continuous', got {self.kind!r}")
        if self.n < 1:
            raise SpecError(f"action space needs at least one action/dimension, got n={self.n}")
        if self.kind == "continuous" and (
            self.low is None
            or self.high is None
            or len(self.low) != self.n
            or len(self.high) != self.n
        ):
            raise SpecError("a continuous action space needs low and high of length n")
        if self.world_model_index is not None and len(self.world_model_index) != self.n:
            raise SpecError("world_model_index needs one entry per action")

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"

    @property
    def world_model_dim(self) -> int:
        """Width of the action input of the world model (one-hot or raw vector)."""
        if self.world_model_index is not None:
            return ATARI_FULL_ACTIONS
        return self.n

    def to_world_model(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions -> world-model action ids (discrete) or vectors (continuous)."""
        if self.world_model_index is None:
            return actions
        return np.asarray(self.world_model_index, dtype=np.int64)[
            np.asarray(actions, dtype=np.int64)
        ]

    def encode(self, actions: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """The world model's action input: one-hot in world-model space (discrete) or the raw
        vector (continuous), float32 with a trailing axis of world_model_dim.

        `valid` (same leading shape, bool) zeroes the entries where it is False: the
        pre-action of an episode's first frame is all zeros.
        """
        actions = np.asarray(actions)
        if self.is_discrete:
            ids = self.to_world_model(np.where(valid, actions, 0) if valid is not None else actions)
            encoded = np.eye(self.world_model_dim, dtype=np.float32)[ids]
        else:
            encoded = actions.astype(np.float32, copy=True)
        if valid is not None:
            encoded *= np.asarray(valid, dtype=np.float32)[..., None]
        return encoded

    def validate(self, actions: np.ndarray, where: str) -> None:
        """Raise SpecError naming `where` if any action lies outside this space."""
        actions = np.asarray(actions)
        if self.is_discrete:
            if actions.ndim != 1:
                raise SpecError(
                    f"{where}: discrete actions must be a 1-d array, got shape {actions.shape}"
                )
            if actions.size and not np.issubdtype(actions.dtype, np.integer):
                raise SpecError(f"{where}: discrete actions must be integers, got {actions.dtype}")
            if actions.size and (actions.min() < 0 or actions.max() >= self.n):
                raise SpecError(
                    f"{where}: action {int(actions.max() if actions.max() >= self.n else actions.min())} "
                    f"is outside the discrete space [0, {self.n})"
                )
        else:
            if actions.ndim != 2 or actions.shape[1] != self.n:
                raise SpecError(
                    f"{where}: continuous actions must have shape (T, {self.n}), got {actions.shape}"
                )
            if not np.all(np.isfinite(actions)):
                raise SpecError(f"{where}: continuous actions contain NaN or Inf")
            low, high = np.asarray(self.low), np.asarray(self.high)
            if actions.size and (np.any(actions < low - 1e-6) or np.any(actions > high + 1e-6)):
                raise SpecError(
                    f"{where}: continuous actions fall outside [{self.low}, {self.high}]"
                )

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActionSpec:
        data = dict(data)
        for key in ("low", "high", "world_model_index", "meanings"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class EnvSpec:
    """An environment as the project sees it: id, frame shape (C, H, W) uint8, actions."""

    env_id: str
    obs_shape: tuple[int, int, int]
    action: ActionSpec
    # who drew the frames: "render" (the env's own), a ditto drawing ("ditto-cartpole-1"),
    # or an imported dataset's source ("minari:<id>")
    pixels: str = "render"

    def __post_init__(self) -> None:
        if len(self.obs_shape) != 3 or self.obs_shape[0] not in (1, 3):
            raise SpecError(
                f"frames must have shape (C, H, W) with C in (1, 3), got {self.obs_shape}"
            )

    def check_compatible(self, other: EnvSpec, what: str) -> None:
        """Raise SpecError if `other` (described by `what`) is not the same env."""
        if other.env_id != self.env_id:
            raise SpecError(f"{what} is for {other.env_id}, expected {self.env_id}")
        if tuple(other.obs_shape) != tuple(self.obs_shape):
            raise SpecError(
                f"{what} has frames of shape {other.obs_shape}, expected {self.obs_shape}"
            )
        if other.action != self.action:
            raise SpecError(
                f"{what} has action space {other.action.kind}({other.action.n}), "
                f"expected {self.action.kind}({self.action.n})"
            )
        if other.pixels != self.pixels:
            raise SpecError(
                f"{what} has frames drawn by {other.pixels!r}, but {self.env_id} frames are now drawn by "
                f"{self.pixels!r}; collect the data again (and retrain on it)"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "obs_shape": list(self.obs_shape),
            "action": self.action.to_json(),
            "pixels": self.pixels,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvSpec:
        return cls(
            env_id=data["env_id"],
            obs_shape=tuple(data["obs_shape"]),
            action=ActionSpec.from_json(data["action"]),
            pixels=data.get("pixels", "render"),  # specs written before ditto drew any env
        )
