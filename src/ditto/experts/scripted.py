"""Scripted experts: strong controllers that need no training and no download.

CartPole-v1 balances and Pendulum-v1 swings up and balances from the state vector;
Pong and Breakout read the ball and paddle positions from the Atari console RAM;
the MinAtar games are played by a short look-ahead on copies of the game (minatar.py).

Why the Atari experts look ahead: both games are played with an emulated analog
paddle. Its position lags the input (it keeps moving for ~2 agent steps after the
button is released) and, at frame skip 4, one step of pressing moves it ~24 px,
so it cannot be placed to a few pixels by a closed-form rule. The experts
therefore (1) predict where the ball will meet the paddle line, with wall
bounces, and move the paddle there while the ball is far; (2) in the last couple
of steps before contact, try every short action sequence on a copy of the
emulator state (`ale.cloneState` / `restoreState`) and play the first action of
the best one. The emulator is put back exactly, so the episode is unchanged by
the look-ahead, and the choice is deterministic given the env state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from ditto.envs.minatar import minatar_ids
from ditto.experts.base import Expert
from ditto.experts.minatar import MinAtarBreakoutExpert, MinAtarPlanner


class CartPoleExpert(Expert):
    """A linear state-feedback controller: push towards where the pole is falling.

    The gains weigh pole angle and angular velocity most, with small terms on
    cart position and velocity that keep the cart near the centre over 500 steps.
    """

    GAINS = np.array([0.1, 0.5, 10.0, 2.0])  # x, x_dot, theta, theta_dot

    def act(self, env, frame):
        state = env.get_wrapper_attr("state")
        return int(float(self.GAINS @ state) > 0.0)


class PendulumExpert(Expert):
    """Energy pumping to swing up, then a PD controller that holds the pendulum upright.

    Pendulum-v1 (mass 1, length 1, g = 10, torque in [-2, 2]) cannot lift the rod
    straight up: below the balance region it pushes with full torque along the swing
    while the energy is short of the upright's and against it when above, so each
    swing climbs higher; near the top (|angle| < 0.5 rad) the PD law balances it.
    """

    BALANCE_ANGLE = 0.5  # rad from upright where the PD law takes over
    GAINS = (12.0, 2.5)  # on the angle and the angular velocity

    def act(self, env, frame):
        cos, sin, velocity = env.get_wrapper_attr("state")
        angle = float(np.arctan2(sin, cos))  # 0 is upright
        if abs(angle) < self.BALANCE_ANGLE:
            torque = -(self.GAINS[0] * angle + self.GAINS[1] * velocity)
        else:
            # Energy relative to resting upright: rotational (I = 1/3) + potential.
            energy = velocity**2 / 6 + 5.0 * (cos - 1.0)
            torque = 2.0 * np.sign(velocity) * (1.0 if energy < 0 else -1.0)
        return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32)


def _signed(byte) -> int:
    """A RAM byte as a two's-complement int8."""
    return int(byte) - 256 if byte > 127 else int(byte)


def _fold(v: float, lo: float, hi: float) -> float:
    """Where a ball moving freely to `v` ends up between walls at lo and hi (mirror bounces)."""
    span = hi - lo
    v = (v - lo) % (2 * span)
    return lo + (v if v <= span else 2 * span - v)


class _LookaheadExpert(Expert):
    """Shared plumbing: a frame-skip-4 env and a short search on a cloned emulator."""

    FRAME_SKIP = 4  # make_env's default; the look-ahead plays each action this many frames
    HORIZON = 2  # agent steps searched exhaustively before contact (3**2 sequences)
    ACTIONS: tuple[int, ...] = ()  # indices into the minimal action set the search tries

    def _search(self, env, score) -> int:
        """The first action of the action sequence with the highest score(ale, sequence).

        score plays the sequence on the emulator itself; the state is restored after
        every try. Ties go to the earliest sequence in ACTIONS order.
        """
        ale = env.unwrapped.ale
        state = ale.cloneState(include_rng=True)
        best_score, best_action = None, self.ACTIONS[0]
        try:
            for seq in itertools.product(self.ACTIONS, repeat=self.HORIZON):
                ale.restoreState(state)
                value = score(ale, env.unwrapped._action_set, seq)
                if best_score is None or value > best_score:
                    best_score, best_action = value, seq[0]
        finally:
            ale.restoreState(state)
        return best_action


