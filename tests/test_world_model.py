import json

import numpy as np
import pytest
import torch

from ditto.checkpoint import CheckpointError, load_checkpoint
from ditto.config import world_model_config
from ditto.data import ChunkSampler, Dataset
from ditto.device import use_bf16
from ditto.envs import env_spec
from ditto.errors import DittoError, SpecError
from ditto.runs import read_config
from ditto.training import TrainingDiverged
from ditto.world_model.model import WorldModel
from ditto.world_model.rssm import State
from ditto.world_model.trainer import (
    CHECKPOINT,
    WorldModelTrainer,
    load_world_model,
    train_world_model,
)

from .conftest import fill_disk_halfway

DEBUG = world_model_config("debug")


def fake_batch(spec, batch=3, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 256, (batch, steps, *spec.obs_shape), dtype=np.uint8))
    actions = torch.from_numpy(spec.action.encode(rng.integers(0, spec.action.n, (batch, steps))))
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    return frames, actions, is_first


def test_feature_layout_is_h_then_z():
    spec = env_spec("ALE/Pong-v5")
    model = WorldModel(spec, DEBUG)
    frames, actions, is_first = fake_batch(spec)
    assert actions.shape[-1] == 18  # Atari: the full action set
    states, last = model.observe(frames, actions, is_first)
    features = model.features(states)
    assert (
        features.shape
        == (3, 6, DEBUG.deter + DEBUG.stoch * DEBUG.classes)
        == (3, 6, model.feature_dim)
    )
    assert torch.equal(features[..., : DEBUG.deter], states.deter)
    z = features[..., DEBUG.deter :].reshape(3, 6, DEBUG.stoch, DEBUG.classes)
    assert torch.allclose(z.sum(-1), torch.ones(3, 6, DEBUG.stoch))  # one-hot per variable
    assert model.decode(features).shape == (3, 6, 1, 64, 64)
    assert torch.equal(last.deter, states.deter[:, -1])  # the carry is the last posterior
    step = model.img_step(model.initial(3), model.policy_action_input(torch.eye(6)[[0, 2, 5]]))
    assert step.deter.shape == (3, DEBUG.deter)


def test_obs_step_is_observe_one_frame_at_a_time():
    spec = env_spec("CartPole-v1")
    model = WorldModel(spec, DEBUG)
    frames, actions, is_first = fake_batch(spec, batch=2)
    torch.manual_seed(0)
    posts, last = model.observe(frames, actions, is_first)
    torch.manual_seed(0)
    state = model.initial(2)
    for t in range(frames.shape[1]):
        state = model.obs_step(state, actions[:, t], frames[:, t], is_first[:, t])
    assert torch.allclose(state.deter, last.deter, atol=1e-6)
    assert torch.equal(state.stoch, last.stoch)
    assert model.kl(posts).shape == ()
    with pytest.raises(SpecError, match="frames must have shape"):
        model.obs_step(state, actions[:, 0], frames[:, 0, :, :32], is_first[:, 0])


def test_policy_actions_map_to_the_full_atari_set():
    model = WorldModel(env_spec("ALE/Pong-v5"), DEBUG)
    mapped = model.policy_action_input(torch.eye(6))
    assert mapped.argmax(-1).tolist() == [0, 1, 3, 4, 11, 12]


def test_state_resets_at_episode_start():
    spec = env_spec("CartPole-v1")
    model = WorldModel(spec, DEBUG)
    frames, actions, is_first = fake_batch(spec, batch=2)
    busy = State(
        torch.randn(2, DEBUG.deter),
        torch.rand(2, DEBUG.stoch * DEBUG.classes),
        torch.randn(2, DEBUG.stoch, DEBUG.classes),
    )
    torch.manual_seed(0)
    from_busy, _ = model.observe(frames, actions, is_first, busy)
    torch.manual_seed(0)
    from_zero, _ = model.observe(frames, actions, is_first, None)
    assert torch.allclose(from_busy.deter, from_zero.deter)
    torch.manual_seed(0)
    carried, _ = model.observe(frames, actions, torch.zeros_like(is_first), busy)
    assert not torch.allclose(carried.deter[:, 0], from_zero.deter[:, 0])


def test_auto_precision_is_bf16_only_where_the_chip_computes_in_it(monkeypatch):
    """Pre-Ampere GPUs (V100, T4) emulate bf16 slowly, as CPUs without AVX512-BF16 or AMX do."""
    cuda = torch.device("cuda")
    for capability, bf16 in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert use_bf16("auto", cuda) is bf16
    assert use_bf16("fp32", cuda) is False and use_bf16("bf16", torch.device("cpu")) is True
    with pytest.raises(DittoError, match="precision must be one of auto, bf16, fp32"):
        use_bf16("fp16", cuda)


