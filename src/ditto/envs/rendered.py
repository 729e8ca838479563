"""Any gymnasium env that renders rgb_array frames, seen through its 64x64 rendering."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from ditto.envs.cartpole import CARTPOLE_PIXELS, render_cartpole
from ditto.envs.pendulum import PENDULUM_PIXELS, render_pendulum
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


# Envs drawn by ditto for a small camera instead of by their own render (see cartpole.py).
# Each as (the name recorded in EnvSpec.pixels, the drawing function).
RENDERERS: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "CartPole-v1": (CARTPOLE_PIXELS, render_cartpole),
    "Pendulum-v1": (PENDULUM_PIXELS, render_pendulum),
}


class RenderedPixels(gym.ObservationWrapper):
    """Replaces the observation by the env's rendering, resized to (C, size, size).

    `renderer(state, size)`, when given, draws the frame from the env's state
    instead of env.render().

    `state` holds the env's own observation (a state vector): experts that act
    on state, such as the scripted CartPole controller or an SB3 MLP policy,
    read it from there while the dataset records the frame.
    """

    def __init__(
        self,
        env: gym.Env,
        size: int = FRAME_SIZE,
        grayscale: bool = True,
        renderer: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ):
        super().__init__(env)
        self.size, self.grayscale, self.renderer = size, grayscale, renderer
        self.observation_space = gym.spaces.Box(
            0, 255, (1 if grayscale else 3, size, size), np.uint8
        )
        self.state: np.ndarray | None = None

    def observation(self, observation):
        self.state = observation
        image = (
            self.env.render() if self.renderer is None else self.renderer(observation, self.size)
        )
        return to_frame(image, self.size, self.grayscale)


def make_rendered(
    env_id: str, *, size: int, grayscale: bool, max_episode_steps: int | None, **env_kwargs
) -> gym.Env:
    base = gym.make(
        env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **env_kwargs
    )
    pixels, renderer = RENDERERS.get(env_id, ("render", None))
    env = RenderedPixels(base, size, grayscale, renderer)
    env.ditto_spec = EnvSpec(
        env_id, env.observation_space.shape, action_spec_of(base.action_space), pixels
    )
    return env
