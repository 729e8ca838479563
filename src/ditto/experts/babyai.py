"""The BabyAI bot as an expert, and play data: one long episode of a stream of missions.

    expert = make_expert("scripted", "BabyAI/GoToLocal-v0", epsilon=0.1, seed=0)
    episode = play_episode(make_env("BabyAI/GoToLocal-v0"), expert, seed=0, steps=512, annotate=0.01)

The expert is minigrid's `BabyAIBot`, a planner that reads the level (the room, the
objects, the mission's instruction) and solves every mission of these levels. A new
bot is made whenever the level's mission changes (a reset, or a new mission in play).
Its epsilon noise is its own, not `EpsilonExpert`'s: the bot replans from the action
actually taken, so it has to know when a random one was.

Play data (LUMOS's setting): `play_episode` runs one episode of `steps` steps in
which the bot carries out a stream of random missions on the same room. When a
mission is completed (the level terminates) or its step budget runs out (the level
truncates), a segment ends and `BabyAIPixels.new_mission` draws the next mission
on the room as it is now (the agent stays where it is, moved objects stay moved).
The episode is cut at `steps`, its last segment unfinished. Each segment is
recorded with its bounds, whether its mission was completed, and its mission text
only where the annotation is kept: a completed segment keeps it with probability
`annotate`, drawn from the episode's seed, so the kept ones are the same on every run.
"""

from __future__ import annotations

import numpy as np

from ditto.data.episode import Episode, Segment
from ditto.experts.base import Expert

# steps in one play episode (epsilon 0.1: GoToLocal ~90 missions, PutNextLocal ~30)
PLAY_STEPS = 512
LEFT, DROP = 0, 4  # minigrid's actions
PLAY_ANNOTATE = 0.01  # fraction of the completed segments whose mission text is kept


class BabyAIBotExpert(Expert):
    """minigrid's BabyAIBot on the level held by a BabyAI env (envs/babyai.py).

    epsilon: probability of a uniformly random action instead of the bot's; the bot
    is told the action taken and replans from there.
    """

    def __init__(self, n_actions: int, seed: int | None = None, epsilon: float = 0.0):
        self.n_actions, self.epsilon = n_actions, epsilon
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.bot = None
        self.instrs = None  # the instruction the bot plans for
        self.taken: int | None = None  # the action taken last step, for replanning

    def reset(self, env):
        self.bot = self.instrs = self.taken = None

    def _suggest(self, level) -> int | None:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        if self.bot is None or level.instrs is not self.instrs:
            self.bot, self.instrs, self.taken = BabyAIBot(level), level.instrs, None
        try:
            return int(self.bot.replan(self.taken))
        except Exception:  # the bot's asserts after a random action it cannot undo
            pass
        if level.carrying is not None:
            # The bot cannot pick up while holding what a random PICKUP took: put that down
            # first (turning until the cell ahead is free), then plan afresh.
            self.bot = None
            return DROP if level.grid.get(*level.front_pos) is None else LEFT
        try:  # plan afresh from the room as it is now
            self.bot = BabyAIBot(level)
            return int(self.bot.replan(None))
        except Exception:  # e.g. a random toggle opened (destroyed) the target box
            self.bot = None
            return None

    def act(self, env, frame):
        suggested = self._suggest(env.unwrapped.level)
        if suggested is None or self.rng.random() < self.epsilon:
            action = int(self.rng.integers(self.n_actions))
        else:
            action = suggested
        self.taken = action
        return action


def play_episode(env, expert: Expert, seed: int, steps: int, annotate: float) -> Episode:
    """One play episode of `steps` steps from env.reset(seed=seed): see the module's doc."""
    frame, info = env.reset(seed=seed)
    expert.reset(env)
    frames, actions, rewards = [frame], [], []
    bounds: list[tuple[int, int, str, bool]] = []  # (start, end, mission, completed)
    start, mission = 0, info["mission"]
    for t in range(steps):
        action = expert.act(env, frame)
        frame, reward, terminated, truncated, _ = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        if terminated or truncated:  # the mission is done, or its budget spent: the next one
            bounds.append((start, t + 1, mission, bool(terminated)))
            start = t + 1
            if start < steps:
                mission = env.unwrapped.new_mission()
    if start < steps:  # the episode's end cut the last mission short
        bounds.append((start, steps, mission, False))
    kept = np.random.default_rng([seed, 2]).random(len(bounds)) < annotate
    segments = tuple(
        Segment(s, e, completed, mission if completed and keep else None)
        for (s, e, mission, completed), keep in zip(bounds, kept, strict=True)
    )
    return Episode(
        observations=np.stack(frames).astype(np.uint8, copy=False),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=False,
        truncated=True,
        segments=segments,
    )
