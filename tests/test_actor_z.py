"""actor_z: the latent methods' actor acts on (h, z's sample), the paper, or (h, z's probabilities)."""

from __future__ import annotations

import json

import pytest
import torch

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import Actor
from ditto.agents.registry import agent_config, config_from_json
from ditto.agents.rollout import imagine
from ditto.agents.trainer import train_agent
from ditto.checkpoint import load_checkpoint
from ditto.config import world_model_config
from ditto.data import Dataset
from ditto.errors import ConfigError, SpecError
from ditto.evaluation.protocol import agent_loader, evaluate_run, policy_snapshots
from ditto.runs import read_config
from ditto.world_model.trainer import load_world_model, train_world_model


def _z_rows(features: torch.Tensor, model) -> torch.Tensor:
    """(..., F) features -> (N, stoch, classes): each row's z, one categorical per variable."""
    z = features.detach()[..., model.deter_size :]
    return z.reshape(-1, model.config.stoch, model.config.classes)


def _what_it_saw(inputs: list[torch.Tensor], model) -> set[str]:
    """'sample' for each input whose z is one-hot in every variable, 'probs' for each whose z is a
    distribution per variable but not one-hot (an untrained model's probs are never all 0 or 1).
    One-hot up to rounding: the straight-through sample is one_hot + probs - probs."""
    seen = set()
    for features in inputs:
        z = _z_rows(features, model)
        assert torch.allclose(z.sum(-1), torch.ones(()), atol=1e-5)
        assert ((z >= -1e-6) & (z <= 1 + 1e-6)).all()
        one_hot = ((z - z.round()).abs() < 1e-5).flatten(1).all(1)
        seen |= {"sample" if hot else "probs" for hot in one_hot.tolist()}
    return seen


@pytest.fixture
def record_actor_inputs(monkeypatch):
    """Every input of every Actor (the trained one and the deployed one) from here on."""
    inputs: list[torch.Tensor] = []
    forward = Actor.forward

    def recording(self, features):
        inputs.append(features.detach().clone())
        return forward(self, features)

    monkeypatch.setattr(Actor, "forward", recording)
    return inputs


@pytest.mark.parametrize("algo", ["dbc", "ditto"])
@pytest.mark.parametrize("actor_z", ["sample", "probs"])
def test_the_actor_sees_what_actor_z_says_in_training_and_deployed(
    world, tmp_path, one_torch_thread, record_actor_inputs, algo, actor_z
):
    config = agent_config(
        "debug", algo=algo, expert_episodes=3, steps=4, checkpoint_every=2, actor_z=actor_z
    )
    run = train_agent(config, world / "expert", tmp_path / algo, world / "wm", progress=False).path
    assert read_config(run, "agent")["agent"]["actor_z"] == actor_z
    model = load_world_model(world / "wm").model
    # training: D-BC's expert frames, DITTO's imagined steps (and its start states), diagnostics
    assert _what_it_saw(record_actor_inputs, model) == {actor_z}
    record_actor_inputs.clear()
    score = evaluate_run(run, episodes=2, progress=False)  # the deployed agent on real frames
    assert score["episodes"] == 4 and record_actor_inputs
    assert _what_it_saw(record_actor_inputs, model) == {actor_z}


def test_probs_features_are_h_and_each_categoricals_probabilities(world):
    model = load_world_model(world / "wm").model
    episode = Dataset(world / "expert")[0]
    torch.manual_seed(0)  # z is sampled: the same draws, and caching the probs draws none more
    latents = ExpertLatents.from_episodes(model, [episode], 4, torch.device("cpu"), "probs")
    torch.manual_seed(0)
    plain = ExpertLatents.from_episodes(model, [episode], 4, torch.device("cpu"))
    assert plain.probs is None and plain.actor_features is plain.features
    assert torch.equal(latents.features, plain.features)
    assert latents.actor_features is latents.probs
    assert latents.probs.shape == latents.features.shape  # snapshots keep their shapes
    deter = model.deter_size
    assert torch.equal(latents.probs[:, :deter], latents.features[:, :deter])
    assert _what_it_saw([latents.probs], model) == {"probs"}
    # The sample agrees with its distribution: a sampled class has probability > 0.
    sampled = _z_rows(latents.features, model).argmax(-1, keepdim=True)
    assert (_z_rows(latents.probs, model).gather(-1, sampled) > 0).all()
    with pytest.raises(SpecError, match="features takes z in sample, probs, got 'mean'"):
        model.features(model.initial(1), z="mean")


