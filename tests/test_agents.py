import json
import warnings

import numpy as np
import pytest
import torch

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import Actor, Critic
from ditto.agents.registry import agent_config
from ditto.agents.returns import lambda_returns
from ditto.agents.rewards import (
    REWARDS,
    cosine,
    matched_similarity,
    max_cosine,
    nearest_similarity,
    neg_l2,
)
from ditto.agents.rollout import imagine
from ditto.agents.trainer import AgentTrainer, split_expert_episodes, train_agent
from ditto.checkpoint import CheckpointError, load_checkpoint
from ditto.config import AgentConfig, WorldModelConfig, world_model_config
from ditto.data import Dataset
from ditto.errors import ConfigError, DittoError, SpecError
from ditto.evaluation.protocol import agent_loader, evaluate_run, normalized_score, policy_snapshots
from ditto.runs import CHECKPOINT, read_config, verify_run
from ditto.specs import ActionSpec
from ditto.training import TrainingDiverged
from ditto.world_model.trainer import load_world_model, train_world_model


def test_max_cosine_reward_values():
    x = torch.tensor([[1.0, -2.0, 3.0]])
    assert max_cosine(x, x).item() == pytest.approx(1.0)
    assert max_cosine(x, 2 * x).item() == pytest.approx(0.5)
    assert max_cosine(2 * x, x).item() == pytest.approx(0.5)
    assert max_cosine(x, -x).item() < 0
    assert cosine(x, 2 * x).item() == pytest.approx(1.0)
    assert neg_l2(x, x).item() == pytest.approx(0.0)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_nearest_similarity_matches_brute_force(name):
    generator = torch.Generator().manual_seed(0)
    learner, bank = (
        torch.randn(3, 5, 8, generator=generator),
        torch.randn(37, 8, generator=generator),
    )
    similarity = REWARDS[name]
    brute = matched_similarity(similarity, bank[None, None], learner[:, :, None]).max(-1).values
    assert torch.allclose(nearest_similarity(learner, bank, similarity, chunk=10), brute, atol=1e-5)


def test_values_logits_and_nearest_rewards_keep_fp32_precision_under_bf16_autocast():
    """bf16 keeps 8 bits of mantissa: computed in it, critic values near 15 would take about
    ten distinct values, and the L2 distance of a near neighbour would cancel to 0."""
    torch.manual_seed(0)
    critic, actor = Critic(8, 2, 16), Actor(8, ActionSpec("discrete", 3), 2, 16)
    torch.nn.init.constant_(critic.net[-1].bias, 15.0)
    x = torch.randn(1000, 8)
    bank = torch.randn(500, 32)
    learner = bank[:100] + 0.01 * torch.randn(100, 32)
    exact = -(learner[:, None] - bank[None]).norm(dim=-1).min(-1).values
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values, logits = critic(x), actor.net(x)
        nearest = nearest_similarity(learner, bank, REWARDS["neg_l2"])
    assert values.dtype == logits.dtype == torch.float32
    assert values.unique().numel() > 900 and logits.unique().numel() > 2900
    assert torch.allclose(nearest, exact, atol=1e-3)  # the bf16 matmul was off by 10


def test_lambda_returns_by_hand():
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[10.0], [20.0], [30.0]])
    gamma, lam = 0.9, 0.5
    r1 = 2.0 + gamma * (
        (1 - lam) * 30.0 + lam * 30.0
    )  # R_1 = r_1 + gamma * v(s_2), since R_2 = v(s_2)
    r0 = 1.0 + gamma * ((1 - lam) * 20.0 + lam * r1)
    assert torch.allclose(lambda_returns(rewards, values, gamma, lam), torch.tensor([[r0], [r1]]))
    # lam = 1: discounted rewards plus the discounted bootstrap
    assert lambda_returns(rewards, values, 0.9, 1.0)[0].item() == pytest.approx(
        1 + 0.9 * 2 + 0.81 * 30
    )


def test_expert_windows_never_cross_episodes(world):
    model = load_world_model(world / "wm").model
    dataset = Dataset(world / "expert")
    latents = ExpertLatents.from_episodes(
        model, list(dataset), horizon=10, device=torch.device("cpu")
    )
    lengths = [len(e.observations) for e in dataset]
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    assert latents.features.shape == (sum(lengths), model.feature_dim)
    assert latents.num_windows == sum(max(n - 10, 0) for n in lengths)
    for start in latents.starts.tolist():
        assert episode_of[start] == episode_of[start + 10]
    features, actions = latents.windows(latents.sample(32, torch.Generator().manual_seed(0)))
    assert features.shape == (11, 32, model.feature_dim) and actions.shape == (11, 32, 2)