def test_bad_inputs_are_clear_errors():
    spec = env_spec("CartPole-v1")
    model = WorldModel(spec, DEBUG)
    frames, actions, is_first = fake_batch(spec)
    with pytest.raises(SpecError, match=r"frames must have shape \(B, T, 1, 64, 64\)"):
        model.observe(frames[..., :32, :32], actions, is_first)
    wrong_actions = (
        torch.zeros(3, 6, 18),  # another env's width
        actions.argmax(-1)[:, :2],  # indices, not encoded; T = 2 = the width
        actions.double(),
    )
    for wrong in wrong_actions:
        with pytest.raises(
            SpecError, match=r"actions must be float32 of shape \(B, T, 2\) for Cart"
        ):
            model.observe(frames[:, : wrong.shape[1]], wrong, is_first[:, : wrong.shape[1]])
    with pytest.raises(
        SpecError, match=r"is_first must be bool of shape \(B, T\), got torch.int64"
    ):
        model.observe(frames, actions, is_first.long())  # ~1 would be -2, not False
    state, _ = model.observe(frames, actions, is_first)
    with pytest.raises(SpecError, match="state has batch 3, frames have 2"):
        model.observe(frames[:2], actions[:2], is_first[:2], state)
    last = model.state_from_features(model.features(state)[:, -1])
    with pytest.raises(SpecError, match=r"action must have shape \(3, 2\) for this state"):
        model.img_step(last, actions[:2, -1])
    with pytest.raises(SpecError, match=rf"features must have shape \(..., {model.feature_dim}\)"):
        model.decode(model.features(state)[..., :-1])
    with pytest.raises(SpecError, match="features takes a State"):
        model.features(model.features(state))
    with pytest.raises(SpecError, match="batch size >= 1"):
        model.initial(0)
    with pytest.raises(SpecError, match="must be torch tensors"):
        model.observe(frames.numpy(), actions, is_first)
    with pytest.raises(SpecError, match="takes 64x64 frames"):
        WorldModel(env_spec("CartPole-v1", size=32), DEBUG)


def test_chunks_continue_episodes_across_calls(make_dataset):
    path, episodes = make_dataset(lengths=(5, 12, 30))
    dataset = Dataset(path)
    sampler = ChunkSampler(dataset, dataset.spec, batch=2, length=4, seed=0)
    stream = [sampler.sample() for _ in range(12)]
    frames = np.concatenate([b.frames for b in stream], 1)  # (2, 48, ...): each row is one stream
    is_first = np.concatenate([b.is_first for b in stream], 1)
    for row in range(2):
        starts = np.flatnonzero(is_first[row])
        assert starts[0] == 0
        for begin, end in zip(starts, list(starts[1:]) + [None], strict=True):
            piece = frames[row, begin:end]
            match = [e for e in episodes if np.array_equal(e.observations[: len(piece)], piece)]
            assert match, "a stream is whole episodes played from their first frame, back to back"
    state = sampler.state_dict()
    expected = sampler.sample()
    sampler.load_state_dict(json.loads(json.dumps(state)))
    assert np.array_equal(sampler.sample().frames, expected.frames)


def _losses(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        r["step"]: r["losses/world_model/loss"] for r in lines if "losses/world_model/loss" in r
    }


def test_training_lowers_the_loss(make_dataset, tmp_path):
    path, _ = make_dataset(lengths=(40, 40, 40, 40))
    config = world_model_config("debug", steps=60, log_every=1, eval_every=60, checkpoint_every=60)
    train_world_model([path], tmp_path / "run", config, progress=False)
    losses = list(_losses(tmp_path / "run").values())
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:5])
    metrics = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    val = [m for m in metrics if "val/recon_mse" in m][-1]
    assert {"val/kl", "val/open_loop_mse_k1", "val/copy_last_mse_k1"} <= val.keys()
    assert (tmp_path / "run" / "diagnostics" / "open_loop.png").stat().st_size > 0
    assert (tmp_path / "run" / "diagnostics" / "open_loop.gif").stat().st_size > 0


