"""Any gymnasium env that renders rgb_array frames, seen through its 64x64 rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ditto.envs.pixels import FRAME_SIZE, to_frame
from ditto.specs import ActionSpec, EnvSpec, SpecError


def action_spec_of(space: gym.Space) -> ActionSpec:
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise SpecError(f"discrete action spaces must start at 0, got start={space.start}")
        return ActionSpec(kind="discrete", n=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ActionSpec(
            kind="continuous",
            n=int(space.shape[0]),
            low=tuple(float(x) for x in space.low),
            high=tuple(float(x) for x in space.high),
        )
    raise SpecError(
        f"unsupported action space {space}: ditto supports Discrete and 1-d Box actions"
    )


# The part of an env's rendering a frame shows, as (top, bottom, left, right)
# pixel bounds; envs not listed show the whole rendering. CartPole's 400x600
# render keeps the pole in a band and its 1-m pole is 125 px of a 600-px track:
# resized whole to 64x64, the expert's typical tilt (0.007 rad) moves the
# pole's tip 0.1 px. The view keeps the track band (rows 160-320) and cart
# positions |x| <= 1.6 (columns 100-500; the scripted expert stays within
# 1.2, episodes end at 2.4), which makes the same tilt about 3x as visible.
VIEWS: dict[str, tuple[int, int, int, int]] = {"CartPole-v1": (160, 320, 100, 500)}


class RenderedPixels(gym.ObservationWrapper):
    """Replaces the observation by the env's rendering (its VIEWS part), resized to (C, size, size).

    `state` holds the env's own observation (a state vector): experts that act
    on state, such as the scripted CartPole controller or an SB3 MLP policy,
    read it from there while the dataset records the frame.
    """

    def __init__(
        self,
        env: gym.Env,
        size: int = FRAME_SIZE,
        grayscale: bool = True,
        view: tuple[int, int, int, int] | None = None,
    ):
        super().__init__(env)
        self.size, self.grayscale, self.view = size, grayscale, view
        self.observation_space = gym.spaces.Box(
            0, 255, (1 if grayscale else 3, size, size), np.uint8
        )
        self.state: np.ndarray | None = None

    def observation(self, observation):
        self.state = observation
        image = self.env.render()
        if self.view is not None:
            top, bottom, left, right = self.view
            image = image[top:bottom, left:right]
        return to_frame(image, self.size, self.grayscale)


def make_rendered(
    env_id: str, *, size: int, grayscale: bool, max_episode_steps: int | None, **env_kwargs
) -> gym.Env:
    base = gym.make(
        env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **env_kwargs
    )
    env = RenderedPixels(base, size, grayscale, VIEWS.get(env_id))
    env.ditto_spec = EnvSpec(env_id, env.observation_space.shape, action_spec_of(base.action_space))
    return env
