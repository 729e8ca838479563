import json
from dataclasses import replace

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector.episode_buffer import EpisodeBuffer
from PIL import UnidentifiedImageError

from ditto.cli import main
from ditto.data import Dataset, DatasetWriter, open_datasets
from ditto.data.minari_io import export_minari, import_minari
from ditto.envs import env_spec, to_frame
from ditto.errors import DatasetError
from ditto.specs import EnvSpec

from .conftest import random_episode


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    """Every Minari path of these tests lies in tmp_path, never in ~/.minari."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _write(path, spec, lengths, seed=0):
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(path, spec, {"expert": "synthetic", "epsilon": 0.0, "seed": seed})
    ends = [(True, False), (False, True), (False, False)]
    episodes = []
    for i, steps in enumerate(lengths):
        episode = random_episode(spec, steps, rng)
        terminated, truncated = ends[i % len(ends)]
        episode = type(episode)(
            episode.observations, episode.actions, episode.rewards, terminated, truncated
        )
        writer.add(episode)
        episodes.append(episode)
    return episodes


def _assert_same(episodes, dataset):
    assert len(dataset) == len(episodes)
    for original, loaded in zip(episodes, dataset, strict=True):
        assert loaded.observations.dtype == np.uint8
        assert np.array_equal(original.observations, loaded.observations)
        assert loaded.actions.dtype == original.actions.dtype
        assert np.array_equal(original.actions, loaded.actions)
        assert np.array_equal(original.rewards, loaded.rewards)
        assert (loaded.terminated, loaded.truncated) == (original.terminated, original.truncated)


@pytest.mark.parametrize(
    "env_id, channels",
    [("CartPole-v1", None), ("BipedalWalker-v3", 3)],
    ids=["discrete", "continuous-rgb"],
)
def test_export_import_round_trip_is_exact(tmp_path, minari_home, env_id, channels):
    spec = env_spec(env_id)
    if channels is not None:
        spec = EnvSpec(spec.env_id, (channels, 64, 64), spec.action)
    episodes = _write(tmp_path / "ds", spec, lengths=(5, 20, 9))

    path = export_minari(tmp_path / "ds", "ditto/test-round-trip-v0", root=tmp_path / "elsewhere")
    assert path == tmp_path / "elsewhere" / "ditto" / "test-round-trip-v0"
    assert not minari_home.exists() or not any(minari_home.iterdir())
    metadata = json.loads((path / "data" / "metadata.json").read_text())
    assert metadata["jpeg_encoding"] is False and metadata["data_format"] == "hdf5"
    assert metadata["total_episodes"] == 3 and metadata["total_steps"] == 34
    assert EnvSpec.from_json(json.loads(metadata["ditto_env_spec"])) == spec
    # The frames sit in the HDF5 file as raw uint8 arrays, byte for byte.
    with h5py.File(path / "data" / "main_data.hdf5", "r") as file:
        for i, episode in enumerate(episodes):
            stored = file[f"episode_{i}/observations"]
            assert stored.dtype == np.uint8 and stored.compression is None
            assert np.array_equal(stored[()], episode.observations)
            assert list(file[f"episode_{i}/terminations"][()]) == [False] * (episode.length - 1) + [
                episode.terminated
            ]
            assert list(file[f"episode_{i}/truncations"][()]) == [False] * (episode.length - 1) + [
                episode.truncated
            ]

    # Minari itself reads it (T+1 observations, per-step ends), and lists its namespace.
    monkey_root = str(tmp_path / "elsewhere")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", monkey_root)
        loaded = minari.load_dataset("ditto/test-round-trip-v0")
        assert "ditto/test-round-trip-v0" in minari.list_local_datasets()
        from minari.namespace import list_local_namespaces

        assert "ditto" in list_local_namespaces()
        first = next(iter(loaded.iterate_episodes()))
        assert np.array_equal(first.observations, episodes[0].observations)
        assert np.array_equal(first.rewards, episodes[0].rewards)

        back = import_minari("ditto/test-round-trip-v0", tmp_path / "back", progress=False)
    assert back.spec == spec
    assert back.metadata["source"] == {"minari": "ditto/test-round-trip-v0"}
    _assert_same(episodes, back)
    assert Dataset(tmp_path / "back").spec == spec

    # By path, to the dataset folder or to its data folder; an explicit root works too.
    _assert_same(episodes, import_minari(str(path), tmp_path / "back2", progress=False))
    _assert_same(episodes, import_minari(str(path / "data"), tmp_path / "back3", progress=False))
    _assert_same(
        episodes,
        import_minari(
            "ditto/test-round-trip-v0",
            tmp_path / "back4",
            progress=False,
            root=tmp_path / "elsewhere",
        ),
    )
    # Re-running into a finished import adds nothing.
    assert len(import_minari(str(path), tmp_path / "back2", progress=False)) == 3


def test_export_uses_minari_datasets_path_and_never_overwrites(
    tmp_path, minari_home, cartpole_spec
):
    _write(tmp_path / "ds", cartpole_spec, lengths=(4,))
    path = export_minari(tmp_path / "ds", "test-plain-v1")
    assert path == minari_home / "test-plain-v1" and (path / "data" / "main_data.hdf5").is_file()
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(tmp_path / "ds", "test-plain-v1")
    with pytest.raises(DatasetError, match="bad Minari dataset id"):
        export_minari(tmp_path / "ds", "no version")
    assert sorted(p.name for p in minari_home.iterdir()) == [
        "test-plain-v1"
    ]  # no staging left over


def _minari_dataset(dataset_id, observation_space, action_space, episodes, env=None, **kwargs):
    """A Minari dataset as made outside ditto: episodes are (observations, actions) pairs."""
    buffers = []
    for observations, actions in episodes:
        steps = len(actions)
        ends = np.zeros(steps, dtype=bool)
        ends[-1] = True
        buffers.append(
            EpisodeBuffer(
                observations=observations,
                actions=actions,
                rewards=np.ones(steps),
                terminations=ends,
                truncations=np.zeros(steps, dtype=bool),
            )
        )
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env,
        eval_env=env,
        observation_space=observation_space,
        action_space=action_space,
        algorithm_name="random",
        author="test",
        author_email="test@example.com",
        code_permalink="https://example.com",
        description="test",
        **kwargs,
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_resizes_rgb_images(tmp_path, minari_home):
    rng = np.random.default_rng(0)
    space = gym.spaces.Box(0, 255, (96, 80, 3), np.uint8)
    episodes = [
        (rng.integers(0, 256, (n + 1, 96, 80, 3), dtype=np.uint8), rng.integers(0, 2, n))
        for n in (3, 6)
    ]
    # Minari's default here: JPEG-encoded image observations.
    made = _minari_dataset(
        "test/cartpole-rgb-v0", space, gym.spaces.Discrete(2), episodes, env="CartPole-v1"
    )
    decoded = [episode.observations for episode in made.iterate_episodes()]

    dataset = import_minari("test/cartpole-rgb-v0", tmp_path / "out", progress=False)
    # CartPole's spec, but not its label: ditto did not draw these frames.
    assert dataset.spec == replace(env_spec("CartPole-v1"), pixels="minari:test/cartpole-rgb-v0")
    assert dataset.spec.obs_shape == (1, 64, 64)
    for (_, actions), images, episode in zip(episodes, decoded, dataset, strict=True):
        assert np.array_equal(episode.observations, np.stack([to_frame(img) for img in images]))
        assert np.array_equal(episode.actions, actions)
        assert np.array_equal(episode.rewards, np.ones(len(actions), np.float32))
        assert episode.terminated and not episode.truncated


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_needs_an_env_id_and_takes_unregistered_ones(tmp_path, minari_home):
    rng = np.random.default_rng(1)
    space = gym.spaces.Box(0, 255, (3, 40, 40), np.uint8)  # channels first, no env recorded
    frames = rng.integers(0, 256, (5, 3, 40, 40), dtype=np.uint8)
    actions = rng.uniform(-2, 2, (4, 2)).astype(np.float32)
    _minari_dataset(
        "test/chw-v0", space, gym.spaces.Box(-2, 2, (2,), np.float32), [(frames, actions)]
    )
    with pytest.raises(DatasetError, match="records no environment"):
        import_minari("test/chw-v0", tmp_path / "out", progress=False)
    dataset = import_minari("test/chw-v0", tmp_path / "out", env_id="MyPixelEnv-v0", progress=False)
    assert dataset.spec.env_id == "MyPixelEnv-v0" and dataset.spec.obs_shape == (1, 64, 64)
    assert dataset.spec.action.kind == "continuous" and dataset.spec.action.low == (-2.0, -2.0)
    expected = np.stack([to_frame(np.ascontiguousarray(f.transpose(1, 2, 0))) for f in frames])
    assert np.array_equal(dataset[0].observations, expected)
    assert np.array_equal(dataset[0].actions, actions)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_rejects_state_observations_and_bad_action_spaces(tmp_path, minari_home):
    state = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    episode = (np.zeros((4, 4), np.float32), np.array([0, 1, 0]))
    _minari_dataset(
        "test/cartpole-state-v0", state, gym.spaces.Discrete(2), [episode], env="CartPole-v1"
    )
    with pytest.raises(DatasetError, match="not images; ditto learns from pixels"):
        import_minari("test/cartpole-state-v0", tmp_path / "out", progress=False)

    image = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    multi = gym.spaces.MultiDiscrete([2, 3])
    _minari_dataset(
        "test/multi-v0", image, multi, [(frames, np.zeros((2, 2), np.int64))], jpeg_encoding=False
    )
    with pytest.raises(DatasetError, match="Discrete and 1-d Box"):
        import_minari("test/multi-v0", tmp_path / "out", env_id="Unregistered-v0", progress=False)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_refusal_of_dict_observations_is_one_line(tmp_path, minari_home):
    bound = np.linspace(1, 2, 17).astype(np.float32)  # str() of this Box spans several lines
    state = gym.spaces.Box(-bound, bound, (17,), np.float32)
    space = gym.spaces.Dict({"state": state, "pixels": gym.spaces.Box(0, 255, (8, 8), np.uint8)})
    observations = {"state": np.zeros((3, 17), np.float32), "pixels": np.zeros((3, 8, 8), np.uint8)}
    _minari_dataset(
        "test/dict-v0", space, gym.spaces.Discrete(2), [(observations, np.array([0, 1]))]
    )
    with pytest.raises(DatasetError, match="not images") as info:
        import_minari("test/dict-v0", tmp_path / "out", env_id="CartPole-v1", progress=False)
    assert "\n" not in str(info.value)
    assert "Dict(pixels: Box(8, 8) uint8, state: Box(17,) float32)" in str(info.value)


def test_import_errors_for_missing_and_empty_datasets(tmp_path, minari_home):
    with pytest.raises(
        DatasetError, match=r"'nope/missing-v0' not found.*local Minari datasets"
    ) as info:
        import_minari("nope/missing-v0", tmp_path / "out", progress=False)
    assert str(minari_home) in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "notminari").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset folder"):
        import_minari(str(tmp_path / "notminari"), tmp_path / "out", progress=False)

    from minari.dataset.minari_storage import MinariStorage

    (tmp_path / "empty" / "data").mkdir(parents=True)
    storage = MinariStorage.new(
        tmp_path / "empty" / "data",
        observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=gym.spaces.Discrete(2),
    )
    storage.update_metadata({"dataset_id": "test/empty-v0", "minari_version": minari.__version__})
    with pytest.raises(DatasetError, match="holds no episodes"):
        import_minari(str(tmp_path / "empty"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_reads_raw_images_of_datasets_without_jpeg_key(tmp_path, minari_home):
    """Minari treats a dataset whose metadata lacks "jpeg_encoding" as JPEG-encoded; ditto looks."""
    rng = np.random.default_rng(2)
    space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    _minari_dataset(
        "test/old-v0",
        space,
        gym.spaces.Discrete(2),
        [(frames, np.array([0, 1, 1]))],
        env="CartPole-v1",
        jpeg_encoding=False,
    )
    meta_path = minari_home / "test" / "old-v0" / "data" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    del metadata["jpeg_encoding"]
    meta_path.write_text(json.dumps(metadata))
    with pytest.raises(UnidentifiedImageError):  # Minari itself decodes the raw rows as JPEG
        next(iter(minari.load_dataset("test/old-v0").iterate_episodes()))
    dataset = import_minari("test/old-v0", tmp_path / "out", progress=False)
    assert np.array_equal(dataset[0].observations, np.stack([to_frame(f) for f in frames]))


def test_import_of_a_ditto_export_keeps_its_env(tmp_path, cartpole_spec):
    _write(tmp_path / "ds", cartpole_spec, lengths=(3,))
    path = export_minari(tmp_path / "ds", "ditto/keep-v0")
    with pytest.raises(DatasetError, match="exported by ditto from CartPole-v1, not Acrobot-v1"):
        import_minari(str(path), tmp_path / "out", env_id="Acrobot-v1", progress=False)


def test_an_import_failing_at_its_first_episode_leaves_nothing(tmp_path, cartpole_spec):
    _write(tmp_path / "ds", cartpole_spec, lengths=(3, 4))
    path = export_minari(tmp_path / "ds", "ditto/bad-v0")
    with h5py.File(path / "data" / "main_data.hdf5", "r+") as f:
        f["episode_0"]["actions"][0] = 7  # CartPole has actions 0 and 1
    with pytest.raises(DatasetError, match="episode 0: .*7"):
        import_minari(str(path), tmp_path / "out", progress=False)
    assert not any((tmp_path / "out").iterdir())  # a retry starts afresh, not from an empty dataset


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_import_is_labelled_by_its_source_and_mixes_only_when_asserted(
    tmp_path, minari_home, cartpole_spec, capsys
):
    """Issue 26: frames from another's render() were labelled ditto-cartpole-1 and mixed."""
    _write(tmp_path / "collected", cartpole_spec, lengths=(3,))
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    _minari_dataset(
        "test/gym-render-v0",
        gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        gym.spaces.Discrete(2),
        [(frames, np.array([0, 1, 1]))],
        env="CartPole-v1",
        jpeg_encoding=False,
    )
    imported = import_minari("test/gym-render-v0", tmp_path / "imported", progress=False)
    assert imported.spec.pixels == "minari:test/gym-render-v0"
    for order in ([tmp_path / "collected", imported.root], [imported.root, tmp_path / "collected"]):
        with pytest.raises(DatasetError, match=r"does not mix.*--pixels ditto-cartpole-1") as info:
            open_datasets(order)
        assert "\n" not in str(info.value)
    argv = ["train-world-model", "--data", str(tmp_path / "collected"), str(imported.root)]
    assert main([*argv, "--out", str(tmp_path / "wm"), "--preset", "debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not mix" in err

    # The user who knows the frames match says so, and the datasets mix.
    code = main(
        ["dataset", "import-minari", "test/gym-render-v0", "--out", str(tmp_path / "asserted")]
        + ["--pixels", "ditto-cartpole-1"]
    )
    assert code == 0 and "drawn by ditto-cartpole-1" in capsys.readouterr().out
    assert len(open_datasets([tmp_path / "collected", tmp_path / "asserted"])) == 2


def test_a_ditto_export_keeps_its_pixels_label(tmp_path, cartpole_spec):
    _write(tmp_path / "ds", cartpole_spec, lengths=(3,))
    path = export_minari(tmp_path / "ds", "ditto/label-v0")
    assert import_minari(str(path), tmp_path / "back", progress=False).spec == cartpole_spec
    with pytest.raises(DatasetError, match="frames drawn by 'ditto-cartpole-1', not 'render'"):
        import_minari(str(path), tmp_path / "out", pixels="render", progress=False)