def test_stop_and_resume_gives_the_same_losses(make_dataset, tmp_path):
    path, _ = make_dataset(lengths=(20, 25, 30))
    config = world_model_config("debug", steps=16, log_every=1, eval_every=100, checkpoint_every=8)
    train_world_model([path], tmp_path / "straight", config, progress=False)
    train_world_model(
        [path],
        tmp_path / "split",
        world_model_config("debug", steps=8, log_every=1, eval_every=100, checkpoint_every=8),
        progress=False,
    )
    # One dataset may come as a path, not a list of one.
    run = train_world_model(str(path), tmp_path / "split", config, resume=True, progress=False)
    assert run.step == 16
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert list(split) == list(range(1, 17))
    assert split == straight
    # the resumed run's config records the steps it now trains for, as the straight run's does
    assert read_config(tmp_path / "split", "world_model") == read_config(
        tmp_path / "straight", "world_model"
    )


def test_resume_takes_the_lr_from_the_runs_config(make_dataset, tmp_path):
    """Editing a stopped run's config.json is how to lower its lr for the rest of training."""
    path, _ = make_dataset()
    train_world_model(
        [path], tmp_path / "run", world_model_config("debug", steps=2), progress=False
    )
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    saved["world_model"]["lr"] = 1e-5
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    trainer = WorldModelTrainer(
        [path], tmp_path / "run", world_model_config("debug", steps=4), resume=True, progress=False
    )
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [1e-5]


def _share_of_frames(sampler, frames_of_first, calls=300):
    first = 0
    for _ in range(calls):
        batch = sampler.sample()
        first += sum(
            frame.tobytes() in frames_of_first
            for frame in batch.frames.reshape(-1, *batch.frames.shape[2:])
        )
    return first / (calls * sampler.batch * sampler.length)


def test_data_weights_set_each_datasets_share_of_the_frames(make_dataset, tmp_path):
    long_path, long_episodes = make_dataset(lengths=(40,) * 5, name="long", seed=1)
    short_path, _ = make_dataset(lengths=(10,) * 5, name="short", seed=2)
    frames_of_long = {frame.tobytes() for e in long_episodes for frame in e.observations}

    def sampler(**overrides):
        config = world_model_config("debug", batch=8, length=10, **overrides)
        out = tmp_path / f"run{len(overrides)}"
        trainer = WorldModelTrainer([long_path, short_path], out, config, progress=False)
        return trainer, trainer.sampler

    trainer, uniform = sampler()  # every frame equally likely
    lengths = [len(e.observations) for e in trainer.train_episodes]
    # 0.75 or 0.82, as a long or a short episode is held out for validation
    long_share = sum(n for n in lengths if n == max(lengths)) / sum(lengths)
    assert abs(_share_of_frames(uniform, frames_of_long) - long_share) < 0.06
    trainer, weighted = sampler(data_weights=[1, 3])
    assert abs(_share_of_frames(weighted, frames_of_long) - 0.25) < 0.06
    saved = read_config(trainer.out, "world_model")["world_model"]["data_weights"]
    assert saved == [1.0, 3.0]  # and config.json's list reads back as the config's tuple
    assert world_model_config("debug", data_weights=saved).data_weights == (1.0, 3.0)

    with pytest.raises(DittoError, match="data_weights has 3 entries for 2 datasets"):
        sampler(data_weights=[1, 1, 1])
    for bad in ([1, -1], ["a", 1], [float("nan"), 1]):
        with pytest.raises(DittoError, match="data_weights must be finite numbers >= 0"):
            world_model_config("debug", data_weights=bad)
    with pytest.raises(DittoError, match="data_weights are all 0"):
        world_model_config("debug", data_weights=[0, 0])


def test_save_load_round_trip(make_dataset, tmp_path):
    path, _ = make_dataset()
    run = train_world_model(
        [path], tmp_path / "run", world_model_config("debug", steps=4), progress=False
    )
    loaded = load_world_model(tmp_path / "run")
    assert loaded.step == 4
    for (name, a), b in zip(
        run.model.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(DittoError, match="not a world-model run"):
        load_world_model(tmp_path)
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable ditto checkpoint"):
        load_checkpoint(tmp_path / "run" / CHECKPOINT)


def test_existing_run_needs_resume(make_dataset, tmp_path):
    path, _ = make_dataset()
    train_world_model(
        [path], tmp_path / "run", world_model_config("debug", steps=2), progress=False
    )
    with pytest.raises(DittoError, match="pass --resume"):
        train_world_model(
            [path], tmp_path / "run", world_model_config("debug", steps=2), progress=False
        )


@pytest.mark.parametrize("broken, at_step", [("loss", 5), ("gradient", 6)])
def test_nan_loss_or_gradient_stops_and_keeps_the_last_good_checkpoint(
    make_dataset, tmp_path, monkeypatch, broken, at_step
):
    """A NaN gradient under a finite loss makes the weights NaN at once; step 6 would save them."""
    path, _ = make_dataset()
    config = world_model_config("debug", steps=10, checkpoint_every=3)
    trainer = WorldModelTrainer([path], tmp_path / "run", config, progress=False)
    real_loss, calls = WorldModel.loss, {"n": 0}

    def loss_that_breaks(self, *args, **kwargs):
        calls["n"] += 1
        loss, metrics, last = real_loss(self, *args, **kwargs)
        if calls["n"] >= at_step and broken == "loss":
            metrics = {**metrics, "loss": torch.tensor(float("nan"))}
        if calls["n"] >= at_step and broken == "gradient":
            loss.register_hook(lambda grad: torch.full_like(grad, float("nan")))
        return loss, metrics, last

    monkeypatch.setattr(WorldModel, "loss", loss_that_breaks)
    with pytest.raises(
        TrainingDiverged, match=f"diverged at step {at_step} .*; the last good checkpoint"
    ):
        trainer.train()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT).meta["step"] == 3


