import numpy as np
import pytest

from ditto.envs import ale_game_name, env_spec, make_env, make_vector_env, to_frame
from ditto.errors import EnvError
from ditto.specs import EnvSpec, SpecError


@pytest.mark.parametrize(
    "env_id, channels, kind, n",
    [
        ("ALE/Pong-v5", 1, "discrete", 6),
        ("ALE/Breakout-v5", 1, "discrete", 4),
        ("CartPole-v1", 1, "discrete", 2),
        ("LunarLander-v3", 1, "discrete", 4),
        ("BipedalWalker-v3", 1, "continuous", 4),
    ],
)
def test_frames_are_64x64_uint8_and_spec_matches(env_id, channels, kind, n):
    env = make_env(env_id, seed=0)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (channels, 64, 64) and frame.dtype == np.uint8
    frame, *_ = env.step(env.action_space.sample())
    assert frame.shape == (channels, 64, 64)
    spec = env.get_wrapper_attr("ditto_spec")
    assert spec == env_spec(env_id)
    assert (spec.action.kind, spec.action.n) == (kind, n)
    assert frame.std() > 0  # something is drawn


def test_rgb_option():
    env = make_env("CartPole-v1", grayscale=False)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (3, 64, 64)
    assert env_spec("CartPole-v1", grayscale=False).obs_shape == (3, 64, 64)


def test_rendered_env_keeps_state_for_experts():
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    assert env.get_wrapper_attr("state").shape == (4,)


def test_atari_maps_minimal_actions_to_full_set():
    action = env_spec("ALE/Pong-v5").action
    assert action.world_model_dim == 18
    assert action.meanings[:2] == ("NOOP", "FIRE")
    assert action.to_world_model(np.array([0, 1, 2, 3])).tolist() == [0, 1, 3, 4]  # RIGHT=3, LEFT=4
    one_hot = action.encode(np.array([2, 5]), valid=np.array([True, False]))
    assert one_hot.shape == (2, 18) and one_hot[0, 3] == 1 and one_hot[1].sum() == 0


def test_noop_resets_start_episodes_in_different_states():
    frames_ram = set()
    for s in range(6):
        env = make_env("ALE/Pong-v5")
        env.reset(seed=s)
        frames_ram.add(env.unwrapped.ale.getRAM().tobytes())
    assert len(frames_ram) > 1


def test_python_and_vector_atari_paths_give_identical_frames():
    """Datasets from the C++ vector env and the Python path must look the same to a model."""
    env = make_env("ALE/Pong-v5", noop_max=0)
    venv = make_vector_env("ALE/Pong-v5", 2, noop_max=0)
    frame, _ = env.reset(seed=1)
    frames, _ = venv.reset(seed=1)
    assert frames.shape == (2, 1, 64, 64)
    assert np.array_equal(frame, frames[0])
    for action in [0, 2, 2, 3, 1, 0, 0, 4, 5]:
        frame, reward, *_ = env.step(action)
        frames, rewards, *_ = venv.step(np.array([action, action]))
        assert np.array_equal(frame, frames[0])
        assert reward == rewards[0]


def test_vector_env_for_rendered_envs():
    venv = make_vector_env("CartPole-v1", 2, seed=0)
    frames, _ = venv.reset(seed=0)
    assert frames.shape == (2, 1, 64, 64)
    frames, *_ = venv.step(np.array([0, 1]))
    assert frames.shape == (2, 1, 64, 64)


def test_game_names_for_vector_env():
    assert ale_game_name("ALE/MsPacman-v5") == "ms_pacman"
    assert ale_game_name("ALE/SpaceInvaders-v5") == "space_invaders"
    assert ale_game_name("ALE/Pong-v5") == "pong"


