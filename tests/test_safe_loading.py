"""Loading an expert runs no code from its files: SB3 zips, their VecNormalize statistics and
Zoo folders are read without unpickling anything that could call a function (issue 30)."""

import base64
import io
import json
import os
import pickle
import shlex
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from ditto.cli import main
from ditto.errors import ExpertError
from ditto.experts import make_expert
from ditto.experts.sb3 import vecnormalize_path

SMALL_CNN = {"ortho_init": False, "features_extractor_kwargs": {"features_dim": 32}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class Touch:
    """Unpickling this creates the file `path`: the proof that a loader ran code from a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.path)}",))


def serialized(obj) -> dict:
    """An entry of an SB3 zip's data, pickled as SB3 writes it."""
    return {
        ":type:": "<class 'object'>",
        ":serialized:": base64.b64encode(pickle.dumps(obj)).decode(),
    }


def rewrite(path, out, entries=None, files=None):
    """A copy of the zip `path` at `out` with some data entries and some files replaced."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(contents["data"])
    data.update(entries or {})
    contents["data"] = json.dumps(data).encode()
    contents.update(files or {})
    with zipfile.ZipFile(out, "w") as archive:
        for name, raw in contents.items():
            archive.writestr(name, raw)
    return out


@pytest.fixture
def no_sb3_loader(monkeypatch):
    """SB3's own loader (which unpickles) must not be used."""

    def refuse(*args, **kwargs):
        raise AssertionError("SB3's loader was used")

    monkeypatch.setattr(BaseAlgorithm, "load", classmethod(refuse))


@pytest.fixture(scope="module")
def cartpole_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cartpole") / "cartpole.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu", seed=0).save(path)
    return path


# --- the safe path rebuilds the models SB3 saves -------------------------------------------


class _FrameStackEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(6)


def _atari_ppo():
    venv = DummyVecEnv([_FrameStackEnv])
    return PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", policy_kwargs=SMALL_CNN)


MODELS = {
    "ppo-atari-cnn": (_atari_ppo, "ALE/Pong-v5"),
    "sac": (lambda: SAC("MlpPolicy", "Pendulum-v1", device="cpu"), "Pendulum-v1"),
    "td3": (lambda: TD3("MlpPolicy", "Pendulum-v1", device="cpu"), "Pendulum-v1"),
    "dqn": (lambda: DQN("MlpPolicy", "CartPole-v1", device="cpu"), "CartPole-v1"),
    "a2c-rmsprop-tanh": (
        lambda: A2C(
            "MlpPolicy",
            "CartPole-v1",
            device="cpu",
            policy_kwargs={
                "activation_fn": torch.nn.Tanh,
                "optimizer_class": torch.optim.RMSprop,
                "optimizer_kwargs": {"alpha": 0.99, "eps": 1e-5},
            },
        ),
        "CartPole-v1",
    ),
    "ppo-gsde-relu": (
        lambda: PPO(
            "MlpPolicy",
            "MountainCarContinuous-v0",
            device="cpu",
            use_sde=True,
            policy_kwargs={
                "log_std_init": -2,
                "ortho_init": False,
                "activation_fn": torch.nn.ReLU,
                "net_arch": {"pi": [16], "vf": [16]},
            },
        ),
        "MountainCarContinuous-v0",
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_checkpoints_load_without_sb3s_loader(tmp_path, no_sb3_loader, name):
    make_model, env_id = MODELS[name]
    model = make_model()
    path = tmp_path / f"{name}.zip"
    model.save(path)
    expert = make_expert(f"sb3:{path}", env_id)
    loaded = expert.model
    assert type(loaded) is type(model)
    assert loaded.observation_space == model.observation_space
    assert loaded.action_space == model.action_space
    saved, rebuilt = model.policy.state_dict(), loaded.policy.state_dict()
    assert saved.keys() == rebuilt.keys()
    assert all(torch.equal(saved[key], rebuilt[key]) for key in saved)
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )


def test_gym_era_spaces_are_rebuilt(tmp_path, cartpole_zip, no_sb3_loader):
    """Zoo checkpoints saved with gym (not gymnasium) and numpy 1 name other modules."""

    def gym_era(space) -> dict:
        raw = pickle.dumps(space, protocol=2)
        raw = raw.replace(b"cgymnasium.spaces.", b"cgym.spaces.").replace(
            b"numpy._core", b"numpy.core"
        )
        raw = raw.replace(b"X\x06\x00\x00\x00_shape", b"X\x05\x00\x00\x00shape")
        assert b"gymnasium" not in raw and b"_core" not in raw
        return {":serialized:": base64.b64encode(raw).decode()}

    env = gym.make("CartPole-v1")
    entries = {
        "observation_space": gym_era(env.observation_space),
        "action_space": gym_era(env.action_space),
    }
    path = rewrite(cartpole_zip, tmp_path / "old.zip", entries)
    expert = make_expert(f"sb3:{path}", "CartPole-v1")
    assert expert.model.observation_space == env.observation_space
    assert expert.model.action_space == env.action_space


# --- pickled code is refused, never run ------------------------------------------------------


def _refused(spec, marker, match, **kwargs):
    with pytest.raises(ExpertError, match=match) as info:
        make_expert(spec, "CartPole-v1", **kwargs)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    return str(info.value)


@pytest.mark.parametrize(
    "entry", ["policy_class", "observation_space", "action_space", "policy_kwargs"]
)
def test_pickled_code_in_a_data_entry_is_refused(tmp_path, cartpole_zip, entry):
    marker = tmp_path / "pwned"
    path = rewrite(cartpole_zip, tmp_path / "evil.zip", {entry: serialized(Touch(marker))})
    message = _refused(f"sb3:{path}", marker, "--trust-pickle")
    assert f"'{entry}'" in message and "posix.system" in message


def test_entries_prediction_does_not_need_are_never_unpickled(tmp_path, cartpole_zip):
    marker = tmp_path / "pwned"
    evil = serialized(Touch(marker))
    entries = {"lr_schedule": evil, "clip_range": evil, "rollout_buffer_class": evil}
    path = rewrite(cartpole_zip, tmp_path / "evil.zip", entries)
    assert make_expert(f"sb3:{path}", "CartPole-v1").model is not None
    assert not marker.exists()


def test_the_payload_is_live_and_trust_pickle_runs_it(tmp_path, cartpole_zip, capsys):
    """What --trust-pickle means: SB3 unpickles the entry, and the file's code runs."""
    marker = tmp_path / "pwned"
    evil = {"observation_space": serialized(Touch(marker))}
    path = rewrite(cartpole_zip, tmp_path / "evil.zip", evil)
    with pytest.raises(ExpertError):  # SB3 gets os.system's exit status for a space
        make_expert(f"sb3:{path}", "CartPole-v1", trust_pickle=True)
    assert marker.exists()
    assert "runs any code pickled in it" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the plain pickle
@pytest.mark.parametrize("torch_format", [True, False])
def test_pickled_object_in_policy_pth_is_refused(tmp_path, cartpole_zip, torch_format):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    if torch_format:
        torch.save({"mlp_extractor.policy_net.0.weight": Touch(marker)}, buffer)
    else:
        pickle.dump(Touch(marker), buffer)
    path = rewrite(cartpole_zip, tmp_path / "evil.zip", files={"policy.pth": buffer.getvalue()})
    for trust in (False, True):  # SB3 reads weights with weights_only too: never unpickled
        _refused(f"sb3:{path}", marker, "policy.pth is not plain weights", trust_pickle=trust)


def test_vecnormalize_pickle_next_to_the_zip_is_refused(tmp_path, cartpole_zip):
    marker = tmp_path / "pwned"
    path = rewrite(cartpole_zip, tmp_path / "model.zip")
    vecnormalize_path(path).write_bytes(pickle.dumps(Touch(marker)))
    for trust in (False, True):  # statistics are always read as records
        _refused(f"sb3:{path}", marker, "refusing to load posix.system", trust_pickle=trust)


@pytest.mark.parametrize("evil_file", ["model", "vecnormalize", "config"])
def test_zoo_folder_files_are_never_executed(tmp_path, cartpole_zip, evil_file):
    marker = tmp_path / "pwned"
    folder = tmp_path / "ppo" / "CartPole-v1_1"
    (folder / "CartPole-v1").mkdir(parents=True)
    entries = {"observation_space": serialized(Touch(marker))} if evil_file == "model" else {}
    rewrite(cartpole_zip, folder / "CartPole-v1.zip", entries)
    config = yaml.dump({"normalize": evil_file == "vecnormalize"})
    if evil_file == "config":
        config = f"!!python/object/apply:os.system ['touch {marker}']\n"
    (folder / "CartPole-v1" / "config.yml").write_text(config)
    (folder / "CartPole-v1" / "vecnormalize.pkl").write_bytes(pickle.dumps(Touch(marker)))
    expected = {"model": "--trust-pickle", "vecnormalize": "refusing", "config": "Zoo config"}
    _refused(f"zoo:{folder}", marker, expected[evil_file])


def test_refusals_name_only_what_ditto_cannot_rebuild(tmp_path):
    """A class outside what ditto looks up is refused, naming the entry; --trust-pickle
    then loads it with SB3's loader, saying so."""
    path = tmp_path / "identity.zip"
    policy_kwargs = {"activation_fn": torch.nn.Identity, "net_arch": [8]}
    PPO("MlpPolicy", "CartPole-v1", device="cpu", policy_kwargs=policy_kwargs).save(path)
    with pytest.raises(ExpertError, match="'policy_kwargs'.*Identity.*--trust-pickle"):
        make_expert(f"sb3:{path}", "CartPole-v1")


# --- the command line -----------------------------------------------------------------------


def test_cli_refuses_with_one_error_line(tmp_path, cartpole_zip, capsys):
    marker = tmp_path / "pwned"
    path = rewrite(
        cartpole_zip, tmp_path / "evil.zip", {"policy_kwargs": serialized(Touch(marker))}
    )
    out = tmp_path / "dataset"
    for argv in (
        ["expert", "eval", "--env", "CartPole-v1", "--expert", f"sb3:{path}", "--episodes", "1"],
        ["collect", "--env", "CartPole-v1", "--expert", f"sb3:{path}", "--episodes", "1"]
        + ["--out", str(out)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "--trust-pickle" in err
    assert not marker.exists() and not out.exists()


def test_cli_trust_pickle_loads_with_a_warning(tmp_path, capsys):
    path = tmp_path / "identity.zip"
    policy_kwargs = {"activation_fn": torch.nn.Identity, "net_arch": [8]}
    PPO("MlpPolicy", "CartPole-v1", device="cpu", policy_kwargs=policy_kwargs).save(path)
    argv = ["expert", "eval", "--env", "CartPole-v1", "--expert", f"sb3:{path}", "--episodes", "1"]
    assert main([*argv, "--json", "--trust-pickle"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["episodes"] == 1
    assert "warning: --trust-pickle" in err and "runs any code pickled in it" in err