def test_ctrl_c_saves_a_checkpoint_to_resume_from(make_dataset, tmp_path, monkeypatch):
    path, _ = make_dataset()
    config = world_model_config("debug", steps=10, checkpoint_every=100)
    trainer = WorldModelTrainer([path], tmp_path / "run", config, progress=False)
    real_sample, calls = trainer.sampler.sample, {"n": 0}

    def interrupted_sample():
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_sample()

    monkeypatch.setattr(trainer.sampler, "sample", interrupted_sample)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT).meta["step"] == 6
    assert (
        train_world_model([path], tmp_path / "run", config, resume=True, progress=False).step == 10
    )


def test_validation_filters_as_much_context_as_the_held_out_episodes_hold(make_dataset, tmp_path):
    path, _ = make_dataset(lengths=(30, 30, 30, 12))
    config = world_model_config(
        "debug", steps=2, eval_every=2, val_episodes=0.25, open_loop_context=500
    )
    trainer = WorldModelTrainer([path], tmp_path / "run", config, progress=False)
    longest = max(len(e.observations) for e in trainer.val_episodes)
    metrics = trainer.validate()
    assert metrics["val/open_loop_context"] == longest - config.open_loop_horizon
    assert (tmp_path / "run" / "diagnostics" / "open_loop.png").stat().st_size > 0


def test_a_changed_checkpoint_is_refused_on_load_and_reported_by_run_verify(
    make_dataset, tmp_path, capsys
):
    from ditto.cli import main

    path, _ = make_dataset()
    run = tmp_path / "run"
    train_world_model([path], run, world_model_config("debug", steps=2), progress=False)
    assert main(["run", "verify", str(run)]) == 0
    assert "every checkpoint file matches" in capsys.readouterr().out
    good = (run / CHECKPOINT).read_bytes()
    damaged = bytearray(good)
    damaged[-50] ^= 1  # one bit of a tensor
    (run / CHECKPOINT).write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="do not match the sha256 recorded") as info:
        load_world_model(run)
    assert str(run / CHECKPOINT) in str(info.value) and "\n" not in str(info.value)
    assert main(["run", "verify", str(run)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{run / CHECKPOINT}: changed since it was written (its sha256 is not the recorded one)"
    ]
    (run / CHECKPOINT).unlink()
    assert main(["run", "verify", str(run)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{run / CHECKPOINT}: missing"]
    (run / CHECKPOINT).write_bytes(good)
    assert load_world_model(run).step == 2


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one(
    make_dataset, tmp_path, monkeypatch, capsys
):
    from ditto.cli import main

    path, _ = make_dataset()
    run = tmp_path / "run"
    train_world_model([path], run, world_model_config("debug", steps=2), progress=False)
    before = load_world_model(run).digest
    fill_disk_halfway(monkeypatch, only=lambda target: target.name == CHECKPOINT)
    argv = ["train-world-model", "--data", str(path), "--out", str(run), "--preset", "debug"]
    assert main([*argv, "--steps", "4", "--resume"]) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error")]
    assert (
        "Traceback" not in stderr
        and len(err) == 1
        and "no space left on the device" in err[0]
        and CHECKPOINT in err[0]
    )
    monkeypatch.undo()
    assert load_world_model(run).step == 2 and load_world_model(run).digest == before
    assert main(["run", "verify", str(run)]) == 0  # the last good state, as recorded
    assert main([*argv, "--steps", "4", "--resume"]) == 0  # and it resumes
    assert load_world_model(run).step == 4
