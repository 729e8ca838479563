"""SB3 / RL-Zoo experts and the resumable PPO trainer (tiny models, no downloads)."""

import json
import zipfile
from collections import OrderedDict
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from ditto.envs import make_env
from ditto.errors import DittoError, ExpertError
from ditto.experts import EpsilonExpert, make_expert
from ditto.experts.sb3 import load_vecnormalize, load_zoo_config, vecnormalize_path
from ditto.experts.sb3_checkpoint import read_zip_data as _read_zip_data
from ditto.experts.train import checkpoint_path, export_expert, train_ppo

TINY = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
SMALL_CNN = {"ortho_init": False, "features_extractor_kwargs": {"features_dim": 32}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cartpole_model():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", **TINY)
    return model.learn(128)


def run_steps(env, expert, steps, seed=0):
    frame, _ = env.reset(seed=seed)
    expert.reset(env)
    actions = []
    for _ in range(steps):
        action = expert.act(env, frame)
        actions.append(action)
        frame, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return actions


# --- sb3:PATH.zip -------------------------------------------------------------------------


def test_sb3_expert_acts_on_the_state_vector(tmp_path, cartpole_model):
    path = tmp_path / "cartpole.zip"
    cartpole_model.save(path)
    expert = make_expert(f"sb3:{path}", "CartPole-v1")
    assert expert.keep_screen is False and expert.reads_env is True and expert.normalizer is None
    env = make_env("CartPole-v1")
    frame, _ = env.reset(seed=0)
    expert.reset(env)
    steps, done = 0, False
    while not done:
        action = expert.act(env, frame)
        expected, _ = cartpole_model.predict(env.get_wrapper_attr("state"), deterministic=True)
        assert isinstance(action, int) and action == int(expected)
        frame, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        steps += 1
    assert steps >= 8
    env.close()


def test_sb3_algorithm_is_read_from_the_checkpoint(tmp_path):
    for cls in (A2C, DQN):
        path = tmp_path / f"{cls.__name__}.zip"
        cls("MlpPolicy", "CartPole-v1", device="cpu").save(path)
        assert type(make_expert(f"sb3:{path}", "CartPole-v1").model) is cls
    named = make_expert(f"sb3:a2c:{tmp_path / 'A2C.zip'}", "CartPole-v1")  # sb3:ALGO:PATH
    assert type(named.model) is A2C


def test_sb3_continuous_actions(tmp_path):
    path = tmp_path / "pendulum"  # SB3 appends .zip; the spec may omit it
    SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=0).save(path)
    expert = make_expert(f"sb3:{path}", "Pendulum-v1", epsilon=0.5, seed=0)
    assert isinstance(expert, EpsilonExpert)
    actions = run_steps(make_env("Pendulum-v1"), expert, 5)
    assert all(a.dtype == np.float32 and a.shape == (1,) and -2.0 <= a[0] <= 2.0 for a in actions)


def test_sb3_picks_up_vecnormalize_next_to_the_zip(tmp_path, cartpole_model):
    path = tmp_path / "cart.zip"
    cartpole_model.save(path)
    venv = _fitted_vecnormalize()
    venv.save(vecnormalize_path(path))
    assert vecnormalize_path(path).name == "cart.vecnormalize.pkl"
    expert = make_expert(f"sb3:{path}", "CartPole-v1")
    np.testing.assert_allclose(expert.normalizer.mean, venv.obs_rms.mean)


# --- zoo:FOLDER ---------------------------------------------------------------------------


