"""The library on an accelerator: training, resuming, loading and scoring on DITTO_TEST_DEVICE.

The device is cuda unless DITTO_TEST_DEVICE names another; without it these tests
skip, so CI (CPU only) skips them and `benchmarks/gpu_check.sh` runs them on a
GPU. `DITTO_TEST_DEVICE=cpu pytest tests/test_device.py` checks the tests themselves.
Precision is "auto" (the debug presets' is fp32), so on an Ampere or later GPU training
runs under bf16 autocast.
"""

import os

import numpy as np
import pytest
import torch

from ditto.agents.bench import bench_imagination
from ditto.agents.registry import agent_config
from ditto.agents.trainer import train_agent
from ditto.config import world_model_config
from ditto.device import resolve_device
from ditto.errors import DittoError
from ditto.evaluation.protocol import evaluate_run
from ditto.runs import METRICS, read_metrics
from ditto.world_model.bench import bench_world_model
from ditto.world_model.trainer import load_world_model, train_world_model

DEVICE = os.environ.get("DITTO_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="needs CUDA (or DITTO_TEST_DEVICE=cpu)",
)


@pytest.fixture(autouse=True)
def deterministic():
    """Deterministic kernels, so that a resumed run can repeat an uninterrupted one (cuBLAS
    also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before its first use: gpu_check.sh sets it)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


def _records(run, key):
    return {r["step"]: r[key] for r in read_metrics(run / METRICS) if key in r}


def test_world_model_trains_resumes_and_loads_on_either_device(make_dataset, tmp_path):
    path, _ = make_dataset(lengths=(40, 40, 40, 40))

    def config(steps):
        return world_model_config(
            "debug",
            steps=steps,
            log_every=1,
            eval_every=60,
            checkpoint_every=30,
            precision="auto",
        )

    key = "losses/world_model/loss"
    train_world_model([path], tmp_path / "straight", config(60), device=DEVICE, progress=False)
    losses = list(_records(tmp_path / "straight", key).values())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < np.mean(losses[:5])  # random frames: it falls, not far
    assert (tmp_path / "straight" / "diagnostics" / "open_loop.gif").stat().st_size > 0

    # Stopped and resumed on the device: the device's RNG state comes back with the run.
    train_world_model([path], tmp_path / "split", config(30), device=DEVICE, progress=False)
    train_world_model(
        [path], tmp_path / "split", config(60), device=DEVICE, resume=True, progress=False
    )
    split = _records(tmp_path / "split", key)
    assert list(split.values()) == pytest.approx(losses, rel=1e-4)

    # A run trained on the device loads on the CPU and back, with the same weights.
    on_cpu = load_world_model(tmp_path / "straight", "cpu").model
    on_device = load_world_model(tmp_path / "straight", DEVICE).model
    features = torch.randn(3, on_cpu.feature_dim)
    with torch.no_grad():
        assert torch.allclose(
            on_device.decode(features.to(DEVICE)).cpu(), on_cpu.decode(features), atol=1e-3
        )  # not closer: cuDNN convolutions use TF32 in fp32 by default


@pytest.mark.parametrize("algo", ["ditto", "dbc", "dgail", "bc"])
def test_agents_train_resume_and_score_on_either_device(world, tmp_path, algo):
    def config(steps):
        return agent_config(
            "debug",
            algo=algo,
            expert_episodes=3,
            steps=steps,
            log_every=1,
            checkpoint_every=3,
            precision="auto",
        )

    def train(steps, out, resume=False):
        model = None if algo == "bc" else world / "wm"
        return train_agent(
            config(steps),
            world / "expert",
            out,
            model,
            device=DEVICE,
            resume=resume,
            progress=False,
        )

    train(6, tmp_path / "straight")
    train(3, tmp_path / "split")
    run = train(6, tmp_path / "split", resume=True).path
    losses = _records(tmp_path / "straight", "losses/actor")
    assert np.isfinite(list(losses.values())).all()
    assert list(_records(run, "losses/actor").values()) == pytest.approx(
        list(losses.values()), rel=1e-4
    )
    for device in (DEVICE, "cpu"):  # a run trained on the device deploys on either
        score = evaluate_run(run, episodes=2, num_envs=2, device=device, progress=False)
        assert score["episodes"] == 4 and np.isfinite(score["return_mean"])


def test_a_device_beyond_the_machines_is_one_line():
    device = torch.device(DEVICE)
    if device.type == "cuda":
        with pytest.raises(DittoError, match=r"has \d+ CUDA device\(s\); use cuda:0 to"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert resolve_device(DEVICE) == device


def test_benchmarks_run_on_the_device():
    device = torch.device(DEVICE)
    modes = ["fp32", "bf16"]
    for result in [
        *bench_world_model(["debug"], modes, device, steps=1, warmup=1),
        *bench_imagination(["debug"], modes, device, batch=16, steps=1, warmup=1),
    ]:
        assert result["tflops_per_s"] > 0
