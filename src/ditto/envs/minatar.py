"""MinAtar games (Young & Tian 2019) as pixel envs: Atari's dynamics on a 10x10 grid.

    env = make_env("MinAtar/Breakout-v1", seed=0)   # (1, 64, 64) uint8 frames

MinAtar is the field's CPU-scale stand-in for Atari: five games (Asterix,
Breakout, Freeway, Seaquest, SpaceInvaders) whose objects are whole grid cells,
so a small world model can learn them in minutes. The game state is a
(10, 10, channels) boolean grid; ditto draws each cell as a 6x6 block in a
64x64 frame (2 px border), one colour per channel. Where channels overlap in a
cell the highest channel wins, as in MinAtar's own display, except that channel 0
(the player's own piece in every game) is drawn on top; every channel that
carries motion (the ball's trail, the aliens' direction, the cars' speed) is
drawn, so the frame shows all that the grid shows.

`env.get_wrapper_attr("state")` is the grid (what the latent probe and the
scripted experts read); `env.unwrapped.game` is MinAtar's game object.

Ids are MinAtar/<Game>-v1 with the game's minimal action set (as minatar's own
gymnasium registration). Difficulty ramping is on (MinAtar's default). Sticky
actions are off by default; on, the game repeats the previous action with
probability 0.1, MinAtar's standard setting. Episodes are cut at 1000 agent
steps unless max_episode_steps says otherwise: only Freeway has a time limit of
its own (2500 steps), and a strong Breakout player never loses, so without a
cut an expert's episodes, and every evaluation, would have no end.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np

from ditto.specs import ActionSpec, EnvSpec

MINATAR_GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
MINATAR_PIXELS = "ditto-minatar-1"  # EnvSpec.pixels: ditto's drawing of the grid
MINATAR_STICKY_PROB = 0.1  # MinAtar's standard sticky-action probability
MINATAR_MAX_STEPS = 1000
GRID, CELL, BORDER = 10, 6, 2  # 2 + 10 * 6 + 2 = 64 px

_MINATAR_ID = re.compile(r"^MinAtar/([A-Za-z]+)-v1$")
_ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")  # MinAtar's action_map


def is_minatar(env_id: str) -> bool:
    return env_id.startswith("MinAtar/")


def minatar_ids() -> list[str]:
    return [f"MinAtar/{name}-v1" for name in MINATAR_GAMES]


def minatar_game(env_id: str) -> str:
    """'MinAtar/SpaceInvaders-v1' -> 'space_invaders'; ValueError for anything else."""
    match = _MINATAR_ID.match(env_id)
    if not match or match.group(1) not in MINATAR_GAMES:
        raise ValueError(f"{env_id!r} is not one of {', '.join(minatar_ids())}")
    return MINATAR_GAMES[match.group(1)]


def palette(channels: int, grayscale: bool) -> np.ndarray:
    """(channels + 1, C) uint8 colours: entry 0 is the background, entry c + 1 channel c.

    Gray levels run evenly from 255 for channel 0 (the player) down to 120, so every
    object is bright (a world model's pixel loss barely notices a dim 6x6 block) and
    neighbouring channels differ by at least 15 levels (Seaquest's ten channels); RGB
    uses matplotlib's tab10.
    """
    if grayscale:
        levels = np.round(np.linspace(255, 120, channels)).astype(np.uint8)
        return np.concatenate([[0], levels]).astype(np.uint8)[:, None]
    from matplotlib import colormaps

    colours = colormaps["tab10"](np.arange(channels) % 10)[:, :3]
    return np.concatenate([np.zeros((1, 3)), np.round(colours * 255)]).astype(np.uint8)


def draw_grid(state: np.ndarray, colours: np.ndarray, size: int) -> np.ndarray:
    """A (10, 10, channels) boolean grid as a (C, size, size) uint8 frame."""
    channels = state.shape[-1]
    # The highest set channel of each cell (0: empty), as MinAtar's display does, but the
    # player (channel 0 in every game) on top: a trail passing under it must not hide it.
    index = np.max(state * np.arange(1, channels + 1), axis=2)
    index[state[..., 0]] = 1
    image = np.zeros((size, size, colours.shape[1]), np.uint8)
    cell = (size - 2 * BORDER) // GRID
    span = cell * GRID
    image[BORDER : BORDER + span, BORDER : BORDER + span] = np.repeat(
        np.repeat(colours[index], cell, axis=0), cell, axis=1
    )
    return np.ascontiguousarray(image.transpose(2, 0, 1))


class MinAtarPixels(gym.Env):
    """One MinAtar game whose observations are ditto's 64x64 drawing of the grid."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str, size: int, grayscale: bool, sticky_actions: bool):
        from minatar import Environment

        if size < 2 * BORDER + GRID:
            raise ValueError(f"MinAtar frames need size >= {2 * BORDER + GRID}, got {size}")
        self.game = Environment(
            game, sticky_action_prob=MINATAR_STICKY_PROB if sticky_actions else 0.0
        )
        self.actions = list(self.game.minimal_action_set())
        self.size = size
        self.colours = palette(self.game.n_channels, grayscale)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(
            0, 255, (self.colours.shape[1], size, size), np.uint8
        )

    @property
    def state(self) -> np.ndarray:
        return self.game.state()

    def _frame(self) -> np.ndarray:
        return draw_grid(self.game.state(), self.colours, self.size)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)
        self.game.reset()
        return self._frame(), {}

    def step(self, action):
        reward, terminated = self.game.act(self.actions[int(action)])
        return self._frame(), float(reward), bool(terminated), False, {}

    def render(self):
        return self._frame().transpose(1, 2, 0)


def make_minatar(
    env_id: str, *, size: int, grayscale: bool, sticky_actions: bool, max_episode_steps: int | None
) -> gym.Env:
    base = MinAtarPixels(minatar_game(env_id), size, grayscale, sticky_actions)
    env = gym.wrappers.TimeLimit(base, max_episode_steps or MINATAR_MAX_STEPS)
    action = ActionSpec(
        kind="discrete", n=len(base.actions), meanings=tuple(_ACTION_NAMES[a] for a in base.actions)
    )
    env.ditto_spec = EnvSpec(env_id, base.observation_space.shape, action, MINATAR_PIXELS)
    return env
