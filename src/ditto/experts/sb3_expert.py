"""A stable-baselines3 policy acting as an expert, on its own observation.

`build_expert` fits a loaded model to an env and makes the `SB3Expert` (`load_sb3_expert`
and `load_zoo_expert` load the model and call it). The agent acts on its OWN observation,
not on the 64x64 frame the dataset records:

- envs whose agent was trained on the state vector: `env.get_wrapper_attr("state")`;
- Atari agents trained with SB3's AtariWrapper: a stack of 84x84 grayscale frames
  built from the full-resolution max-pooled RGB screen (`env.get_wrapper_attr("screen")`),
  so the env must be made with `keep_screen=True` (`expert.keep_screen` says so).
  The expert also replays what AtariWrapper hid from the agent during training: the
  frame stack restarts (zeros) after every reset and lost life, and games with a FIRE
  button get FIRE then action 2 after a reset (plus a NOOP first after a lost life),
  as SB3's EpisodicLifeEnv and FireResetEnv do. These steps are the expert's actions.

Observations are normalised with the VecNormalize statistics when given (`ObsNormalizer`,
frozen). Atari experts with a policy distribution (PPO, A2C) sample their actions, seeded
by the expert's seed, as RL-Baselines3-Zoo's enjoy.py does for Atari (a greedy Atari policy
can repeat one game, or stall, forever); other experts act deterministically.

`act` must be called exactly once per env step (it advances the frame stack), and
`reset(env)` after every `env.reset()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ditto.envs import env_spec, is_atari
from ditto.errors import ExpertError
from ditto.experts.base import Expert
from ditto.specs import ActionSpec

__all__ = ["AtariPreprocessing", "ObsNormalizer", "SB3Expert", "build_expert"]


@dataclass
class ObsNormalizer:
    """VecNormalize's observation normalisation, frozen: clip((obs - mean) / sqrt(var + eps))."""

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float
    epsilon: float

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(obs, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


@dataclass
class AtariPreprocessing:
    """What SB3's AtariWrapper did to the agent's observations and episodes (its kwargs)."""

    screen_size: int = 84
    frame_skip: int = 4
    terminal_on_life_loss: bool = True
    fire_reset: bool = True  # applies to games whose action 1 is FIRE, as FireResetEnv does


@dataclass
class _TimeFeature:
    """sb3-contrib's TimeFeatureWrapper: appends 1 - t / max_steps (1.0 in test mode)."""

    max_steps: int
    test_mode: bool = False


@dataclass
class _Layout:
    """How one observation becomes the policy's input."""

    single_shape: tuple[int, ...]  # one observation (images channel-last), before stacking
    n_stack: int = 1  # VecFrameStack along the last axis, oldest first, zeros after reset
    channels_first: bool = False  # the policy wants (C, H, W) (VecTransposeImage)
    pending_after_reset: list[int] = field(default_factory=list)
    pending_after_life_loss: list[int] = field(default_factory=list)


class SB3Expert(Expert):
    """A stable-baselines3 policy acting on its own observation: sampling its actions with
    `rng` when one is given, its most likely action otherwise."""

    def __init__(
        self,
        model,
        env_id: str,
        layout: _Layout,
        *,
        source: str,
        normalizer: ObsNormalizer | None = None,
        atari: AtariPreprocessing | None = None,
        time_feature: _TimeFeature | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.model, self.env_id, self.source, self.rng = model, env_id, source, rng
        self.layout, self.normalizer = layout, normalizer
        self.atari, self.time_feature = atari, time_feature
        self.keep_screen = atari is not None
        self.discrete = isinstance(model.action_space, gym.spaces.Discrete)
        # normalised observations stay float32, as VecNormalize hands them to the policy
        self._dtype = np.float32 if normalizer is not None else model.observation_space.dtype
        self._stack: np.ndarray | None = None
        self._pending: list[int] = []
        self._lives = 0
        self._t = 0

    def reset(self, env: gym.Env) -> None:
        self._stack = None
        self._t = 0
        self._pending = list(self.layout.pending_after_reset)
        if self.atari is not None:
            frame_skip = _wrapper_attr(env, "frame_skip", None)
            if frame_skip is not None and frame_skip != self.atari.frame_skip:
                raise ExpertError(
                    f"SB3 expert {self.source} was trained with frame skip {self.atari.frame_skip}, "
                    f"but the env skips {frame_skip} frames"
                )
            self._lives = int(env.unwrapped.ale.lives())

    def act(self, env: gym.Env, frame: np.ndarray) -> int | np.ndarray:
        if self.atari is not None:
            lives = int(env.unwrapped.ale.lives())
            if self.atari.terminal_on_life_loss and 0 < lives < self._lives:
                # AtariWrapper ended the agent's episode here: a fresh frame stack after
                # EpisodicLifeEnv's NOOP and FireResetEnv's FIRE, 2.
                self._stack = None
                self._pending = list(self.layout.pending_after_life_loss)
            self._lives = lives
            if self._pending:
                return self._pending.pop(0)
        obs = self._observe(env)
        self._t += 1
        if self.rng is not None:
            return self._sample(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        if self.discrete:
            return int(np.asarray(action).reshape(-1)[0])
        return np.asarray(action, dtype=np.float32).reshape(-1)

    def _sample(self, obs: np.ndarray) -> int:
        """An action drawn from the policy's distribution with the expert's own generator."""
        import torch

        obs_tensor, _ = self.model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            probs = self.model.policy.get_distribution(obs_tensor).distribution.probs
        probs = probs.reshape(-1).double().numpy()
        return int(self.rng.choice(len(probs), p=probs / probs.sum()))

    def _single(self, env: gym.Env) -> np.ndarray:
        if self.atari is not None:
            import cv2

            screen = _wrapper_attr(env, "screen", None)
            if screen is None:
                raise ExpertError(
                    f"SB3 expert {self.source} builds its 84x84 frames from the full screen: "
                    "make the env with keep_screen=True (see expert.keep_screen)"
                )
            size = self.atari.screen_size
            gray = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
            return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)[:, :, None]
        state = _wrapper_attr(env, "state", None)
        if state is None:
            raise ExpertError(
                f"SB3 expert {self.source} acts on the env's state vector, but the env keeps none "
                "(make it with ditto.envs.make_env)"
            )
        state = np.asarray(state)
        if self.time_feature is not None:
            tf = self.time_feature
            feature = 1.0 if tf.test_mode else 1.0 - self._t / tf.max_steps
            state = np.append(state, np.asarray(feature, dtype=state.dtype))
        return state

    def _observe(self, env: gym.Env) -> np.ndarray:
        single = self._single(env)
        if single.shape != self.layout.single_shape:
            raise ExpertError(
                f"SB3 expert {self.source}: the env gave an observation of shape {single.shape}, "
                f"expected {self.layout.single_shape}"
            )
        if self.normalizer is not None:
            single = self.normalizer(single)
        n = self.layout.n_stack
        if n == 1:
            obs = single
        else:
            c = single.shape[-1]
            if self._stack is None:
                self._stack = np.zeros((*single.shape[:-1], c * n), dtype=self._dtype)
            self._stack[..., :-c] = self._stack[..., c:]
            self._stack[..., -c:] = single
            obs = self._stack
        if self.layout.channels_first:
            obs = obs.transpose(2, 0, 1)
        return np.ascontiguousarray(obs, dtype=self._dtype)


def _wrapper_attr(env: gym.Env, name: str, default: Any) -> Any:
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return default


# --------------------------------------------------------------------------------------------
# Fitting a model to an env.


def build_expert(
    model,
    env_id: str,
    source: str,
    *,
    normalizer: ObsNormalizer | None,
    frame_stack: int | None,
    atari_kwargs: dict[str, Any] | None,
    time_feature_kwargs: dict[str, Any] | None,
    seed: int | None,
) -> SB3Expert:
    """The expert acting with `model` (loaded from `source`) in `env_id`, once its actions and
    observations are checked to fit the env's: `frame_stack` frames stacked, SB3's AtariWrapper
    (its `atari_kwargs`) for Atari envs, sb3-contrib's TimeFeatureWrapper (its
    `time_feature_kwargs`) when given. `seed` seeds the actions of an expert that samples them."""
    spec = env_spec(env_id)
    _check_actions(model, spec.action, env_id, source)
    space = model.observation_space
    found = tuple(int(s) for s in getattr(space, "shape", ()) or ())
    if not isinstance(space, gym.spaces.Box):
        raise ExpertError(f"SB3 expert {source} has observation space {space}; ditto needs a Box")

    atari: AtariPreprocessing | None = None
    time_feature: _TimeFeature | None = None
    if is_atari(env_id):
        atari = AtariPreprocessing(**_known_kwargs(AtariPreprocessing, atari_kwargs or {}))
        layout = _atari_layout(atari, found, frame_stack, spec.action.meanings, env_id, source)
    else:
        layout, time_feature = _state_layout(
            found, frame_stack, time_feature_kwargs, env_id, source
        )
    if normalizer is not None and normalizer.mean.shape != layout.single_shape:
        raise ExpertError(
            f"SB3 expert {source}: VecNormalize statistics have shape {normalizer.mean.shape}, "
            f"but one observation has shape {layout.single_shape}"
        )
    return SB3Expert(
        model,
        env_id,
        layout,
        source=source,
        normalizer=normalizer,
        atari=atari,
        time_feature=time_feature,
        rng=np.random.default_rng(seed) if _samples(model, env_id) else None,
    )


def _atari_layout(
    atari: AtariPreprocessing,
    found: tuple[int, ...],
    frame_stack: int | None,
    meanings: tuple[str, ...] | None,
    env_id: str,
    source: str,
) -> _Layout:
    """Stacked grayscale frames, as the observation shape `found` has them, plus the FIRE /
    NOOP steps AtariWrapper took after a reset or a lost life."""
    size = atari.screen_size
    stack = frame_stack
    if stack is None and len(found) == 3:
        # an sb3: checkpoint without config: the channels are the stacked grayscale frames
        stack = found[-1] if found[:2] == (size, size) else found[0]
    stack = stack or 1
    single = (size, size, 1)
    expected = _stacked(single, stack)
    if found == expected:
        layout = _Layout(single, stack, channels_first=False)
    elif found == _channels_first(expected):
        layout = _Layout(single, stack, channels_first=True)
    else:
        shapes = (
            f"{_channels_first(expected)} or {expected}"
            if frame_stack
            else f"(k, {size}, {size}) or ({size}, {size}, k)"
        )
        raise ExpertError(
            f"SB3 expert {source} expects observations of shape {found}, but an Atari expert "
            f"for {env_id} needs {frame_stack or 'k'} stacked {size}x{size} grayscale frames "
            f"(SB3's AtariWrapper): shape {shapes}"
        )
    meanings = meanings or ()
    fire = atari.fire_reset and len(meanings) >= 3 and meanings[1] == "FIRE"
    layout.pending_after_reset = [1, 2] if fire else []
    layout.pending_after_life_loss = [0, 1, 2] if fire else [0]
    return layout


def _state_layout(
    found: tuple[int, ...],
    frame_stack: int | None,
    time_feature_kwargs: dict[str, Any] | None,
    env_id: str,
    source: str,
) -> tuple[_Layout, _TimeFeature | None]:
    """The env's state (plus the time feature), stacked, as the observation shape `found` has it."""
    state = _state_shape(env_id)
    time_feature: _TimeFeature | None = None
    if time_feature_kwargs is not None:
        if len(state) != 1:
            raise ExpertError(f"TimeFeatureWrapper needs a 1-d state; {env_id} has {state}")
        max_steps = gym.spec(env_id).max_episode_steps or int(
            time_feature_kwargs.get("max_steps", 1000)
        )
        time_feature = _TimeFeature(max_steps, bool(time_feature_kwargs.get("test_mode", False)))
        state = (state[0] + 1,)
    stack = frame_stack or 1
    expected = _stacked(state, stack)
    if found == expected:
        return _Layout(state, stack), time_feature
    if len(state) == 3 and found == _channels_first(expected):  # an image state (CarRacing)
        return _Layout(state, stack, channels_first=True), time_feature
    what = f"{env_id}'s state vector" + (f" stacked {stack} times" if stack > 1 else "")
    raise ExpertError(
        f"SB3 expert {source} expects observations of shape {found}, but {what} has "
        f"shape {expected}; is the checkpoint for another env?"
    )


def _check_actions(model, action: ActionSpec, env_id: str, source: str) -> None:
    space = model.action_space
    if isinstance(space, gym.spaces.Discrete):
        found = ("discrete", int(space.n))
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        found = ("continuous", int(space.shape[0]))
    else:
        raise ExpertError(
            f"SB3 expert {source} has action space {space}, which ditto does not support"
        )
    if found != (action.kind, action.n):
        raise ExpertError(
            f"SB3 expert {source} has {found[0]}({found[1]}) actions, "
            f"but {env_id} has {action.kind}({action.n}) actions"
        )


def _state_shape(env_id: str) -> tuple[int, ...]:
    env = gym.make(env_id)
    try:
        space = env.observation_space
    finally:
        env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ExpertError(f"{env_id} has observation space {space}; SB3 experts need a Box state")
    return tuple(int(s) for s in space.shape)


def _stacked(single: tuple[int, ...], n_stack: int) -> tuple[int, ...]:
    return (*single[:-1], single[-1] * n_stack)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[-1], *shape[:-1])


def _samples(model, env_id: str) -> bool:
    """Whether the expert samples its actions: Atari policies with a discrete distribution."""
    return (
        is_atari(env_id)
        and isinstance(model.action_space, gym.spaces.Discrete)
        and hasattr(model.policy, "get_distribution")
    )


def _known_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    known = {f for f in cls.__dataclass_fields__}
    return {k: v for k, v in kwargs.items() if k in known}
