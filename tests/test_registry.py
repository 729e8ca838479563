"""Methods and rewards as plug-ins: a method is its config, its class and one registration; a
reward is one function and one registration; runs from before each method had its own config
still load."""

import json
from dataclasses import dataclass, fields

import pytest
import torch

from ditto.agents.base import LatentConfig, LatentImitation
from ditto.agents.dbc import DBCConfig
from ditto.agents.ditto import DittoConfig
from ditto.agents.registry import (
    METHODS,
    Method,
    agent_config,
    config_from_json,
    get_method,
    register_method,
)
from ditto.agents.rewards import (
    REWARDS,
    matched_similarity,
    nearest_similarity,
    register_reward,
    reward_function,
)
from ditto.cli import main
from ditto.errors import ConfigError


@pytest.fixture
def registries():
    """The method and reward registries as they were, once the test has added to them."""
    methods, rewards = dict(METHODS), dict(REWARDS)
    yield
    METHODS.clear()
    METHODS.update(methods)
    REWARDS.clear()
    REWARDS.update(rewards)


# A toy method, as a new method's module would hold it: behaviour cloning on latents, with a
# weight on its loss as a setting of its own.
@dataclass(frozen=True)
class ToyConfig(LatentConfig):
    algo: str = "toy"
    weight: float = 1.0  # scales the loss

    PRESETS = {"debug": {"weight": 0.5}}


class Toy(LatentImitation):
    uses_windows = False

    def __init__(self, model, expert, config):
        super().__init__(model, expert, config)
        self.actor = self.deployed_policy(config, model.spec, model.feature_dim)
        self.optimizer = torch.optim.SGD(self.actor.parameters(), lr=config.lr)

    def stateful(self):
        return {"actor": self.actor, "actor_optim": self.optimizer}

    def update(self, step, generator):
        frames = self.expert.sample_acted(self.config.batch, generator)
        loss = -self.actor(self.expert.features[frames]).log_prob(self.expert.actions[frames])
        self.optimizer.zero_grad(set_to_none=True)
        (self.config.weight * loss.mean()).backward()
        self.optimizer.step()
        return {"losses/actor": loss.mean().item()}


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_a_registered_method_trains_evaluates_and_reports_through_the_cli(
    world, tmp_path, capsys, registries
):
    register_method(Method(ToyConfig, Toy, label="Toy method", color="tab:purple"))

    run = tmp_path / "runs" / "toy"
    _cli(
        capsys,
        *("train", "--algo", "toy", "--world-model", str(world / "wm")),
        *("--expert-data", str(world / "expert"), "--expert-episodes", "3", "--out", str(run)),
        *("--preset", "debug", "--steps", "4", "--set", "checkpoint_every=2", "weight=2.0"),
    )
    saved = json.loads((run / "config.json").read_text())["agent"]
    assert (saved["algo"], saved["weight"], saved["horizon"]) == ("toy", 2.0, 4)
    assert "entropy" not in saved  # another method's setting
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 4 and "val/latent_distance" in metrics[-1]

    scored = _cli(capsys, "evaluate", str(run), "--episodes", "1", "--checkpoints", "1", "--save")
    assert "toy" in scored
    _cli(capsys, "report", str(tmp_path / "runs"))
    assert "| Toy method | 3 | 1 |" in (tmp_path / "runs" / "report.md").read_text()

    assert agent_config("debug", algo="toy").weight == 0.5  # its own preset
    with pytest.raises(ConfigError, match="another method is registered as 'toy'"):
        register_method(Method(ToyConfig, Toy, label="Toy again"))


def test_a_registered_reward_serves_both_matches_and_the_cli(world, tmp_path, capsys, registries):
    def dot(pairs):
        return pairs.dot

    register_reward("dot", dot)
    learner, bank = torch.randn(3, 5, 8), torch.randn(37, 8)
    brute = matched_similarity(dot, bank[None, None], learner[:, :, None]).max(-1).values
    assert torch.allclose(brute, (learner @ bank.T).max(-1).values, atol=1e-5)
    assert torch.allclose(nearest_similarity(learner, bank, dot, chunk=10), brute, atol=1e-5)

    run = tmp_path / "ditto"
    _cli(
        capsys,
        *("train", "--algo", "ditto", "--world-model", str(world / "wm"), "--reward", "dot"),
        *("--expert-data", str(world / "expert"), "--expert-episodes", "3", "--out", str(run)),
        *("--preset", "debug", "--steps", "2", "--reward-match", "nearest"),
    )
    assert json.loads((run / "config.json").read_text())["agent"]["reward"] == "dot"