def test_probs_keep_the_gradient_through_the_dynamics_for_continuous_actions(
    make_dataset, tmp_path, one_torch_thread
):
    path, _ = make_dataset("Pendulum-v1", lengths=(30, 30, 30))
    train_world_model([path], tmp_path / "wm", world_model_config("debug", steps=4), progress=False)
    model = load_world_model(tmp_path / "wm").model.requires_grad_(False)
    actor = Actor(model.feature_dim, model.spec.action, 2, 16)
    start = model.obs_step(
        model.initial(4),
        torch.zeros(4, model.spec.action.world_model_dim),
        torch.zeros(4, *model.spec.obs_shape, dtype=torch.uint8),
        torch.ones(4, dtype=torch.bool),
    )
    start_features, start_probs = model.features(start), model.features(start, "probs")
    with pytest.raises(SpecError, match="needs actor_start"):
        imagine(model, actor, start_features, 3, "probs")
    rollout = imagine(model, actor, start_features, 3, "probs", start_probs)
    # The last step's action reaches the actor only through the probs it acted on.
    rollout.actions[-1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())

    config = agent_config("debug", algo="ditto", expert_episodes=2, steps=2, actor_z="probs")
    run = train_agent(config, path, tmp_path / "ditto", tmp_path / "wm", progress=False).path
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(m["losses/actor"])) for m in metrics)


def test_an_unknown_actor_z_is_a_one_line_error(world, tmp_path, capsys):
    from ditto.cli import main

    with pytest.raises(ConfigError, match=r"^actor_z must be one of sample, probs, got 'mean'$"):
        agent_config("debug", algo="dgail", actor_z="mean")
    argv = ["train", "--algo", "dbc", "--world-model", str(world / "wm")]
    argv += ["--expert-data", str(world / "expert"), "--expert-episodes", "2", "--preset", "debug"]
    argv += ["--steps", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    capsys.readouterr()
    assert main([*argv, "--set", "actor_z=mean"]) == 2
    err = capsys.readouterr().err.strip()
    assert "actor_z must be one of sample, probs, got 'mean'" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exit_info:  # the flag offers the choices
        main([*argv, "--actor-z", "mean"])
    assert exit_info.value.code == 2
    assert "--actor-z: invalid choice: 'mean'" in capsys.readouterr().err
    assert main([*argv, "--set", "actor_z=probs"]) == 0
    assert read_config(tmp_path / "run", "agent")["agent"]["actor_z"] == "probs"


@pytest.mark.parametrize("algo", ["dbc", "ditto", "dgail"])
def test_a_config_json_from_before_actor_z_loads_and_deploys_as_sample(world, tmp_path, algo):
    saved_config = agent_config("debug", algo=algo, actor_z="probs").to_json()
    del saved_config["actor_z"]
    assert config_from_json(saved_config).actor_z == "sample"
    if algo != "dbc":
        return
    config = agent_config("debug", algo=algo, expert_episodes=2, steps=2, actor_z="probs")
    run = train_agent(config, world / "expert", tmp_path / algo, world / "wm", progress=False).path
    saved = read_config(run, "agent")
    for written, expected in ((True, "probs"), (False, "sample")):
        if not written:
            del saved["agent"]["actor_z"]
        agent = agent_loader(saved, torch.device("cpu"), greedy=True)(
            load_checkpoint(policy_snapshots(run)[-1])
        )
        assert agent.actor_z == expected
