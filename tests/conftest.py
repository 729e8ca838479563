import numpy as np
import pytest

from ditto.data import DatasetWriter, Episode
from ditto.envs import env_spec


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
