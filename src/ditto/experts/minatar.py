"""A scripted expert for every MinAtar game: a short look-ahead on copies of the game.

For each action it plays `rollouts` futures of `depth` steps on deep copies of
the game (the first step takes that action, then another action is held for a
while, then random actions), and scores each future by its reward minus a penalty for dying, plus, in Freeway,
how far up the chicken got. It plays the best action, breaking near-ties at
random. Breakout, where the ball's path is longer than the look-ahead, has its
own expert: it moves the paddle to where the ball will come down.

Why this expert and not PPO: it needs no training, it is strong where a short
horizon sees the danger (Breakout, SpaceInvaders, Asterix, Freeway), and it is
honest about what it knows. Its decision is a function of the game state, which
the frame shows in full (every object is a drawn cell; directions are drawn as
trails), plus MinAtar's internal timers. The copies draw their random events
from a generator of the expert's own, so the look-ahead cannot peek at the
game's future random spawns. The random futures and tie-breaks make it stochastic, so
recorded episodes differ even where the game itself is deterministic (Breakout
after its reset).
"""

from __future__ import annotations

import copy

import numpy as np

from ditto.experts.base import Expert


class MinAtarPlanner(Expert):
    """Monte-Carlo look-ahead on the game held by a MinAtar env (envs/minatar.py).

    tie: actions whose value is within `tie` of the best are equally good; one
    of them is chosen at random.
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        rollouts: int = 6,
        depth: int = 10,
        death_penalty: float = 5.0,
        discount: float = 0.97,
        tie: float = 0.05,
    ):
        # A stream of its own: EpsilonExpert draws from default_rng(seed) beside it.
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        # The random spawns of every imagined future come from here, not from the game's.
        self.future_spawns = np.random.RandomState(None if seed is None else seed + 1)
        self.rollouts, self.depth = rollouts, depth
        self.death_penalty, self.discount, self.tie = death_penalty, discount, tie

    def act(self, env, frame):
        base = env.unwrapped
        game, actions = base.game.env, base.actions
        futures = np.array(
            [
                [self._future(game, actions, first) for _ in range(self.rollouts)]
                for first in range(len(actions))
            ]
        )
        # Half the best future, half the average: random futures mostly die where a
        # careful player would not, so the best one says what the action makes possible.
        values = 0.5 * futures.max(axis=1) + 0.5 * futures.mean(axis=1)
        good = np.flatnonzero(values >= values.max() - self.tie)
        for preferred in _preferences(game, actions):
            if preferred in good:
                return preferred
        return int(self.rng.choice(good))

    def _future(self, game, actions: list[int], first: int) -> float:
        """One random future after `first`: another action held for a random number of
        steps, then random actions (move somewhere and wait is how most of these games
        are played, and a purely random future rarely finds it)."""
        sim = clone_game(game, self.future_spawns)
        held, hold = int(self.rng.integers(len(actions))), int(self.rng.integers(self.depth))
        value, weight = 0.0, 1.0
        for step in range(self.depth):
            if step == 0:
                choice = first
            elif step <= hold:
                choice = held
            else:
                choice = int(self.rng.integers(len(actions)))
            reward, terminal = sim.act(actions[choice])
            value += weight * reward
            if terminal:
                return value - weight * self.death_penalty
            weight *= self.discount
        return value + weight * _progress(sim)


def clone_game(game, random: np.random.RandomState):
    """A copy of a MinAtar game that plays on without touching the original (its arrays and
    lists copied), drawing its random events from `random`."""
    sim = copy.copy(game)
    for name, value in vars(game).items():
        if isinstance(value, np.ndarray):
            setattr(sim, name, value.copy())
        elif isinstance(value, list):
            setattr(sim, name, copy.deepcopy(value))
    sim.random = random
    return sim


def _progress(game) -> float:
    """A value for where a future ends, where the horizon is too short to see the outcome:
    in Freeway, how far up the chicken is (0 to 0.9)."""
    if type(game).__module__.endswith(".freeway"):
        return (9 - game.pos) / 10
    return 0.0


def _preferences(game, actions: list[int]) -> list[int]:
    """Indices of the actions to take first among equally good ones, in order. In Freeway, up,
    then waiting: a random tie-break there moved the chicken down a quarter of the time where
    every action was safe, so the expert's actions said little about the frame."""
    if type(game).__module__.endswith(".freeway"):
        return [actions.index(code) for code in (2, 0) if code in actions]  # MinAtar: 2 up, 0 no-op
    return []


class MinAtarBreakoutExpert(Expert):
    """Breakout: wait under where the ball will come down, varying the return.

    The ball's path to the paddle's row is simulated on a copy of the game (bricks and
    walls included; it is deterministic). For each descent the paddle picks one of the
    two columns that return the ball (straight back, or on at an angle) at random and
    heads there. It takes a random action with probability `wander` only while it could
    still arrive `margin` steps early: the ball then takes new paths instead of
    repeating one loop, episodes differ, and a repeated action (sticky actions) does not
    lose the ball. Closer to the landing it still takes a random action with probability
    `slip` (as an agent that samples its actions does) wherever one wrong step leaves time
    to get back: the episodes then show it stepping back under a ball that is about to
    land, a correction a clone needs and a flawless expert never shows.
    """

    def __init__(
        self, seed: int | None = None, *, wander: float = 0.3, margin: int = 5, slip: float = 0.1
    ):
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.wander, self.margin, self.slip = wander, margin, slip
        self._descent: tuple[tuple[int, int], int] | None = None  # (columns, steps) last seen
        self._column = 0

    def reset(self, env) -> None:
        self._descent = None

    def act(self, env, frame):
        game = env.unwrapped.game.env
        columns, steps = breakout_landing(game)
        if self._descent is None or self._descent[0] != columns or steps > self._descent[1]:
            self._column = int(self.rng.choice(columns))  # a new descent (or a new path)
        self._descent = (columns, steps)
        distance = self._column - game.pos
        slack = steps - abs(distance)  # steps to spare on the way to the column
        if self.rng.random() < (self.wander if slack > self.margin else self.slip * (slack > 2)):
            return int(self.rng.integers(3))  # NOOP, LEFT, RIGHT
        return 0 if distance == 0 else (1 if distance < 0 else 2)


def breakout_landing(game, limit: int = 60) -> tuple[tuple[int, int], int]:
    """The two paddle columns that return the ball when it next comes down (the one it
    falls from and the one it falls to), and how many steps away that is."""
    sim = clone_game(game, game.random)  # the ball's path draws no random numbers
    for step in range(limit):
        if sim.ball_y == 8 and sim.ball_dir in (2, 3):  # one row above the paddle, going down
            onto = sim.ball_x + (1 if sim.ball_dir == 2 else -1)
            return (sim.ball_x, min(max(onto, 0), 9)), step + 1
        _, terminal = sim.act(0)
        if terminal:
            break
    return (sim.ball_x, sim.ball_x), limit
