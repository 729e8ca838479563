import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ditto.data import (
    ChunkSampler,
    Dataset,
    DatasetWriter,
    Episode,
    WindowSampler,
    open_datasets,
    verify_dataset,
)
from ditto.envs import env_spec
from ditto.errors import DatasetError, DittoError, SpecError

from .conftest import fill_disk_halfway, random_episode


def test_episode_checks_shapes(cartpole_spec):
    rng = np.random.default_rng(0)
    good = random_episode(cartpole_spec, 4, rng)
    assert good.length == 4
    with pytest.raises(DatasetError, match="needs 4 actions"):
        Episode(good.observations, good.actions[:3], good.rewards, True, False)
    with pytest.raises(DatasetError, match="needs 4 rewards"):
        Episode(good.observations, good.actions, good.rewards[:2], True, False)
    with pytest.raises(DatasetError, match="uint8"):
        Episode(good.observations.astype(np.float32), good.actions, good.rewards, True, False)
    with pytest.raises(DatasetError, match="NaN"):
        Episode(good.observations, good.actions, np.full(4, np.nan, np.float32), True, False)
    with pytest.raises(DatasetError, match="at least one step"):
        Episode(good.observations[:1], good.actions[:0], good.rewards[:0], True, False)


def test_round_trip_is_exact(make_dataset):
    path, episodes = make_dataset("BipedalWalker-v3", lengths=(3, 7))
    dataset = Dataset(path)
    assert len(dataset) == 2 and dataset.env_id == "BipedalWalker-v3"
    for original, loaded in zip(episodes, dataset, strict=True):
        assert np.array_equal(original.observations, loaded.observations)
        assert np.array_equal(original.actions, loaded.actions)
        assert np.array_equal(original.rewards, loaded.rewards)
        assert (original.terminated, original.truncated) == (loaded.terminated, loaded.truncated)
    assert isinstance(dataset[0].observations, np.memmap)  # frames are not loaded whole


def test_summary_has_the_documented_keys(make_dataset):
    path, episodes = make_dataset(lengths=(5, 10))
    summary = Dataset(path).summary()
    returns = [e.total_return for e in episodes]
    assert (
        summary["env_id"] == "CartPole-v1" and summary["episodes"] == 2 and summary["steps"] == 15
    )
    assert summary["return_mean"] == pytest.approx(np.mean(returns))
    assert summary["return_min"] == pytest.approx(min(returns))
    assert summary["return_max"] == pytest.approx(max(returns))
    assert summary["source"]["expert"] == "synthetic"


