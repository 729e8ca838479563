"""BabyAI levels (the `minigrid` package) as pixel envs with their missions.

    env = make_env("BabyAI/GoToLocal-v0", seed=0)    # (3, 64, 64) uint8 frames, RGB
    env.get_wrapper_attr("mission")                  # "go to the red ball"

BabyAI (Chevalier-Boisvert et al., 2019) is a grid world whose tasks are missions in
a small English grammar, with a bot that solves them: the CPU-scale stand-in for
LUMOS's language-conditioned benchmark. Two single-room levels, 8x8 cells with the
walls, whose missions the bot solves and that can be re-drawn on the same grid (a
stream of missions in one episode, for play data, see `new_mission`):

- `BabyAI/GoToLocal-v0`: "go to the red ball", one of 8 objects in the room;
- `BabyAI/PutNextLocal-v0`: "put the blue key next to the green box", 8 distinct objects.

The frame is the whole room drawn by minigrid at 8 px a cell, 64x64 without
resizing, with the agent as a red triangle (its direction). The agent's own 7x7 view
was measured as the alternative (docs/envs.md, "BabyAI"): it shows the mission's
target on only part of the steps, the whole room on all of them. Frames are RGB
whatever `grayscale` says: the missions name colours, and minigrid's red and purple
are one gray level apart. `EnvSpec.pixels` is BABYAI_PIXELS.

The mission is in `info["mission"]` after every reset and step, and in
`env.get_wrapper_attr("mission")`; `env.unwrapped.level` is minigrid's level (what the
bot reads). Actions are minigrid's seven (left, right, forward, pickup, drop, toggle,
done; done does nothing in these levels). Rewards and ends are the level's: reward
1 - 0.9 * steps / budget on success, which terminates; the level's step budget (64
for GoToLocal, 128 for PutNextLocal) truncates. `minigrid` is imported only when
a BabyAI env is made.
"""

from __future__ import annotations

import contextlib
import io
import re

import gymnasium as gym
import numpy as np

from ditto.errors import EnvError
from ditto.specs import ActionSpec, EnvSpec

# ditto id -> minigrid's registered id
BABYAI_LEVELS = {
    "GoToLocal": "BabyAI-GoToLocal-v0",
    "PutNextLocal": "BabyAI-PutNextLocal-v0",
}
BABYAI_PIXELS = "ditto-babyai-full-1"  # EnvSpec.pixels: minigrid's whole-room drawing, 8 px a cell
BABYAI_INSTALL = "pip install ditto-il[babyai]"
TILE = 8  # px per cell: an 8x8-cell room is 64x64
FRAME = 64  # px: the frame, without resizing
ACTION_NAMES = ("LEFT", "RIGHT", "FORWARD", "PICKUP", "DROP", "TOGGLE", "DONE")

_BABYAI_ID = re.compile(r"^BabyAI/([A-Za-z]+)-v0$")
# The words of a mission that name its objects, not its task: minigrid's articles, colours
# (COLOR_NAMES, spelled here so that this module imports no minigrid) and object types.
_OBJECT_WORDS = frozenset(
    ("the", "a", "red", "green", "blue", "purple", "yellow", "grey")
    + ("ball", "box", "key", "door", "object", "objects")
)


def is_babyai(env_id: str) -> bool:
    return env_id.startswith("BabyAI/")


def babyai_ids() -> list[str]:
    return [f"BabyAI/{name}-v0" for name in BABYAI_LEVELS]


def babyai_level(env_id: str) -> str:
    """'BabyAI/GoToLocal-v0' -> 'GoToLocal'; ValueError for anything else."""
    match = _BABYAI_ID.match(env_id)
    if not match or match.group(1) not in BABYAI_LEVELS:
        raise ValueError(f"{env_id!r} is not one of {', '.join(babyai_ids())}")
    return match.group(1)


def import_minigrid(env_id: str):
    """minigrid, or one line saying how to install it."""
    try:
        import minigrid
    except ImportError:
        raise EnvError(f"{env_id} needs the optional package minigrid ({BABYAI_INSTALL})") from None
    return minigrid


def mission_type(mission: str) -> str:
    """A mission's template, its words less the objects' names: 'go to the red ball' ->
    'go to', 'put the blue key next to a green box' -> 'put next to' (success is reported
    per type)."""
    return " ".join(w for w in re.findall("[a-z]+", mission.lower()) if w not in _OBJECT_WORDS)


def mission_done(terminated: bool, reward: float) -> bool:
    """Whether a step ended the mission with success: a BabyAI level terminates with reward
    1 - 0.9 * steps / budget on success, and with 0 on a failure (e.g. a wrong object put
    down in a strict level)."""
    return bool(terminated and reward > 0)


def unseen_mission_seeds(
    env_id: str, start: int, count: int, seen: set[str], tries: int = 1000
) -> list[int]:
    """The first `count` reset seeds from `start` on (at most `tries` of them looked at)
    whose mission is not in `seen`: held-out missions, the rooms drawn as any episode's."""
    env = make_babyai(env_id, size=FRAME, max_episode_steps=None)
    seeds = []
    for seed in range(start, start + tries):
        _, info = env.reset(seed=seed)
        if info["mission"] not in seen:
            seeds.append(seed)
            if len(seeds) == count:
                return seeds
    raise EnvError(
        f"{env_id}: only {len(seeds)} of the missions of seeds {start}..{start + tries - 1} are "
        f"unseen in the training annotations, fewer than the {count} episodes asked for "
        "(ask for fewer, or train on fewer annotations)"
    )