class PongExpert(_LookaheadExpert):
    """Returns every ball, steeply and fast: the CPU paddle cannot keep up.

    RAM (verified against the screen): 49 ball x (grows to the right; our paddle
    face is at x=188, the CPU's at x=68), 54 ball y (0 while no ball is in play;
    walls bounce it at ~44.5 and ~206.5), 56 ball y-velocity and 58 minus the ball
    x-velocity (int8, pixels per frame), 51 our (right, green) paddle y, 50 the
    CPU paddle y, 13 / 14 CPU / our score. Paddle y 38..203; the ball meets the
    paddle's centre at paddle y ~= ball y - 7.

    Where the ball hits the paddle sets its outgoing y-speed (-2..2 px/frame,
    steepest at the edges), and holding FIRE at contact adds 1 to its x-speed (up
    to 4). The CPU paddle moves ~1.8 px/frame, so steep fast returns beat it.
    Actions: 1 FIRE (stay), 4 RIGHTFIRE (up), 5 LEFTFIRE (down).
    """

    ACTIONS = (1, 4, 5)
    FACE_X, TOP, BOTTOM = 188, 44.5, 206.5
    CENTRE = 7  # ball y - paddle y when the ball meets the paddle's centre
    DEADBAND = 12  # half of one step's move: closer than this, pressing overshoots

    def act(self, env, frame):
        ram = env.unwrapped.ale.getRAM()
        x, y, p = int(ram[49]), int(ram[54]), int(ram[51])
        vx, vy = -_signed(ram[58]), _signed(ram[56])
        if y and vx > 0:
            frames_to_face = (self.FACE_X - x) / vx
            if frames_to_face <= self.FRAME_SKIP * self.HORIZON + 2:
                return self._search(env, self._return_steepness)
            target = _fold(y + vy * frames_to_face, self.TOP, self.BOTTOM) - self.CENTRE
        else:  # ball going away or not in play: wait mid-court
            target = (self.TOP + self.BOTTOM) / 2 - self.CENTRE
        if target > p + self.DEADBAND:
            return 5
        if target < p - self.DEADBAND:
            return 4
        return 1

    def _return_steepness(self, ale, action_set, seq) -> float:
        """|outgoing y-speed| if the ball comes back off our paddle, -100 if it gets past."""
        steps = len(seq) * self.FRAME_SKIP
        for i in range(steps + 24):  # 24 more frames (FIRE held) settle every approach
            ale.act(action_set[seq[i // self.FRAME_SKIP] if i < steps else 1])
            ram = ale.getRAM()
            if ram[54] == 0 or ram[49] > 200:  # ball out of play / behind us
                return -100.0
            if _signed(ram[58]) > 0:  # x-velocity turned negative: returned
                return float(abs(_signed(ram[56])))
        return 0.0


class BreakoutExpert(_LookaheadExpert):
    """Never lets the ball drop; varies the return so the last bricks get hit too.

    RAM (verified against the screen): 72 paddle x (55..191; the ball meets the
    paddle's centre at paddle x ~= ball x - 9), 99 ball x (walls at ~57 and
    ~198), 101 ball y (grows downwards; 0 while no ball is in play, i.e. before
    FIRE launches it at the start and after each lost life; it meets the paddle at
    y ~= 180), 57 lives. The ball velocity is not read from RAM: it is the change
    in position since the previous step, kept in the instance.
    Actions: 0 NOOP, 1 FIRE (launch), 2 RIGHT, 3 LEFT.
    """

    ACTIONS = (0, 2, 3)
    LEFT_WALL, RIGHT_WALL, PADDLE_Y = 57, 198, 180
    CENTRE = 9  # ball x - paddle x when the ball meets the paddle's centre
    DEADBAND = 8

    def __init__(self):
        self.previous: tuple[int, int] | None = None  # ball (x, y) at the last step
        self.decisions = 0  # look-ahead decisions so far: rotates ties between safe returns

    def reset(self, env):
        self.previous, self.decisions = None, 0

    def act(self, env, frame):
        ram = env.unwrapped.ale.getRAM()
        x, y, p = int(ram[99]), int(ram[101]), int(ram[72])
        previous, self.previous = self.previous, (x, y)
        if y == 0:  # no ball in play: launch one (else the episode never ends)
            self.previous = None
            return 1
        if previous is None:  # velocity unknown for one step after a launch
            return 0
        vx, vy = (x - previous[0]) / self.FRAME_SKIP, (y - previous[1]) / self.FRAME_SKIP
        if vy > 0:
            frames_to_paddle = (self.PADDLE_Y - y) / vy
            if frames_to_paddle <= self.FRAME_SKIP * self.HORIZON + 4:
                return self._search_rotating(env)
            target = _fold(x + vx * frames_to_paddle, self.LEFT_WALL, self.RIGHT_WALL) - self.CENTRE
        else:  # ball going up: shadow it
            target = x - self.CENTRE
        if target > p + self.DEADBAND:
            return 2
        if target < p - self.DEADBAND:
            return 3
        return 0

    def _search_rotating(self, env) -> int:
        """Among the action sequences that keep the ball, pick a different one each time.

        Always taking the first safe one hits the ball at the same spot and can loop
        forever above a cleared area; rotating changes the return angle.
        """
        lives = env.unwrapped.ale.lives()
        safe_first_actions = []

        def keeps_ball(ale, action_set, seq):
            kept = self._keeps_ball(ale, action_set, seq, lives)
            if kept:
                safe_first_actions.append(seq[0])
            return kept

        fallback = self._search(env, keeps_ball)
        self.decisions += 1
        choices = list(dict.fromkeys(safe_first_actions))  # distinct, in search order
        if not choices:
            return fallback
        return choices[self.decisions % len(choices)]

    def _keeps_ball(self, ale, action_set, seq, lives) -> bool:
        """Play seq (then NOOP); False if a life is lost before the ball turns upwards."""
        steps, previous_y = len(seq) * self.FRAME_SKIP, None
        for i in range(steps + 40):
            ale.act(action_set[seq[i // self.FRAME_SKIP] if i < steps else 0])
            if ale.lives() < lives:
                return False
            y = int(ale.getRAM()[101])
            if previous_y is not None and previous_y > 150 and 0 < y < previous_y:
                return True  # bounced off the paddle
            previous_y = y
        return True


# Each env's scripted expert, made from the collection's seed (the deterministic ones ignore it).
SCRIPTED_EXPERTS: dict[str, Callable[[int | None], Expert]] = {
    "CartPole-v1": lambda seed: CartPoleExpert(),
    "Pendulum-v1": lambda seed: PendulumExpert(),
    "ALE/Pong-v5": lambda seed: PongExpert(),
    "ALE/Breakout-v5": lambda seed: BreakoutExpert(),
    **{env_id: MinAtarPlanner for env_id in minatar_ids()},
    "MinAtar/Breakout-v1": MinAtarBreakoutExpert,
}