def _fitted_vecnormalize(seed=0):
    venv = VecNormalize(
        DummyVecEnv([lambda: gym.make("CartPole-v1")]), norm_reward=False, clip_obs=5.0
    )
    venv.seed(seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    for _ in range(300):
        venv.step(rng.integers(2, size=1))
    venv.training = False
    return venv


def _zoo_folder(tmp_path, model, hyperparams, venv=None, env_name="CartPole-v1"):
    folder = tmp_path / "ppo" / f"{env_name}_1"
    (folder / env_name).mkdir(parents=True)
    model.save(folder / f"{env_name}.zip")
    text = yaml.dump(OrderedDict(hyperparams))  # what the Zoo writes: an OrderedDict tag
    (folder / env_name / "config.yml").write_text(text)
    if venv is not None:
        venv.save(folder / env_name / "vecnormalize.pkl")
    return folder, text


def test_zoo_expert_applies_the_saved_normalisation(tmp_path, cartpole_model):
    venv = _fitted_vecnormalize()
    hyperparams = [
        ("n_envs", 8),
        ("n_timesteps", 1e5),
        ("normalize", "{'norm_obs': True, 'norm_reward': False}"),
        ("policy", "MlpPolicy"),
    ]
    folder, text = _zoo_folder(tmp_path, cartpole_model, hyperparams, venv)
    assert "!!python/object/apply:collections.OrderedDict" in text
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    assert load_zoo_config(folder / "CartPole-v1" / "config.yml")["policy"] == "MlpPolicy"

    expert = make_expert(f"zoo:{folder}", "CartPole-v1")
    assert expert.normalizer is not None and expert.normalizer.clip_obs == 5.0
    env = make_env("CartPole-v1")
    frame, _ = env.reset(seed=1)
    expert.reset(env)
    for _ in range(30):
        state = env.get_wrapper_attr("state")
        normalised = venv.normalize_obs(state[None])[0]
        np.testing.assert_allclose(expert._observe(env), normalised, rtol=1e-5, atol=1e-6)
        assert not np.allclose(normalised, state)
        action = expert.act(env, frame)
        assert action == int(cartpole_model.predict(normalised, deterministic=True)[0])
        frame, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    env.close()


def test_zoo_expert_without_normalize_ignores_stats_and_accepts_pair_lists(
    tmp_path, cartpole_model
):
    folder = tmp_path / "run"
    (folder / "CartPole-v1").mkdir(parents=True)
    cartpole_model.save(folder / "best_model.zip")
    (folder / "CartPole-v1" / "config.yml").write_text(
        "- - normalize\n  - false\n- - frame_stack\n  - null\n"
    )
    _fitted_vecnormalize().save(folder / "CartPole-v1" / "vecnormalize.pkl")
    assert make_expert(f"zoo:{folder}", "CartPole-v1").normalizer is None


def test_zoo_config_is_never_executed(tmp_path, cartpole_model):
    folder, _ = _zoo_folder(tmp_path, cartpole_model, [("policy", "MlpPolicy")])
    config = folder / "CartPole-v1" / "config.yml"
    config.write_text("!!python/object/apply:os.system ['echo pwned > pwned.txt']\n")
    with pytest.raises(ExpertError, match="cannot read Zoo config"):
        make_expert(f"zoo:{folder}", "CartPole-v1")
    assert not (tmp_path / "pwned.txt").exists()


def test_vecnormalize_pickle_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    import pickle

    path = tmp_path / "evil.vecnormalize.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ExpertError, match="refusing to load"):
        load_vecnormalize(path)


def test_zoo_normalize_without_stats_is_an_error(tmp_path, cartpole_model):
    folder, _ = _zoo_folder(tmp_path, cartpole_model, [("normalize", True)])
    with pytest.raises(ExpertError, match="vecnormalize.pkl"):
        make_expert(f"zoo:{folder}", "CartPole-v1")


# --- Atari: 84x84 frame stacks from the full screen -----------------------------------------


class _FrameStackEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.fixture(scope="module")
def pong_model():
    return PPO(
        "CnnPolicy",
        DummyVecEnv([_FrameStackEnv]),
        n_steps=8,
        batch_size=8,
        device="cpu",
        seed=0,
        policy_kwargs=SMALL_CNN,
    )


def test_atari_expert_builds_sb3_frame_stacks(tmp_path, pong_model):
    assert pong_model.observation_space.shape == (4, 84, 84)  # SB3 transposed it
    path = tmp_path / "pong.zip"
    pong_model.save(path)
    expert = make_expert(f"sb3:{path}", "ALE/Pong-v5")
    assert expert.keep_screen is True

    env = make_env("ALE/Pong-v5", keep_screen=True)
    frame, _ = env.reset(seed=0)
    expert.reset(env)
    actions, screens = [], []
    for _ in range(5):
        actions.append(expert.act(env, frame))
        screen = env.get_wrapper_attr("screen")
        screens.append(
            cv2.resize(
                cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA
            )
        )
        frame, *_ = env.step(actions[-1])
    assert actions[:2] == [1, 2]  # FireResetEnv: FIRE, then action 2, hidden from the agent
    assert all(isinstance(a, int) and 0 <= a < 6 for a in actions)
    stack = expert._stack.transpose(2, 0, 1)  # the stack holds the 4 frames the agent saw
    np.testing.assert_array_equal(stack[0], np.zeros((84, 84), np.uint8))  # reset: zeros first
    np.testing.assert_array_equal(stack[1:], np.stack(screens[2:5]))
    env.close()


def test_atari_expert_samples_its_actions_reproducibly(tmp_path, pong_model, cartpole_model):
    path = tmp_path / "pong.zip"
    pong_model.save(path)

    def actions(seed):
        expert = make_expert(f"sb3:{path}", "ALE/Pong-v5", seed=seed)
        return run_steps(make_env("ALE/Pong-v5", keep_screen=True), expert, 40)

    first = actions(0)
    assert first == actions(0)  # the expert's seed fixes its draws
    assert first != actions(1)
    assert len(set(first[2:])) > 1  # an untrained policy spreads its actions
    cartpole_model.save(tmp_path / "cart.zip")
    assert make_expert(f"sb3:{tmp_path / 'cart.zip'}", "CartPole-v1", seed=0).rng is None


def test_atari_expert_needs_keep_screen(tmp_path, pong_model):
    path = tmp_path / "pong.zip"
    pong_model.save(path)
    expert = make_expert(f"sb3:{path}", "ALE/Pong-v5")
    env = make_env("ALE/Pong-v5")
    with pytest.raises(ExpertError, match="keep_screen=True"):
        run_steps(env, expert, 3)
    env.close()


class _FakeAle:
    def __init__(self):
        self.lives_left = 5

    def lives(self):
        return self.lives_left


class _FakeBreakout:
    """Just what the expert reads: lives, the RGB screen and the frame skip."""

    def __init__(self):
        self.ale = _FakeAle()
        self.unwrapped = self
        self.screen = np.random.default_rng(0).integers(0, 256, (210, 160, 3), dtype=np.uint8)

    def get_wrapper_attr(self, name):
        return {"screen": self.screen, "frame_skip": 4}[name]


def test_atari_expert_restarts_after_a_lost_life(tmp_path):
    model = PPO(
        "CnnPolicy",
        DummyVecEnv([_FakeBreakoutSpaces]),
        n_steps=8,
        batch_size=8,
        device="cpu",
        policy_kwargs=SMALL_CNN,
    )
    path = tmp_path / "breakout.zip"
    model.save(path)
    expert = make_expert(f"sb3:{path}", "ALE/Breakout-v5")
    env = _FakeBreakout()
    expert.reset(env)
    assert [expert.act(env, None) for _ in range(2)] == [1, 2]
    for _ in range(5):
        expert.act(env, None)
    assert expert._stack[..., 0].any()  # the stack is full
    env.ale.lives_left = 4
    assert [expert.act(env, None) for _ in range(3)] == [0, 1, 2]  # NOOP, FIRE, 2
    expert.act(env, None)
    assert not expert._stack[..., :3].any() and expert._stack[..., 3].any()


class _FakeBreakoutSpaces(_FrameStackEnv):
    action_space = gym.spaces.Discrete(4)


def test_zoo_atari_config(tmp_path, pong_model):
    wrapper = {
        "stable_baselines3.common.atari_wrappers.AtariWrapper": {"terminal_on_life_loss": False}
    }
    hyperparams = [
        ("env_wrapper", [wrapper]),
        ("frame_stack", 4),
        ("normalize", False),
        ("policy", "CnnPolicy"),
    ]
    folder, _ = _zoo_folder(tmp_path, pong_model, hyperparams, env_name="PongNoFrameskip-v4")
    expert = make_expert(f"zoo:{folder}", "ALE/Pong-v5")
    assert expert.keep_screen is True and expert.atari.terminal_on_life_loss is False
    env = make_env("ALE/Pong-v5", keep_screen=True)
    assert len(run_steps(env, expert, 4)) == 4
    env.close()

    (folder / "PongNoFrameskip-v4" / "config.yml").write_text(yaml.dump({"frame_stack": 2}))
    with pytest.raises(ExpertError, match=r"shape \(4, 84, 84\).*2 stacked 84x84"):
        make_expert(f"zoo:{folder}", "ALE/Pong-v5")


def test_zoo_unsupported_wrapper(tmp_path, cartpole_model):
    hyperparams = [("env_wrapper", "gymnasium.wrappers.FrameStackObservation")]
    folder, _ = _zoo_folder(tmp_path, cartpole_model, hyperparams)
    with pytest.raises(ExpertError, match="FrameStackObservation is not supported"):
        make_expert(f"zoo:{folder}", "CartPole-v1")


class _CartPoleWithTime(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    action_space = gym.spaces.Discrete(2)


def test_zoo_time_feature(tmp_path):
    model = PPO(
        "MlpPolicy", DummyVecEnv([_CartPoleWithTime]), n_steps=8, batch_size=8, device="cpu"
    )
    hyperparams = [("env_wrapper", ["sb3_contrib.common.wrappers.TimeFeatureWrapper"])]
    folder, _ = _zoo_folder(tmp_path, model, hyperparams)
    expert = make_expert(f"zoo:{folder}", "CartPole-v1")
    env = make_env("CartPole-v1")
    frame, _ = env.reset(seed=0)
    expert.reset(env)
    for t in range(3):
        obs = expert._observe(env)
        np.testing.assert_allclose(obs[:4], env.get_wrapper_attr("state"))
        assert obs[4] == pytest.approx(1 - t / 500)  # CartPole-v1 episodes last 500 steps
        frame, *_ = env.step(expert.act(env, frame))
    env.close()


# --- errors --------------------------------------------------------------------------------


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    with pytest.raises(ExpertError, match=r"checkpoint .*nope\.zip does not exist") as info:
        make_expert(f"sb3:{tmp_path / 'nope.zip'}", "CartPole-v1")
    assert "\n" not in str(info.value)
    with pytest.raises(ExpertError, match="does not exist"):
        make_expert(f"zoo:{tmp_path / 'nowhere'}", "CartPole-v1")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(ExpertError, match="not a stable-baselines3 checkpoint"):
        make_expert(f"sb3:{path}", "CartPole-v1")


def test_observation_shape_mismatch(tmp_path):
    path = tmp_path / "mountaincar.zip"
    PPO("MlpPolicy", "MountainCar-v0", device="cpu").save(path)  # state (2,), 3 actions
    with pytest.raises(
        ExpertError, match=r"shape \(2,\).*Acrobot-v1's state vector has shape \(6,\)"
    ):
        make_expert(f"sb3:{path}", "Acrobot-v1")  # state (6,), 3 actions


def test_atari_observation_shape_mismatch(tmp_path):
    path = tmp_path / "flat.zip"
    model = PPO("MlpPolicy", DummyVecEnv([_FlatSixActions]), n_steps=8, batch_size=8, device="cpu")
    model.save(path)
    with pytest.raises(ExpertError, match=r"shape \(10,\).*84x84 grayscale frames"):
        make_expert(f"sb3:{path}", "ALE/Pong-v5")


class _FlatSixActions(_FrameStackEnv):
    observation_space = gym.spaces.Box(-1, 1, (10,), np.float32)


def test_action_space_mismatch(tmp_path, cartpole_model):
    path = tmp_path / "cartpole.zip"
    cartpole_model.save(path)
    with pytest.raises(
        ExpertError, match=r"discrete\(2\) actions, but Acrobot-v1 has discrete\(3\)"
    ):
        make_expert(f"sb3:{path}", "Acrobot-v1")


# --- train_ppo -----------------------------------------------------------------------------


def test_train_ppo_saves_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "experts" / "cartpole.zip"
    hyperparams = {"n_envs": 2, **TINY}  # 128 steps a rollout
    path = train_ppo(
        "CartPole-v1", 256, out, checkpoint_every=128, progress=False, hyperparams=hyperparams
    )
    assert path == str(out)
    assert _read_zip_data(out)["num_timesteps"] == 256
    ckpt = checkpoint_path(out)
    assert ckpt.name == "cartpole.checkpoint.zip" and _read_zip_data(ckpt)["num_timesteps"] == 256
    assert not list(out.parent.glob(".*.tmp"))

    out.unlink()  # as if interrupted after the checkpoint
    train_ppo(
        "CartPole-v1", 512, out, checkpoint_every=10_000, progress=False, hyperparams=hyperparams
    )
    data = _read_zip_data(out)
    assert data["num_timesteps"] == 512 and data["_num_timesteps_at_start"] == 256

    before = out.stat().st_mtime_ns
    train_ppo("CartPole-v1", 300, out, progress=False, hyperparams=hyperparams)  # already done
    assert out.stat().st_mtime_ns == before
    with pytest.raises(DittoError, match="is a PPO expert for another env .*observations \\(4,\\)"):
        train_ppo("Acrobot-v1", 300, out, progress=False, hyperparams=hyperparams)
    assert out.stat().st_mtime_ns == before

    actions = run_steps(make_env("CartPole-v1"), make_expert(f"sb3:{out}", "CartPole-v1"), 20)
    assert actions and all(a in (0, 1) for a in actions)


def test_expert_train_out_an_existing_folder_is_refused(tmp_path, capsys):
    """`--out DIR` wrote DIR.zip beside the folder; now a one-line error, nothing written."""
    from ditto.cli import main

    (tmp_path / "experts").mkdir()
    with pytest.raises(DittoError, match="experts is a folder; give a file path"):
        train_ppo("CartPole-v1", 64, tmp_path / "experts", progress=False)
    argv = ["expert", "train", "--env", "CartPole-v1", "--steps", "64"]
    assert main([*argv, "--out", str(tmp_path / "experts")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is a folder" in err
    (tmp_path / "named.zip").mkdir()  # a folder where the .zip would go
    with pytest.raises(DittoError, match="named.zip is a folder"):
        train_ppo("CartPole-v1", 64, tmp_path / "named", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experts", "named.zip"]


def test_train_ppo_resumes_an_atari_expert_whose_frames_sb3_transposed(tmp_path):
    """SB3 records the image space channels-first, (4, 84, 84); the env gives (84, 84, 4)."""
    out = tmp_path / "pong.zip"
    hyperparams = {"n_envs": 1, **TINY, "n_steps": 16, "batch_size": 16, "policy_kwargs": SMALL_CNN}
    train_ppo("ALE/Pong-v5", 16, out, progress=False, hyperparams=hyperparams)
    train_ppo("ALE/Pong-v5", 32, out, progress=False, hyperparams=hyperparams)
    assert _read_zip_data(out)["num_timesteps"] == 32


def test_train_ppo_with_normalisation_saves_and_restores_stats(tmp_path):
    out = tmp_path / "norm.zip"
    hyperparams = {"n_envs": 2, "normalize": True, **TINY}
    train_ppo("CartPole-v1", 128, out, progress=False, hyperparams=hyperparams)
    stats = vecnormalize_path(out)
    assert stats.name == "norm.vecnormalize.pkl" and stats.is_file()
    first = load_vecnormalize(stats)
    train_ppo("CartPole-v1", 256, out, progress=False, hyperparams=hyperparams)  # resumes
    assert _read_zip_data(out)["_num_timesteps_at_start"] == 128
    expert = make_expert(f"sb3:{out}", "CartPole-v1")
    assert expert.normalizer is not None
    assert not np.allclose(expert.normalizer.mean, first.mean)  # continued from the saved stats
    assert run_steps(make_env("CartPole-v1"), expert, 5)


def test_export_keeps_only_what_acting_needs_and_acts_the_same(tmp_path, pong_model):
    src = tmp_path / "pong.zip"
    pong_model.save(src)
    _fitted_vecnormalize().save(vecnormalize_path(src))  # copied along, whatever the env
    dst = export_expert(src, tmp_path / "shipped" / "pong")
    assert dst == tmp_path / "shipped" / "pong.zip" and vecnormalize_path(dst).is_file()
    with zipfile.ZipFile(dst) as archive:  # the optimizer's settings, not its moments
        optimizer = torch.load(archive.open("policy.optimizer.pth"), weights_only=True)
    assert optimizer["state"] == {} and optimizer["param_groups"][0]["lr"] > 0
    data = _read_zip_data(dst)
    assert "lr_schedule" not in data and "clip_range" not in data
    pickled = {k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v}
    assert pickled == {"policy_class", "observation_space", "action_space"}
    assert data["n_steps"] == 8 and "policy_class" in data and "observation_space" in data
    assert dst.stat().st_size < src.stat().st_size

    vecnormalize_path(src).unlink()
    vecnormalize_path(dst).unlink()
    expected, exported = (make_expert(f"sb3:{p}", "ALE/Pong-v5") for p in (src, dst))
    for name, value in expected.model.policy.state_dict().items():
        assert torch.equal(value, exported.model.policy.state_dict()[name]), name
    reloaded = PPO.load(dst, device="cpu")  # SB3's own loader reads it too
    obs = np.random.default_rng(0).integers(0, 255, (3, 4, 84, 84), dtype=np.uint8)
    np.testing.assert_array_equal(
        reloaded.predict(obs, deterministic=True)[0], pong_model.predict(obs, deterministic=True)[0]
    )
    with pytest.raises(DittoError, match="is the checkpoint itself"):
        export_expert(dst, dst)
    with pytest.raises(DittoError, match="does not exist"):
        export_expert(tmp_path / "missing.zip", tmp_path / "out.zip")


def test_shipped_experts_load_safely_and_act():
    """Every expert in experts/ loads through the safe path and plays its env (scores/ names it)."""
    root = Path(__file__).resolve().parents[1] / "experts"
    shipped = sorted(root.glob("*.zip"))
    assert shipped, "experts/ ships no expert"
    for path in shipped:
        score = json.loads((root / "scores" / f"{path.stem}.json").read_text())
        assert score["expert"] == f"sb3:experts/{path.name}" and score["episodes"] >= 30
        expert = make_expert(f"sb3:{path}", score["env_id"], seed=0)
        env = make_env(score["env_id"], keep_screen=expert.keep_screen)
        actions = run_steps(env, expert, 20)
        env.close()
        assert len(actions) == 20
