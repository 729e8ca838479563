"""Atari games from pixels with the paper's preprocessing (NoFrameskip-v4 semantics).

Noop resets (up to 30), frame skip 4 with a max-pool over the last two frames,
one 64x64 frame (grayscale from ALE's own palette, the same as ALE's vector
env, so that data collected either way looks the same), sticky actions off.
"""

from __future__ import annotations

import re

import ale_py
import gymnasium as gym
import numpy as np

from ditto.envs.pixels import FRAME_SIZE, to_frame
from ditto.specs import ActionSpec, EnvSpec

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on every env

_ATARI_ID = re.compile(r"^ALE/([A-Za-z0-9]+)-v5$")


def is_atari(env_id: str) -> bool:
    return bool(_ATARI_ID.match(env_id))


def ale_game_name(env_id: str) -> str:
    """'ALE/MsPacman-v5' -> 'ms_pacman', the name ALE's vector env takes."""
    match = _ATARI_ID.match(env_id)
    if not match:
        raise ValueError(f"{env_id!r} is not an ALE/<Game>-v5 id")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(1)).lower()


def atari_action_spec(ale_env: gym.Env) -> ActionSpec:
    action_set = ale_env.unwrapped._action_set
    return ActionSpec(
        kind="discrete",
        n=len(action_set),
        world_model_index=tuple(int(a.value) for a in action_set),
        meanings=tuple(ale_env.unwrapped.get_action_meanings()),
    )


class AtariPixels(gym.Wrapper):
    """Frame skip + max-pool + noop reset + resize, around an ALE env with frameskip=1.

    `screen` holds the last max-pooled full-resolution RGB screen when
    keep_screen=True; experts that want their own observation (an SB3 agent's
    84x84 frame stack) build it from there.
    """

    def __init__(
        self,
        env: gym.Env,
        frame_skip: int = 4,
        noop_max: int = 30,
        size: int = FRAME_SIZE,
        grayscale: bool = True,
        keep_screen: bool = False,
    ):
        super().__init__(env)
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if noop_max < 0:
            raise ValueError(f"noop_max must be >= 0, got {noop_max}")
        self.ale = env.unwrapped.ale
        self.frame_skip, self.noop_max = frame_skip, noop_max
        self.size, self.grayscale, self.keep_screen = size, grayscale, keep_screen
        channels = 1 if grayscale else 3
        self.observation_space = gym.spaces.Box(0, 255, (channels, size, size), np.uint8)
        self.screen: np.ndarray | None = None

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None]:
        image = self.ale.getScreenGrayscale() if self.grayscale else self.ale.getScreenRGB()
        rgb = self.ale.getScreenRGB() if self.keep_screen else None
        return image, rgb

    def _observe(self, frames: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        last = frames[-2:]
        image = np.maximum(last[0][0], last[-1][0])
        if self.keep_screen:
            self.screen = np.maximum(last[0][1], last[-1][1])
        return to_frame(image, self.size, self.grayscale)

    def reset(self, *, seed=None, options=None):
        _, info = self.env.reset(seed=seed, options=options)
        noops = int(self.np_random.integers(0, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset()
        return self._observe([self._grab()]), info

    def step(self, action):
        total_reward, frames = 0.0, []
        terminated = truncated = False
        info: dict = {}
        for i in range(self.frame_skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if i >= self.frame_skip - 2 or terminated or truncated:
                frames.append(self._grab())
            if terminated or truncated:
                break
        return self._observe(frames), total_reward, terminated, truncated, info


def make_atari(
    env_id: str,
    *,
    size: int,
    grayscale: bool,
    sticky_actions: bool,
    noop_max: int,
    frame_skip: int,
    keep_screen: bool,
    max_episode_steps: int | None,
) -> gym.Env:
    base = gym.make(
        env_id,
        frameskip=1,
        repeat_action_probability=0.25 if sticky_actions else 0.0,
        full_action_space=False,
        obs_type="ram",  # screens are grabbed by AtariPixels; RAM is the cheapest obs
        max_episode_steps=None if max_episode_steps is None else max_episode_steps * frame_skip,
    )
    env = AtariPixels(base, frame_skip, noop_max, size, grayscale, keep_screen)
    env.ditto_spec = EnvSpec(env_id, env.observation_space.shape, atari_action_spec(base))
    return env