def test_an_unknown_method_or_reward_is_a_clear_error():
    with pytest.raises(ConfigError, match="reward must be one of max_cosine, cosine, neg_l2, got"):
        reward_function("l1")
    with pytest.raises(ConfigError, match="reward must be one of .*, got 'l1'"):
        agent_config("debug", algo="ditto", reward="l1")
    with pytest.raises(ConfigError, match="unknown algo 'gail'; choose one of ditto, dbc, dgail"):
        get_method("gail")
    with pytest.raises(ConfigError, match="DittoConfig is the config of algo 'ditto', not 'dbc'"):
        DittoConfig(algo="dbc")
    # A setting of another method is left out, as before; one of no method is an error.
    assert not hasattr(agent_config("debug", algo="dbc", entropy=0.2), "entropy")
    with pytest.raises(ConfigError, match=r"unknown AgentConfig settings \['entropyy'\]"):
        agent_config("debug", algo="dbc", entropyy=0.2)


# The "agent" section of a D-BC run's config.json from before each method had its own config:
# every method's settings, in the one AgentConfig of that time.
ONE_CONFIG = {
    "algo": "dbc",
    "batch": 16,
    "bc_augment": False,
    "bc_cnn_depth": 4,
    "bc_frame_stack": 1,
    "checkpoint_every": 6,
    "critic_lr": 0.0003,
    "dbc_entropy": 0.2,
    "disc_layers": 2,
    "disc_lr": 0.0003,
    "disc_units": 16,
    "entropy": 0.05,
    "entropy_continuous": 0.0001,
    "eval_envs": 2,
    "eval_episodes": 2,
    "expert_episodes": 3,
    "gamma": 0.95,
    "greedy": False,
    "horizon": 4,
    "keep_checkpoints": 2,
    "lam": 0.95,
    "layers": 2,
    "log_every": 3,
    "lr": 0.0003,
    "policy_ema": 0.0,
    "precision": "fp32",
    "reward": "max_cosine",
    "reward_match": "time",
    "reward_on": "h",
    "seed": 0,
    "steps": 12,
    "target_every": 5,
    "units": 32,
    "val_fraction": 0.1,
}


def test_configs_of_the_one_agent_config_load_as_their_methods():
    config = config_from_json(ONE_CONFIG)
    assert type(config) is DBCConfig
    assert (config.dbc_entropy, config.horizon, config.steps) == (0.2, 4, 12)
    assert set(config.to_json()) == {f.name for f in fields(DBCConfig)}
    for algo in ("ditto", "dgail", "bc"):
        migrated = config_from_json({**ONE_CONFIG, "algo": algo})
        assert type(migrated) is get_method(algo).config
        assert config_from_json(migrated.to_json()) == migrated  # the new form round-trips
    with pytest.raises(ConfigError, match=r"unknown DBCConfig keys \['entropyy'\]"):
        config_from_json({**ONE_CONFIG, "entropyy": 0.1})


def test_a_run_of_the_one_agent_config_evaluates_and_resumes(world, tmp_path, capsys):
    run = tmp_path / "dbc"
    train = ["train", "--algo", "dbc", "--world-model", str(world / "wm"), "--out", str(run)]
    train += ["--expert-data", str(world / "expert"), "--expert-episodes", "3", "--preset", "debug"]
    _cli(capsys, *train, "--steps", "2", "--set", "checkpoint_every=2")
    path = run / "config.json"
    saved = json.loads(path.read_text())
    saved["agent"] = {**ONE_CONFIG, **saved["agent"]}  # as the run would have written it
    path.write_text(json.dumps(saved))
    _cli(capsys, "evaluate", str(run), "--episodes", "1", "--checkpoints", "1")
    assert "trained for 4 updates" in _cli(capsys, *train, "--steps", "4", "--resume")
    assert "entropy" not in json.loads(path.read_text())["agent"]  # rewritten in the new form