def test_expert_split_uses_unseen_episodes_for_validation(world):
    dataset = Dataset(world / "expert")
    train, val, on_train = split_expert_episodes(dataset, 3, 0.1)
    assert len(train) == 3 and len(val) == 1 and not on_train
    assert np.array_equal(val[0].observations, dataset[3].observations)
    with pytest.raises(DittoError, match="--expert-episodes 9 is more than the 5 episodes"):
        split_expert_episodes(dataset, 9, 0.1)


def _metric(run, key):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in records if key in r]


@pytest.mark.parametrize(
    "algo, key, threshold",
    [
        ("dbc", "losses/actor", 0.9),
        ("bc", "losses/actor", 0.9),
        ("ditto", "losses/critic", 0.5),
        ("dgail", "losses/discriminator", 0.95),  # from log(4): it learns to tell the pairs apart
    ],
)
def test_each_method_learns_on_a_tiny_problem(world, tmp_path, algo, key, threshold):
    config = agent_config(
        "debug",
        algo=algo,
        expert_episodes=4,
        steps=60,
        log_every=1,
        checkpoint_every=60,
        lr=3e-3,
        critic_lr=3e-3,
        disc_lr=3e-3,
    )
    world_model = None if algo == "bc" else world / "wm"
    train_agent(config, world / "expert", tmp_path / algo, world_model, progress=False)
    values = _metric(tmp_path / algo, key)
    assert len(values) == 60
    assert np.mean(values[-10:]) < threshold * np.mean(values[:5])
    assert _metric(tmp_path / algo, "val/action_accuracy")


def test_continuous_actions_learn_through_the_dynamics_and_every_method_trains(
    make_dataset, tmp_path
):
    """Pendulum's torque: the actor's gradient reaches it through the frozen world model's
    imagined states (DITTO, D-GAIL), and each method trains and deploys without a warning."""
    path, _ = make_dataset("Pendulum-v1", lengths=(30, 30, 30, 30))
    train_world_model(
        [path], tmp_path / "wm", world_model_config("debug", steps=10), progress=False
    )
    model = load_world_model(tmp_path / "wm").model.requires_grad_(False)
    actor = Actor(model.feature_dim, model.spec.action, 2, 16)
    rollout = imagine(model, actor, model.features(model.initial(4)), horizon=3)
    assert rollout.actions.shape == (3, 4, 1) and rollout.actions.abs().max() <= 2.0
    # The last state depends on the actions only through the model.
    rollout.features[-1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())

    for algo in ("ditto", "dbc", "dgail", "bc"):
        config = agent_config("debug", algo=algo, expert_episodes=3, steps=6, checkpoint_every=6)
        with warnings.catch_warnings():  # e.g. a metric read from a tensor that carries gradients
            warnings.filterwarnings("error", message="Converting a tensor with requires_grad")
            run = train_agent(
                config,
                path,
                tmp_path / algo,
                None if algo == "bc" else tmp_path / "wm",
                progress=False,
            ).path
        assert np.isfinite(_metric(run, "losses/actor")).all()
    score = evaluate_run(tmp_path / "ditto", episodes=2, progress=False)
    # Any return in Pendulum's range (-16.3 per step at worst): deployment runs, with no NaN.
    assert score["episodes"] == 2 and -16.3 * 200 <= score["return_mean"] <= 0


@pytest.mark.parametrize("policy_ema", [0.0, 0.5])
def test_stop_and_resume_gives_the_same_updates(world, tmp_path, policy_ema):
    def config(steps):
        return agent_config(
            "debug",
            algo="ditto",
            expert_episodes=3,
            steps=steps,
            log_every=1,
            checkpoint_every=5,
            policy_ema=policy_ema,
        )

    train_agent(config(10), world / "expert", tmp_path / "straight", world / "wm", progress=False)
    train_agent(config(5), world / "expert", tmp_path / "split", world / "wm", progress=False)
    train_agent(
        config(10), world / "expert", tmp_path / "split", world / "wm", resume=True, progress=False
    )
    for key in ("losses/actor", "val/latent_distance"):  # the latter measures the deployed policy
        assert _metric(tmp_path / "split", key) == _metric(tmp_path / "straight", key)
    snapshots = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert snapshots == ["step_00000005.safetensors", "step_00000010.safetensors"]
    assert (
        read_config(tmp_path / "split", "agent")["agent"]
        == read_config(tmp_path / "straight", "agent")["agent"]
    )


