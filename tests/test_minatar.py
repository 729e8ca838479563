"""MinAtar games as pixel envs, and their scripted experts."""

import numpy as np
import pytest

from ditto.envs import env_spec, make_env, make_vector_env
from ditto.envs.minatar import GRID, MINATAR_GAMES, draw_grid, minatar_ids, palette
from ditto.errors import EnvError
from ditto.evaluation.protocol import random_return
from ditto.experts import make_expert


@pytest.mark.parametrize("env_id", minatar_ids())
def test_frames_draw_every_occupied_cell_of_the_grid(env_id):
    env = make_env(env_id, seed=0)
    frame, _ = env.reset(seed=0)
    for _ in range(5):
        frame, *_ = env.step(env.action_space.sample())
    state = env.get_wrapper_attr("state")
    assert frame.shape == (1, 64, 64) and frame.dtype == np.uint8
    assert state.shape[:2] == (GRID, GRID)
    # Each cell is a 6x6 block at (2 + 6 row, 2 + 6 col): lit exactly where the grid has something.
    cells = frame[0, 2:62, 2:62].reshape(GRID, 6, GRID, 6)
    assert np.all(cells == cells[:, :1, :, :1])  # blocks are uniform
    np.testing.assert_array_equal(cells[:, 0, :, 0] > 0, state.any(axis=2))
    assert frame[0, :2].max() == 0 and frame[0, 62:].max() == 0  # the border stays dark
    spec = env.get_wrapper_attr("ditto_spec")
    assert spec.pixels == "ditto-minatar-1" and spec.action.kind == "discrete"
    assert env_spec(env_id) == spec


def test_channels_get_distinct_grays_and_the_player_is_drawn_on_top():
    colours = palette(10, grayscale=True)[:, 0]
    assert colours[0] == 0 and len(set(colours.tolist())) == 11
    state = np.zeros((10, 10, 4), bool)
    state[3, 4, [0, 2]] = True  # the player (channel 0) over a trail (channel 2)
    state[5, 5, [1, 3]] = True
    frame = draw_grid(state, palette(4, grayscale=True), 64)[0]
    assert frame[2 + 3 * 6, 2 + 4 * 6] == palette(4, True)[1, 0]
    assert frame[2 + 5 * 6, 2 + 5 * 6] == palette(4, True)[4, 0]
    assert draw_grid(state, palette(4, grayscale=False), 64).shape == (3, 64, 64)


def test_same_seed_same_episode_and_sticky_actions_change_it():
    def frames(sticky):
        env = make_env("MinAtar/Breakout-v1", sticky_actions=sticky)
        out = [env.reset(seed=3)[0]]
        for t in range(40):
            out.append(env.step([2, 1][t // 5 % 2])[0])
        return np.stack(out)

    np.testing.assert_array_equal(frames(False), frames(False))
    assert not np.array_equal(frames(False), frames(True))


def test_vector_env_and_episode_cut():
    venv = make_vector_env("MinAtar/Freeway-v1", 3, seed=0)
    frames, _ = venv.reset()
    assert frames.shape == (3, 1, 64, 64)
    env = make_env("MinAtar/Freeway-v1", max_episode_steps=7)
    env.reset(seed=0)
    truncated = [env.step(0)[3] for _ in range(7)]
    assert truncated == [False] * 6 + [True]


def test_unknown_minatar_game_is_one_clear_error():
    with pytest.raises(EnvError, match="did you mean MinAtar/Breakout-v1"):
        make_env("MinAtar/Breakuot-v1")
    assert len(MINATAR_GAMES) == 5


def play(env_id, seed, steps, sticky_actions=False):
    env = make_env(env_id, max_episode_steps=steps, sticky_actions=sticky_actions)
    expert = make_expert("scripted", env_id, seed=seed)
    frame, _ = env.reset(seed=seed)
    actions, total, done = [], 0.0, False
    while not done:
        action = expert.act(env, frame)
        frame, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        total, done = total + reward, terminated or truncated
    return total, actions


def test_breakout_expert_keeps_the_ball_in_play_and_varies_its_game():
    # Random play loses the ball within ~20 steps and scores ~0.4 a game.
    total_a, actions_a = play("MinAtar/Breakout-v1", 0, 300)
    total_b, actions_b = play("MinAtar/Breakout-v1", 1, 300)
    assert len(actions_a) == len(actions_b) == 300  # never dropped the ball
    assert min(total_a, total_b) >= 10
    assert actions_a != actions_b
    assert play("MinAtar/Breakout-v1", 0, 300)[1] == actions_a  # reproducible from its seed
    # It waits under the landing column with steps to spare, so a repeated action (sticky
    # actions, 10%) rarely loses the ball; catching at the last step lost it within ~100.
    for seed in (0, 1, 2):
        assert len(play("MinAtar/Breakout-v1", seed, 300, sticky_actions=True)[1]) == 300


@pytest.mark.slow
def test_planner_beats_random_play_at_space_invaders():
    """The look-ahead expert scores ~120 in 1000 steps; random play ~5 a game."""
    total, _ = play("MinAtar/SpaceInvaders-v1", 0, 150)
    spec = env_spec("MinAtar/SpaceInvaders-v1")
    assert total >= 10 > random_return(spec.env_id, spec, 4, 2, 0, False)


def test_freeway_expert_goes_up_where_it_is_safe():
    """Equally good actions go to up, then waiting: the chicken crosses, and its actions are
    mostly up (a random tie-break moved it down a quarter of the time)."""
    total, actions = play("MinAtar/Freeway-v1", 0, 120)
    up = make_env("MinAtar/Freeway-v1").unwrapped.actions.index(2)
    assert total >= 2
    assert np.mean(np.array(actions) == up) > 0.6