def test_writer_appends_to_matching_dataset_and_refuses_other_envs(make_dataset, tmp_path):
    path, _ = make_dataset(lengths=(5,))
    spec = env_spec("CartPole-v1")
    DatasetWriter(path, spec).add(random_episode(spec, 3, np.random.default_rng(1)))
    assert len(Dataset(path)) == 2
    with pytest.raises(SpecError, match="is for CartPole-v1, expected ALE/Pong-v5"):
        DatasetWriter(path, env_spec("ALE/Pong-v5"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a ditto dataset"):
        DatasetWriter(tmp_path / "junk", spec)
    # all that a kill during the first metadata write leaves: a retry may use the directory
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / ".metadata.json.k2x9.tmp").write_text("{")
    DatasetWriter(tmp_path / "killed", spec).add(random_episode(spec, 3, np.random.default_rng(1)))
    assert len(Dataset(tmp_path / "killed")) == 1


def test_writer_rejects_wrong_frames_and_actions(tmp_path):
    spec = env_spec("CartPole-v1")
    writer = DatasetWriter(tmp_path / "ds", spec)
    rng = np.random.default_rng(0)
    pong = random_episode(env_spec("ALE/Pong-v5"), 3, rng)
    with pytest.raises(DatasetError, match="frames have shape"):
        writer.add(
            Episode(np.zeros((4, 3, 64, 64), np.uint8), pong.actions, pong.rewards, True, False)
        )
    bad_actions = Episode(
        np.zeros((4, 1, 64, 64), np.uint8),
        np.array([0, 1, 5]),
        np.zeros(3, np.float32),
        True,
        False,
    )
    with pytest.raises(SpecError, match="action 5 is outside the discrete space"):
        writer.add(bad_actions)
    assert writer.num_episodes == 0


def _metadata(path):
    return json.loads((path / "metadata.json").read_text())


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda p: (p / "metadata.json").unlink(), "metadata.json: missing"),
        (lambda p: (p / "metadata.json").write_text("{not json"), "not valid JSON"),
        (
            lambda p: (p / "episodes" / "000001.observations.npy").unlink(),
            "000001.observations.npy: missing",
        ),
        (
            lambda p: (p / "episodes" / "000000.rewards.npy").write_bytes(b"garbage"),
            "000000.rewards.npy: unreadable",
        ),
        (  # e.g. an interrupted copy
            lambda p: (p / "episodes" / "000000.observations.npy").write_bytes(b""),
            "000000.observations.npy: unreadable \\(No data left in file\\)",
        ),
        (
            lambda p: (p / "metadata.json").write_text(
                json.dumps({**_metadata(p), "episodes": [_metadata(p)["episodes"][0]] * 2})
            ),
            "malformed metadata \\(episode 0 listed twice\\)",
        ),
        (
            lambda p: (p / "metadata.json").write_text(
                json.dumps(
                    {**_metadata(p), "episodes": [{**_metadata(p)["episodes"][0], "length": "5"}]}
                )
            ),
            "malformed metadata \\(an episode's index and length are whole numbers",
        ),
        (  # a null return would make the expert's return, and every normalised score, NaN
            lambda p: (p / "metadata.json").write_text(
                json.dumps(
                    {**_metadata(p), "episodes": [{**_metadata(p)["episodes"][0], "return": None}]}
                )
            ),
            "its return a finite number",
        ),
        (
            lambda p: np.save(
                p / "episodes" / "000000.rewards.npy", np.full(5, np.nan, np.float32)
            ),
            "000000: rewards contain NaN",
        ),
        (
            lambda p: np.save(p / "episodes" / "000001.actions.npy", np.full(12, 7)),
            "000001.actions.npy: action 7 is outside",
        ),
        (
            lambda p: np.save(
                p / "episodes" / "000000.observations.npy", np.zeros((6, 1, 32, 32), np.uint8)
            ),
            "expected uint8 \\(6, 1, 64, 64\\)",
        ),
        (
            lambda p: (p / "metadata.json").write_text(
                json.dumps({**_metadata(p), "format_version": 99})
            ),
            "format version 99 is not supported",
        ),
        (
            lambda p: (p / "metadata.json").write_text(
                json.dumps({**_metadata(p), "episodes": []})
            ),
            "holds no episodes",
        ),
    ],
)
def test_corrupt_datasets_are_rejected_naming_the_file(make_dataset, corrupt, message):
    path, _ = make_dataset(lengths=(5, 12))
    corrupt(path)
    with pytest.raises(DatasetError, match=message) as info:
        Dataset(path)
    assert "\n" not in str(info.value)


def test_mixing_datasets_of_different_envs_is_rejected(make_dataset):
    cartpole, _ = make_dataset("CartPole-v1", name="a")
    pong, _ = make_dataset("ALE/Pong-v5", name="b", lengths=(4,))
    assert len(open_datasets([cartpole, cartpole])) == 2
    with pytest.raises(SpecError, match="is for ALE/Pong-v5, expected CartPole-v1"):
        open_datasets([cartpole, pong])
    # A sampler given a spec other than its dataset's.
    dataset, other = Dataset(pong), env_spec("CartPole-v1")
    with pytest.raises(SpecError, match="dataset .* is for ALE/Pong-v5, expected CartPole-v1"):
        WindowSampler(dataset, other, length=2)
    with pytest.raises(SpecError, match="dataset .* is for ALE/Pong-v5, expected CartPole-v1"):
        ChunkSampler(dataset, other, batch=2, length=2)


def test_windows_never_cross_episodes_and_carry_pre_actions(make_dataset):
    path, episodes = make_dataset(lengths=(5, 12, 30))
    dataset = Dataset(path)
    sampler = WindowSampler(dataset, dataset.spec, length=8, seed=0)
    assert sampler.num_windows == (13 - 8 + 1) + (31 - 8 + 1)  # the 6-frame episode is too short
    batch = sampler.sample(64)
    assert batch.frames.shape == (64, 8, 1, 64, 64) and batch.actions.shape == (64, 8, 2)
    # Every window is a contiguous slice of exactly one episode.
    for frames in batch.frames:
        assert any(
            any(
                np.array_equal(frames, e.observations[s : s + 8])
                for s in range(len(e.observations) - 7)
            )
            for e in episodes
        )
    # Check pre-actions and flags against a known window: episode 1 from frame 0.
    window = sampler.gather(np.array([1, 2]), np.array([0, 23]))
    assert window.is_first[0].tolist() == [True] + [False] * 7
    assert window.actions[0, 0].sum() == 0  # no action led to the first frame
    assert window.actions[0, 1:].argmax(-1).tolist() == episodes[1].actions[:7].tolist()
    assert window.is_last[1].tolist() == [False] * 7 + [True]  # frame 30 is episode 2's last
    assert window.is_terminal[1, 7] == episodes[2].terminated


