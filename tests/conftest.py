import numpy as np
import pytest
import torch

from ditto.config import world_model_config
from ditto.data import DatasetWriter, Episode
from ditto.envs import env_spec
from ditto.world_model.trainer import train_world_model


def random_episode(spec, steps: int, rng: np.random.Generator, terminated: bool = True) -> Episode:
    """An episode of random frames and valid random actions for `spec`."""
    frames = rng.integers(0, 256, size=(steps + 1, *spec.obs_shape), dtype=np.uint8)
    if spec.action.is_discrete:
        actions = rng.integers(0, spec.action.n, size=steps)
    else:
        actions = rng.uniform(
            spec.action.low, spec.action.high, size=(steps, spec.action.n)
        ).astype(np.float32)
    rewards = rng.normal(size=steps).astype(np.float32)
    return Episode(frames, actions, rewards, terminated=terminated, truncated=not terminated)


def fill_disk_halfway(monkeypatch, only=lambda path: True) -> None:
    """Make ditto.io.atomic_write fail as a full disk does: half of the file lands, then
    ENOSPC. `only(path)` picks the files that fail; the others are written normally."""
    import errno
    import io
    import os

    import ditto.io

    real = ditto.io.atomic_write

    def full_disk(path, write):
        def half(f):
            whole = io.BytesIO()
            write(whole)
            f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        real(path, half if only(path) else write)

    monkeypatch.setattr(ditto.io, "atomic_write", full_disk)


@pytest.fixture
def cartpole_spec():
    return env_spec("CartPole-v1")


@pytest.fixture
def make_dataset(tmp_path):
    """make_dataset(env_id, lengths) -> (path, episodes): a synthetic dataset on disk."""

    def make(env_id="CartPole-v1", lengths=(5, 12, 30), name="ds", seed=0):
        spec = env_spec(env_id)
        rng = np.random.default_rng(seed)
        writer = DatasetWriter(
            tmp_path / name, spec, {"expert": "synthetic", "epsilon": 0.0, "seed": seed}
        )
        episodes = [
            random_episode(spec, n, rng, terminated=i % 2 == 0) for i, n in enumerate(lengths)
        ]
        for episode in episodes:
            writer.add(episode)
        return tmp_path / name, episodes

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one thread is faster, and many times faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A debug world model on a small synthetic CartPole dataset, and that dataset as expert data.

    The expert's action shows in the frame it acts on (bright for 1, dark for 0), so
    that the action can be learned from the frame or from its latent.
    """
    root = tmp_path_factory.mktemp("world")
    spec = env_spec("CartPole-v1")
    rng = np.random.default_rng(0)
    writer = DatasetWriter(
        root / "expert", spec, {"expert": "synthetic", "epsilon": 0.0, "seed": 0}
    )
    for length in (12, 15, 9, 20, 14):
        actions = rng.integers(0, 2, size=length)
        shade = np.append(40 + 160 * actions, 120).astype(np.uint8)
        frames = np.broadcast_to(shade[:, None, None, None], (length + 1, 1, 64, 64)).copy()
        frames[:, :, :8] = rng.integers(0, 256, size=(length + 1, 1, 8, 64), dtype=np.uint8)
        writer.add(
            Episode(frames, actions, np.ones(length, np.float32), terminated=True, truncated=False)
        )
    train_world_model(
        [root / "expert"], root / "wm", world_model_config("debug", steps=30), progress=False
    )
    return root
