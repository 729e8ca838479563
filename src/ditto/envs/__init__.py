"""Environments from pixels: every env yields uint8 frames of shape (C, 64, 64).

    env = make_env("ALE/Pong-v5", seed=0)          # one env, gymnasium API
    venv = make_vector_env("ALE/Pong-v5", 8, seed=0)  # batched (ALE's C++ vector env)
    spec = env_spec("CartPole-v1")                   # frame shape + action space

`env.get_wrapper_attr("ditto_spec")` is the env's EnvSpec.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache

# Rendering envs (box2d, classic control) go through pygame/SDL; there is no screen.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym

from ditto.envs.atari import ale_game_name, is_atari, make_atari
from ditto.envs.babyai import babyai_ids, is_babyai, make_babyai
from ditto.envs.minatar import is_minatar, make_minatar, minatar_ids
from ditto.envs.pixels import FRAME_SIZE, to_frame
from ditto.envs.rendered import make_rendered
from ditto.envs.vector import make_vector_env
from ditto.errors import DittoError, EnvError
from ditto.specs import EnvSpec

__all__ = [
    "FRAME_SIZE",
    "ale_game_name",
    "check_sticky_actions",
    "env_spec",
    "has_sticky_actions",
    "is_atari",
    "is_babyai",
    "is_minatar",
    "make_env",
    "make_vector_env",
    "to_frame",
]


def _check_env_id(env_id: str) -> None:
    if env_id in gym.registry or env_id in minatar_ids() or env_id in babyai_ids():
        return
    known = [*gym.registry, *minatar_ids(), *babyai_ids()]
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EnvError(
        f"unknown env id {env_id!r}{hint} (Atari games are ALE/<Game>-v5, e.g. ALE/Pong-v5; "
        "MinAtar games are MinAtar/<Game>-v1, e.g. MinAtar/Breakout-v1; "
        f"BabyAI levels are {', '.join(babyai_ids())}; "
        "other envs are gymnasium ids that render rgb_array, e.g. CartPole-v1)"
    )


def has_sticky_actions(env_id: str) -> bool:
    """Whether sticky_actions means something for env_id (Atari: 0.25; MinAtar: 0.1)."""
    return is_atari(env_id) or is_minatar(env_id)


def check_sticky_actions(env_id: str) -> None:
    """Refuse sticky actions for an env that has none (asked for, they would silently do nothing)."""
    if not has_sticky_actions(env_id):
        raise DittoError(f"sticky actions are an Atari and MinAtar setting; {env_id} has none")


def _check_options(size: int, noop_max: int, frame_skip: int) -> None:
    if not isinstance(size, int) or not 8 <= size <= 512:
        raise EnvError(f"frame size must be an integer in [8, 512], got {size!r}")
    if noop_max < 0:
        raise EnvError(f"noop_max must be >= 0, got {noop_max}")
    if frame_skip < 1:
        raise EnvError(f"frame_skip must be >= 1, got {frame_skip}")


def _missing_package(env_id: str, exc: ImportError) -> EnvError:
    package = exc.name or str(exc)
    return EnvError(
        f"{env_id} needs the Python package {package!r}, which is not installed "
        f"(pip install {package.split('.')[0]})"
    )


def make_env(
    env_id: str,
    *,
    seed: int | None = None,
    size: int = FRAME_SIZE,
    grayscale: bool = True,
    sticky_actions: bool = False,
    noop_max: int = 30,
    frame_skip: int = 4,
    keep_screen: bool = False,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """Make `env_id` with (C, size, size) uint8 frames as observations.

    Atari (ALE/<Game>-v5): the paper's preprocessing; noop_max and frame_skip
    apply to Atari only, sticky_actions to Atari (0.25) and MinAtar (0.1, see
    envs/minatar.py). BabyAI (BabyAI/<Level>-v0, the `babyai` extra): RGB frames of
    the whole room whatever grayscale says, the mission in info (envs/babyai.py).
    keep_screen: keep the full-resolution max-pooled RGB screen in
    `env.get_wrapper_attr("screen")` for experts that build their own observation. Other envs: their rgb_array rendering; the
    env's own observation (state vector) is in `env.get_wrapper_attr("state")`.
    max_episode_steps counts agent steps (after frame skip).
    """
    _check_env_id(env_id)
    _check_options(size, noop_max, frame_skip)
    if is_babyai(env_id):
        env = make_babyai(env_id, size=size, max_episode_steps=max_episode_steps)
    elif is_minatar(env_id):
        env = make_minatar(
            env_id,
            size=size,
            grayscale=grayscale,
            sticky_actions=sticky_actions,
            max_episode_steps=max_episode_steps,
        )
    elif is_atari(env_id):
        env = make_atari(
            env_id,
            size=size,
            grayscale=grayscale,
            sticky_actions=sticky_actions,
            noop_max=noop_max,
            frame_skip=frame_skip,
            keep_screen=keep_screen,
            max_episode_steps=max_episode_steps,
        )
    else:
        try:
            render_modes = _render_modes(env_id)
        except ImportError as exc:  # the env's module needs a package that is not installed
            raise _missing_package(env_id, exc) from None
        if "rgb_array" not in render_modes:
            raise EnvError(
                f"{env_id} cannot render rgb_array frames (its render modes: {list(render_modes) or 'none'}); "
                "ditto learns from pixels, so it needs an env that renders"
            )
        try:
            env = make_rendered(
                env_id, size=size, grayscale=grayscale, max_episode_steps=max_episode_steps
            )
        except DittoError:
            raise
        except gym.error.DependencyNotInstalled as exc:
            raise EnvError(f"{env_id} needs a package that is not installed: {exc}") from None
        except ImportError as exc:
            raise _missing_package(env_id, exc) from None
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _render_modes(env_id: str) -> list[str]:
    entry_point = gym.spec(env_id).entry_point
    creator = (
        entry_point
        if callable(entry_point)
        else gym.envs.registration.load_env_creator(entry_point)
    )
    return list(getattr(creator, "metadata", {}).get("render_modes", []))


@lru_cache(maxsize=64)
def _cached_spec(env_id: str, size: int, grayscale: bool) -> EnvSpec:
    env = make_env(env_id, size=size, grayscale=grayscale)
    try:
        return env.get_wrapper_attr("ditto_spec")
    finally:
        env.close()


def env_spec(env_id: str, *, size: int = FRAME_SIZE, grayscale: bool = True) -> EnvSpec:
    """The frame shape and action space of `env_id` (made once and cached)."""
    return _cached_spec(env_id, size, grayscale)