def test_window_longer_than_every_episode_is_a_clear_error(make_dataset):
    path, _ = make_dataset(lengths=(5, 6))
    with pytest.raises(DatasetError, match="no episode has 50 frames"):
        WindowSampler(Dataset(path), Dataset(path).spec, length=50)


def test_sampler_is_reproducible(make_dataset):
    path, _ = make_dataset()
    first = WindowSampler(Dataset(path), Dataset(path).spec, 4, seed=3).sample(16)
    second = WindowSampler(Dataset(path), Dataset(path).spec, 4, seed=3).sample(16)
    assert np.array_equal(first.frames, second.frames)


def test_interrupted_collection_leaves_a_readable_dataset(tmp_path):
    """Kill a collection mid-way: every episode in the metadata is complete, and collect resumes."""
    out = tmp_path / "ds"
    code = (
        "from ditto.data.collect import collect; "
        f"collect('CartPole-v1', 'random', 10_000, {str(out)!r}, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while time.time() < deadline and (
        not (out / "metadata.json").exists() or len(_metadata(out)["episodes"]) < 3
    ):
        time.sleep(0.05)

    from ditto.data.collect import collect

    try:  # a second collection into the same directory meanwhile is refused at once
        with pytest.raises(DittoError, match=f"{out} is being written by process {proc.pid}"):
            collect("CartPole-v1", "random", 1, out, progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    dataset = Dataset(out)
    assert len(dataset) >= 3
    for episode in dataset:
        assert episode.observations.shape[0] == episode.length + 1
    leftovers = [f for f in os.listdir(out / "episodes") if f.endswith(".tmp")]
    assert all(f.startswith(".") for f in leftovers)  # only hidden temp files, never a half file

    resumed = collect("CartPole-v1", "random", len(dataset) + 2, out, progress=False)
    assert len(resumed) == len(dataset) + 2


def test_dataset_verify_reports_changed_and_missing_files(make_dataset, capsys):
    from ditto.cli import main

    path, episodes = make_dataset(lengths=(3, 4))
    checksums = json.loads((path / "metadata.json").read_text())["checksums"]
    assert len(checksums) == 6 and "episodes/000001.observations.npy" in checksums
    assert verify_dataset(path) == []
    assert main(["dataset", "verify", str(path)]) == 0
    assert "every episode file matches" in capsys.readouterr().out

    changed = path / "episodes" / "000001.rewards.npy"
    data = bytearray(changed.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    (path / "episodes" / "000000.actions.npy").unlink()
    assert main(["dataset", "verify", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}/episodes/000000.actions.npy: missing",
        f"{changed}: changed since it was written (its sha256 is not the recorded one)",
    ]
    assert main(["dataset", "verify", str(path / "nothing")]) == 2  # not a dataset: bad input


def test_a_full_disk_during_a_collection_keeps_the_episodes_written(
    tmp_path, cartpole_spec, monkeypatch
):
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "ds", cartpole_spec)
    writer.add(random_episode(cartpole_spec, 5, rng))
    fill_disk_halfway(monkeypatch)
    with pytest.raises(DittoError, match="no space left on the device") as info:
        writer.add(random_episode(cartpole_spec, 6, rng))
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert len(Dataset(tmp_path / "ds")) == 1 and verify_dataset(tmp_path / "ds") == []


@pytest.mark.parametrize("killed_at", ["before the rename", "after the rename"])
def test_a_recorded_write_killed_midway_leaves_a_file_its_record_accepts(
    tmp_path, monkeypatch, killed_at
):
    """A run's checkpoint is replaced in place: its record must accept the file on disk at
    every moment, or a preempted run would fail `ditto run verify`."""
    import ditto.io
    from ditto.io import atomic_write_recorded, checksum_problem, recorded_checksums

    manifest, target = tmp_path / "config.json", tmp_path / "checkpoint.bin"
    manifest.write_text("{}")
    atomic_write_recorded(target, b"old", manifest)
    real_record, real_write = ditto.io._record, ditto.io.atomic_write_bytes
    records = []

    def record(*args):
        records.append(args)
        if killed_at == "after the rename" and len(records) == 2:
            raise KeyboardInterrupt
        real_record(*args)

    def write(*args):
        if killed_at == "before the rename":
            raise KeyboardInterrupt
        real_write(*args)

    monkeypatch.setattr(ditto.io, "_record", record)
    monkeypatch.setattr(ditto.io, "atomic_write_bytes", write)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_recorded(target, b"new", manifest)
    monkeypatch.undo()
    assert target.read_bytes() == (b"old" if killed_at == "before the rename" else b"new")
    assert checksum_problem(target, recorded_checksums(manifest)["checkpoint.bin"]) is None
    atomic_write_recorded(target, b"newer", manifest)  # the next write settles the record
    assert isinstance(recorded_checksums(manifest)["checkpoint.bin"], str)