class BabyAIPixels(gym.Env):
    """One BabyAI level whose observations are the whole room, 64x64 RGB."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, level_name: str, size: int):
        import_minigrid(f"BabyAI/{level_name}-v0")
        self.level_name = level_name
        self.level = gym.make(BABYAI_LEVELS[level_name]).unwrapped
        self.size = size
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = gym.spaces.Box(0, 255, (3, size, size), np.uint8)

    @property
    def mission(self) -> str:
        return self.level.mission

    def _frame(self) -> np.ndarray:
        image = self.level.get_frame(highlight=False, tile_size=TILE, agent_pov=False)
        if image.shape[:2] != (self.size, self.size):
            import cv2

            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        with contextlib.redirect_stdout(io.StringIO()):  # the level prints its rejected samples
            self.level.reset(seed=seed)
        return self._frame(), {"mission": self.mission}

    def step(self, action):
        _, reward, terminated, truncated, _ = self.level.step(int(action))
        return (
            self._frame(),
            float(reward),
            bool(terminated),
            bool(truncated),
            {"mission": self.mission},
        )

    def render(self):
        return self._frame().transpose(1, 2, 0)

    def new_mission(self) -> str:
        """Set a new random mission of this level on the current room, without a reset.

        The level's own mission generator places the objects and the agent too, so it
        cannot be re-run on a room in play; this draws the instruction as the level
        does (GoToLocal: one of the room's objects; PutNextLocal: two distinct objects
        not already next to each other, the level's own rejection test), from the
        level's random generator (so from the reset's seed), and gives the new
        mission the level's step budget afresh. A go-to target the agent already
        faces is not drawn (the mission would be done before it began).
        """
        from minigrid.envs.babyai.core.roomgrid_level import RejectSampling
        from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc, PutNextInstr

        level = self.level
        objects = [
            cell
            for cell in level.grid.grid
            if cell is not None and cell.type not in ("wall", "door")
        ]
        front = level.grid.get(*level.front_pos)
        for _ in range(1000):
            if self.level_name == "GoToLocal":
                target = level._rand_elem(objects)
                if front is not None and (front.type, front.color) == (target.type, target.color):
                    continue
                instrs = GoToInstr(ObjDesc(target.type, target.color))
            else:
                move, fixed = level._rand_subset(objects, 2)
                instrs = PutNextInstr(
                    ObjDesc(move.type, move.color), ObjDesc(fixed.type, fixed.color)
                )
                try:
                    level.validate_instrs(instrs)
                except RejectSampling:
                    continue
            break
        else:  # pragma: no cover - 8 objects always leave a choice
            raise EnvError(f"no new mission could be drawn in {self.level_name}")
        level.instrs = instrs
        level.surface = level.mission = instrs.surface(level)
        instrs.reset_verifier(level)
        level.step_count = 0
        if not level.fixed_max_steps:
            nav_time = level.room_size**2 * level.num_rows * level.num_cols
            level.max_steps = level.num_navs_needed(instrs) * nav_time
        return level.mission


def make_babyai(env_id: str, *, size: int, max_episode_steps: int | None) -> gym.Env:
    try:
        name = babyai_level(env_id)
    except ValueError as exc:
        raise EnvError(str(exc)) from None
    base = BabyAIPixels(name, size)
    env: gym.Env = base
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(base, max_episode_steps)
    action = ActionSpec(kind="discrete", n=len(ACTION_NAMES), meanings=ACTION_NAMES)
    env.ditto_spec = EnvSpec(env_id, base.observation_space.shape, action, BABYAI_PIXELS)
    return env


def measure_views(env_id: str, episodes: int = 50) -> dict[str, float]:
    """The whole room against the agent's 7x7 view, over the bot's episodes on seeds
    0..episodes-1 (docs/envs.md, "BabyAI"): on what fraction of the steps the mission's
    objects (all of them) are in the agent's view (in the whole room: always), and the
    milliseconds minigrid takes to draw each kind of frame."""
    import time

    from minigrid.utils.baby_ai_bot import BabyAIBot

    env = make_babyai(env_id, size=FRAME, max_episode_steps=None).unwrapped
    seen = steps = solved = 0
    seconds = {"full": 0.0, "agent": 0.0}
    for seed in range(episodes):
        env.reset(seed=seed)
        level, terminated, truncated = env.level, False, False
        bot = BabyAIBot(level)
        while not (terminated or truncated):
            descs = [getattr(level.instrs, k, None) for k in ("desc", "desc_move", "desc_fixed")]
            seen += all(
                level.carrying in d.obj_set or any(level.in_view(*p) for p in d.obj_poss)
                for d in descs
                if d is not None
            )
            steps += 1
            for kind in seconds:
                start = time.perf_counter()
                level.get_frame(highlight=False, tile_size=TILE, agent_pov=kind == "agent")
                seconds[kind] += time.perf_counter() - start
            _, reward, terminated, truncated, _ = env.step(bot.replan())
        solved += bool(terminated and reward > 0)
    return {
        "steps": steps,
        "bot_success": solved / episodes,
        "mission_objects_in_agent_view": seen / steps,
        "mission_objects_in_whole_room": 1.0,
        "ms_full": 1e3 * seconds["full"] / steps,
        "ms_agent": 1e3 * seconds["agent"] / steps,
    }