def test_policy_ema_snapshots_hold_the_moving_average_of_the_trained_policy(world, tmp_path):
    decay = 0.6

    def snapshots(name, policy_ema):
        config = agent_config(
            "debug",
            algo="dbc",
            expert_episodes=3,
            steps=5,
            checkpoint_every=1,
            keep_checkpoints=5,
            lr=1e-2,
            policy_ema=policy_ema,
        )
        run = train_agent(config, world / "expert", tmp_path / name, world / "wm", progress=False)
        return [load_checkpoint(path).state_dict("policy") for path in policy_snapshots(run.path)]

    trained = snapshots("plain", 0.0)  # the averaging leaves training itself unchanged
    average = dict(trained[0])
    for weights in trained[1:]:
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
    deployed = snapshots("averaged", decay)[-1]
    for key, value in average.items():
        torch.testing.assert_close(deployed[key], value)
    assert not torch.equal(deployed["net.0.weight"], trained[-1]["net.0.weight"])
    with pytest.raises(ConfigError, match="policy_ema 1 would never move the deployed policy"):
        agent_config("debug", policy_ema=1.0)


@pytest.mark.parametrize("algo", ["ditto", "dbc", "dgail", "bc"])
def test_a_nan_gradient_stops_the_run_before_its_nan_policy_is_saved_or_sampled(
    world, tmp_path, algo
):
    config = agent_config("debug", algo=algo, expert_episodes=3, steps=6, checkpoint_every=1)
    world_model = None if algo == "bc" else world / "wm"
    trainer = AgentTrainer(config, world / "expert", tmp_path / "run", world_model, progress=False)
    updates = {"n": 0}

    def nan_from_the_third_update(grad):
        updates["n"] += 1
        return torch.full_like(grad, float("nan")) if updates["n"] >= 3 else grad

    next(trainer.policy.parameters()).register_hook(nan_from_the_third_update)
    with pytest.raises(
        TrainingDiverged, match=f"{algo} diverged at update 3 .*last good checkpoint"
    ):
        trainer.train()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT).meta["step"] == 2


