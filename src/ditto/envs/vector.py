"""Batched environments: ALE's C++ vector env for Atari, gymnasium's vector envs otherwise.

Both return frames of shape (N, C, H, W) uint8 and use next-step autoreset: the
step after an episode ends returns the first frame of the next episode (its
reward is 0 and the action given for that env is ignored).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ditto.envs.atari import ale_game_name, is_atari
from ditto.envs.pixels import FRAME_SIZE


class _ChannelFirst(gym.vector.VectorObservationWrapper):
    """ALE's vector env gives (N, stack=1, H, W[, 3]); the project's layout is (N, C, H, W)."""

    def __init__(self, env: gym.vector.VectorEnv, channels: int, size: int):
        super().__init__(env)
        self.single_observation_space = gym.spaces.Box(0, 255, (channels, size, size), np.uint8)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, env.num_envs
        )

    def observations(self, observations: np.ndarray) -> np.ndarray:
        if observations.ndim == 5:  # RGB: (N, 1, H, W, 3)
            return np.ascontiguousarray(observations[:, 0].transpose(0, 3, 1, 2))
        return observations


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    seed: int | None = None,
    size: int = FRAME_SIZE,
    grayscale: bool = True,
    sticky_actions: bool = False,
    noop_max: int = 30,
    frame_skip: int = 4,
    num_threads: int = 0,
    asynchronous: bool = False,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of make_env(env_id, ...) stepping together.

    Atari runs in ALE's C++ thread pool (num_threads=0: one per core);
    other envs in gymnasium's Sync (default) or Async vector env.
    """
    from ditto.envs import env_spec, make_env  # the package imports this module

    spec = env_spec(env_id, size=size, grayscale=grayscale)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if is_atari(env_id):
        from ale_py.vector_env import AtariVectorEnv

        venv = AtariVectorEnv(
            ale_game_name(env_id),
            num_envs,
            num_threads=num_threads,
            repeat_action_probability=0.25 if sticky_actions else 0.0,
            img_height=size,
            img_width=size,
            grayscale=grayscale,
            stack_num=1,
            frameskip=frame_skip,
            maxpool=True,
            noop_max=noop_max,
            episodic_life=False,
            reward_clipping=False,
            use_fire_reset=False,
        )
        venv = _ChannelFirst(venv, spec.obs_shape[0], size)
    else:
        fns = [
            (
                lambda: make_env(
                    env_id, size=size, grayscale=grayscale, sticky_actions=sticky_actions
                )
            )
            for _ in range(num_envs)
        ]
        cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
        venv = cls(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    venv.ditto_spec = spec
    if seed is not None:
        venv.reset(seed=seed)
        venv.action_space.seed(seed)
    return venv