@pytest.mark.parametrize(
    "env_id, kwargs, message",
    [
        ("Pong-v5", {}, "unknown env id 'Pong-v5'; did you mean"),
        ("NoSuchEnv-v0", {}, "unknown env id"),
        ("CartPole-v1", {"size": 3}, "frame size must be"),
        ("ALE/Pong-v5", {"noop_max": -1}, "noop_max must be >= 0"),
        ("ALE/Pong-v5", {"frame_skip": 0}, "frame_skip must be >= 1"),
    ],
)
def test_bad_env_requests_fail_with_one_clear_line(env_id, kwargs, message):
    with pytest.raises(EnvError, match=message) as info:
        make_env(env_id, **kwargs)
    assert "\n" not in str(info.value)


def test_env_whose_package_is_missing_names_the_package():
    import gymnasium as gym

    gym.register("NeedsMissing-v0", entry_point="ditto_no_such_package.envs:Env")
    try:
        with pytest.raises(EnvError, match="needs the Python package 'ditto_no_such_package'"):
            make_env("NeedsMissing-v0")
    finally:
        del gym.registry["NeedsMissing-v0"]


def test_env_that_cannot_render_is_rejected():
    import gymnasium as gym
    from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv

    class Blind(FrozenLakeEnv):
        metadata = {"render_modes": ["ansi"], "render_fps": 4}

    gym.register("NoRender-v0", entry_point=Blind)
    try:
        with pytest.raises(EnvError, match="cannot render rgb_array"):
            make_env("NoRender-v0")
    finally:
        del gym.registry["NoRender-v0"]


def test_cartpole_frames_show_the_pole_tilt_and_the_cart_position():
    from ditto.envs.cartpole import render_cartpole

    def dark_columns(state, rows):
        gray = render_cartpole(np.array(state, dtype=float)).mean(-1)
        return np.flatnonzero((gray[rows] < 200).any(0)).mean()

    upright, tilted = (
        dark_columns([0, 0, 0.0, 0], slice(0, 20)),
        dark_columns([0, 0, 0.05, 0], slice(0, 20)),
    )
    assert tilted - upright > 1.0  # the tip moves more than a pixel for a 0.05 rad tilt
    assert (
        dark_columns([-1.0, 0, 0, 0], slice(53, 55))
        < dark_columns([1.0, 0, 0, 0], slice(53, 55)) - 10
    )
    env = make_env("CartPole-v1", seed=0)
    frame, _ = env.reset(seed=0)
    state = env.get_wrapper_attr("state")
    assert np.array_equal(frame, to_frame(render_cartpole(state)))


def test_pendulum_frames_show_the_rods_angle():
    from ditto.envs.pendulum import render_pendulum

    def rod_centre(angle):  # (x, y) of the dark pixels, relative to the frame's centre
        gray = render_pendulum(np.array([np.cos(angle), np.sin(angle), 0.0])).mean(-1)
        ys, xs = np.nonzero(gray < 128)
        return xs.mean() - 32, ys.mean() - 32

    for angle, (dx, dy) in ((0.0, (0, -1)), (np.pi, (0, 1)), (np.pi / 2, (-1, 0))):
        x, y = rod_centre(angle)  # angle 0 is up; positive angles turn counter-clockwise
        assert np.sign(np.round([x, y], 1)).tolist() == [dx, dy] and max(abs(x), abs(y)) > 8
    env = make_env("Pendulum-v1", seed=0)
    frame, _ = env.reset(seed=0)
    assert env_spec("Pendulum-v1").pixels == "ditto-pendulum-1"
    assert np.array_equal(frame, to_frame(render_pendulum(env.get_wrapper_attr("state"))))


def test_specs_record_who_draws_the_frames():
    cartpole = env_spec("CartPole-v1")
    assert cartpole.pixels == "ditto-cartpole-1" and env_spec("ALE/Pong-v5").pixels == "render"
    old = {
        k: v for k, v in cartpole.to_json().items() if k != "pixels"
    }  # written before ditto drew CartPole
    assert EnvSpec.from_json(old).pixels == "render"
    assert EnvSpec.from_json(cartpole.to_json()) == cartpole
    with pytest.raises(SpecError, match="drawn by 'render'.*collect the data again"):
        cartpole.check_compatible(EnvSpec.from_json(old), "dataset data/old")