@pytest.mark.parametrize("kind", ["agent", "world_model"])
def test_a_resumed_run_keeps_the_precision_that_auto_chose_at_its_start(
    world, make_dataset, tmp_path, monkeypatch, kind
):
    """Resumed on a machine whose "auto" means bf16, a run begun in fp32 stays in fp32."""
    if kind == "world_model":
        path, _ = make_dataset()

        def train(steps, out, resume):
            config = world_model_config("debug", steps=steps, precision="auto")
            train_world_model([path], out, config, device="cpu", resume=resume, progress=False)

    else:

        def train(steps, out, resume):
            config = agent_config(
                "debug", algo="ditto", expert_episodes=2, steps=steps, precision="auto"
            )
            train_agent(
                config,
                world / "expert",
                out,
                world / "wm",
                device="cpu",
                resume=resume,
                progress=False,
            )

    monkeypatch.setattr("ditto.device.cpu_has_native_bf16", lambda: False)
    train(1, tmp_path / "run", resume=False)
    monkeypatch.setattr("ditto.device.cpu_has_native_bf16", lambda: True)
    train(2, tmp_path / "run", resume=True)
    train(2, tmp_path / "fresh", resume=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bf16"] is False
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["bf16"] is True


def test_evaluation_is_reproducible_and_read_only(world, tmp_path):
    config = agent_config("debug", algo="ditto", expert_episodes=2, steps=4, checkpoint_every=2)
    run = train_agent(config, world / "expert", tmp_path / "run", world / "wm", progress=False).path
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*"))
    first = evaluate_run(run, episodes=3, progress=False)
    second = evaluate_run(run, episodes=3, progress=False)
    assert first == second
    assert first["episodes"] == 6 and len(first["checkpoints"]) == 2
    assert first["num_envs"] == config.eval_envs  # recorded: it decides which episodes are played
    assert {"return_mean", "return_stderr", "normalized_score", "episodes"} <= first.keys()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    for setting in ({"episodes": 0}, {"checkpoints": -1}, {"num_envs": 0}):
        with pytest.raises(DittoError, match="must be >= 1"):
            evaluate_run(run, progress=False, **setting)
    bc = train_agent(
        agent_config("debug", algo="bc", expert_episodes=2, steps=2),
        world / "expert",
        tmp_path / "bc",
        progress=False,
    )
    assert (
        evaluate_run(bc.path, episodes=2, progress=False)["episodes"] == 2
    )  # one snapshot, at the end


def test_deployed_agents_act_on_dataset_frames(world, tmp_path):
    """Frames straight from a dataset (read-only memory maps) are fine input, without warnings."""
    frames = Dataset(world / "expert")[0].observations[:3]
    assert not frames.flags.writeable
    for algo in ("dbc", "bc"):
        config = agent_config("debug", algo=algo, expert_episodes=2, steps=2)
        wm = None if algo == "bc" else world / "wm"
        run = train_agent(config, world / "expert", tmp_path / algo, wm, progress=False).path
        saved = read_config(run, "agent")
        agent = agent_loader(saved, torch.device("cpu"), greedy=True)(
            load_checkpoint(policy_snapshots(run)[-1])
        )
        with warnings.catch_warnings():  # e.g. a metric read from a tensor that carries gradients
            warnings.filterwarnings("error", message="Converting a tensor with requires_grad")
            actions = agent.act(frames, np.array([True, False, False]))
        assert actions.shape == (3,) and set(actions) <= {0, 1}


def test_normalized_score():
    assert normalized_score(500.0, 500.0, 20.0) == pytest.approx(1.0)
    assert normalized_score(20.0, 500.0, 20.0) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("make_config", "setting", "message"),
    [
        (agent_config, {"batch": 0}, "batch must be >= 1, got 0"),
        (agent_config, {"horizon": -3}, "horizon must be >= 1, got -3"),
        (agent_config, {"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
        (agent_config, {"lr": float("nan")}, "lr must be a finite number >= 0, got nan"),
        (world_model_config, {"length": 0}, "length must be >= 1, got 0"),
        (world_model_config, {"kl_balance": 2.0}, r"kl_balance must be in \[0, 1\], got 2.0"),
    ],
)
def test_out_of_range_settings_are_config_errors(make_config, setting, message):
    with pytest.raises(ConfigError, match=message):
        make_config("debug", **setting)


def test_a_config_built_directly_checks_its_types_and_precision():
    with pytest.raises(ConfigError, match="steps must be int, got '3'"):
        WorldModelConfig(steps="3")
    with pytest.raises(ConfigError, match="carry_state must be bool, got 1"):
        WorldModelConfig(carry_state=1)
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp32, got 'fp16'"):
        AgentConfig(precision="fp16")
    lr = AgentConfig(lr=1).lr  # an int stands for a float, and becomes one
    assert lr == 1.0 and isinstance(lr, float)


def test_clear_errors(world, tmp_path, make_dataset):
    pong, _ = make_dataset("ALE/Pong-v5", lengths=(6, 7), name="pong")
    with pytest.raises(SpecError, match="expert data .* is for ALE/Pong-v5, expected CartPole-v1"):
        AgentTrainer(
            agent_config("debug", expert_episodes=1),
            pong,
            tmp_path / "a",
            world / "wm",
            progress=False,
        )
    with pytest.raises(DittoError, match="pass --world-model RUN"):
        AgentTrainer(
            agent_config("debug", expert_episodes=1),
            world / "expert",
            tmp_path / "b",
            None,
            progress=False,
        )
    with pytest.raises(DittoError, match="not an agent run"):
        evaluate_run(tmp_path)


def test_train_cli_passes_its_settings_to_the_run(world, tmp_path, capsys):
    from ditto.cli import main

    out = tmp_path / "dbc"
    main(
        [
            "train",
            "--algo",
            "dbc",
            "--world-model",
            str(world / "wm"),
            "--expert-data",
            str(world / "expert"),
            "--expert-episodes",
            "2",
            "--out",
            str(out),
            "--preset",
            "debug",
            "--steps",
            "3",
            "--lr",
            "5e-5",
            "--policy-ema",
            "0.99",
            "--device",
            "cpu",
        ]
    )
    saved = json.loads((out / "config.json").read_text())["agent"]
    assert (saved["algo"], saved["expert_episodes"], saved["steps"]) == ("dbc", 2, 3)
    assert (saved["lr"], saved["policy_ema"]) == (5e-5, 0.99)


def test_runs_and_datasets_stand_for_their_paths(world, tmp_path):
    """What the API returns can be passed on: a Dataset and a world-model run to train_agent,
    its agent run to evaluate_run, Datasets (one, or any iterable) to train_world_model."""
    config = agent_config("debug", algo="ditto", expert_episodes=2, steps=2)
    world_model = load_world_model(world / "wm")
    expert = Dataset(world / "expert")
    run = train_agent(config, expert, tmp_path / "run", world_model, progress=False)
    saved = read_config(run.path, "agent")
    assert (saved["expert_data"], saved["world_model"]) == (str(expert.root), str(world / "wm"))
    assert evaluate_run(run, episodes=2, progress=False)["episodes"] == 2
    with pytest.raises(TypeError, match="os.PathLike object"):
        evaluate_run(3)
    config = world_model_config("debug", steps=1)
    for data, out in ((expert, "one"), ((d for d in [expert]), "generator")):
        train_world_model(data, tmp_path / out, config, progress=False)
        assert read_config(tmp_path / out, "world_model")["data"] == [str(expert.root)]


def test_sticky_actions_reach_every_evaluation_env_and_are_atari_and_minatar_only(
    world, tmp_path, monkeypatch
):
    import ditto.evaluation.protocol as protocol

    config = agent_config("debug", algo="dbc", expert_episodes=2, steps=2)
    run = train_agent(config, world / "expert", tmp_path / "run", world / "wm", progress=False)
    with pytest.raises(
        DittoError, match="sticky actions are an Atari and MinAtar setting; CartPole-v1"
    ):
        evaluate_run(run, episodes=1, sticky_actions=True, progress=False)
    made, make_vector_env = [], protocol.make_vector_env

    def spy(*args, **kwargs):
        made.append(kwargs["sticky_actions"])
        return make_vector_env(*args, **kwargs)  # CartPole ignores the flag

    monkeypatch.setattr(protocol, "make_vector_env", spy)
    monkeypatch.setattr(protocol, "check_sticky_actions", lambda env_id: None)
    result = evaluate_run(run, episodes=1, sticky_actions=True, progress=False)
    assert result["protocol"]["sticky_actions"] is True
    assert made == [True, True]  # the agent's episodes and the random policy's


def test_random_shift_moves_each_frame_by_at_most_four_pixels():
    from ditto.agents.bc import random_shift

    frames = torch.randint(0, 256, (2, 1, 64, 64), generator=torch.Generator().manual_seed(1))
    frames = frames.to(torch.uint8)
    shifted = random_shift(frames, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape and shifted.dtype == torch.uint8
    again = random_shift(frames, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)
    # The middle of each shifted frame is the original's, moved by one offset in [-4, 4]^2.
    for i in range(2):
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(
                shifted[i, 0, 8:56, 8:56], frames[i, 0, 8 + dy : 56 + dy, 8 + dx : 56 + dx]
            )
        ]
        assert len(found) == 1


def test_pixel_bc_learns_with_frame_stack_and_augmentation(world, tmp_path):
    config = agent_config(
        "debug",
        algo="bc",
        expert_episodes=4,
        steps=60,
        log_every=1,
        checkpoint_every=60,
        lr=3e-3,
        bc_frame_stack=4,
        bc_augment=True,
    )
    train_agent(config, world / "expert", tmp_path / "bc", None, progress=False)
    values = _metric(tmp_path / "bc", "losses/actor")
    assert np.mean(values[-10:]) < 0.9 * np.mean(values[:5])
    saved = json.loads((tmp_path / "bc" / "config.json").read_text())["agent"]
    assert (saved["bc_frame_stack"], saved["bc_augment"]) == (4, True)


def test_agent_checkpoints_are_recorded_and_a_changed_snapshot_is_refused(world, tmp_path):
    config = agent_config(
        "debug", algo="bc", expert_episodes=2, steps=3, checkpoint_every=1, keep_checkpoints=2
    )
    run = train_agent(config, world / "expert", tmp_path / "bc", progress=False).path
    snapshots = policy_snapshots(run)
    recorded = read_config(run, "agent")["checksums"]
    # The snapshot dropped by keep_checkpoints is dropped from the record too.
    assert sorted(recorded) == [CHECKPOINT, *(f"checkpoints/{p.name}" for p in snapshots)]
    assert len(snapshots) == 2 and verify_run(run) == []
    stray = run / "checkpoints" / "step_99999999.safetensors"  # put there by hand
    stray.write_bytes(snapshots[0].read_bytes())
    assert verify_run(run) == [
        f"{stray}: no checksum recorded (written by an older ditto, or not by ditto)"
    ]
    stray.unlink()
    damaged = bytearray(snapshots[-1].read_bytes())
    damaged[-10] ^= 1
    snapshots[-1].write_bytes(bytes(damaged))
    assert verify_run(run) == [
        f"{snapshots[-1]}: changed since it was written (its sha256 is not the recorded one)"
    ]
    with pytest.raises(CheckpointError, match=f"{snapshots[-1].name}: its contents do not match"):
        evaluate_run(run, episodes=1, progress=False)
