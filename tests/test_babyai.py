"""BabyAI levels as pixel envs, the bot as an expert, and play data with segments."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ditto.data import Dataset, DatasetWriter, Episode
from ditto.data.collect import collect
from ditto.data.episode import Segment
from ditto.envs import env_spec, make_env
from ditto.envs.babyai import BABYAI_INSTALL, BABYAI_PIXELS, babyai_ids, measure_views
from ditto.errors import DatasetError, DittoError, EnvError
from ditto.experts import make_expert

pytest.importorskip("minigrid")

GOTO, PUTNEXT = "BabyAI/GoToLocal-v0", "BabyAI/PutNextLocal-v0"


@pytest.mark.parametrize("env_id", babyai_ids())
def test_frames_are_the_whole_room_in_rgb_with_the_mission(env_id):
    env = make_env(env_id, seed=0)  # grayscale=True by default: BabyAI stays RGB
    frame, info = env.reset(seed=1)
    assert frame.shape == (3, 64, 64) and frame.dtype == np.uint8
    assert info["mission"] == env.get_wrapper_attr("mission") != ""
    assert info["mission"].startswith("go to" if "GoTo" in env_id else "put")
    frame, _, _, _, info = env.step(2)
    assert info["mission"] == env.get_wrapper_attr("mission")
    # the room's walls (grey, 8 px a cell) frame the picture
    assert np.all(frame[:, :8, :] == frame[:, :1, :1]) and frame[:, 0, 0].max() > 0
    spec = env.get_wrapper_attr("ditto_spec")
    assert spec.pixels == BABYAI_PIXELS and spec.action.n == 7
    assert env_spec(env_id) == spec


@pytest.mark.parametrize("env_id", babyai_ids())
def test_the_bot_solves_the_levels_missions(env_id):
    env = make_env(env_id)
    expert = make_expert("scripted", env_id, seed=0)
    solved = 0
    for seed in range(5):
        frame, _ = env.reset(seed=seed)
        expert.reset(env)
        for _ in range(200):
            frame, reward, terminated, truncated, _ = env.step(expert.act(env, frame))
            if terminated or truncated:
                break
        solved += bool(terminated and reward > 0)
    assert solved == 5


def test_the_view_measurement_runs():
    views = measure_views(PUTNEXT, episodes=2)
    assert views["bot_success"] == 1.0 and 0 < views["mission_objects_in_agent_view"] < 1


def test_new_mission_keeps_the_room_and_restarts_the_budget():
    env = make_env(PUTNEXT)
    env.reset(seed=0)
    level = env.unwrapped.level
    level.step_count = 30
    before = level.grid.encode().copy()
    missions = {env.unwrapped.new_mission() for _ in range(10)}
    assert len(missions) > 1 and all(m.startswith("put") for m in missions)
    np.testing.assert_array_equal(level.grid.encode(), before)
    assert level.step_count == 0 and level.mission == env.get_wrapper_attr("mission")


def _play(tmp_path, name, annotate, episodes=2, seed=0, steps=96, epsilon=0.1, env_id=GOTO):
    return collect(
        env_id,
        "babyai-play",
        episodes,
        tmp_path / name,
        epsilon=epsilon,
        seed=seed,
        annotate=annotate,
        play_steps=steps,
        progress=False,
    )


def test_play_data_round_trip_and_reproducible(tmp_path):
    full = _play(tmp_path, "full", annotate=1.0)
    some = _play(tmp_path, "some", annotate=0.3)
    again = _play(tmp_path, "again", annotate=0.3)
    for ds in (full, some):
        assert ds.spec.obs_shape == (3, 64, 64) and ds.lengths.tolist() == [96, 96]
    for a, b, c in zip(full, some, again, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)  # annotate changes no step
        np.testing.assert_array_equal(b.actions, c.actions)
        assert b.segments == c.segments  # the same annotations kept, from the seed
        segments = a.segments
        assert len(segments) > 3 and segments[0].start == 0 and segments[-1].end == 96
        assert all(x.end == y.start for x, y in zip(segments, segments[1:], strict=False))
        assert sum(x.completed for x in segments) >= len(segments) - 2
        for x, y in zip(segments, b.segments, strict=True):
            assert (x.start, x.end, x.completed) == (y.start, y.end, y.completed)
            assert x.annotated == x.completed  # annotate=1: every completed mission keeps its text
            assert y.mission in (None, x.mission)
        # a completed segment ends on the step whose reward is the mission's
        assert all(a.rewards[x.end - 1] > 0 for x in segments if x.completed)
    # written and read back exactly
    meta = json.loads((tmp_path / "some" / "metadata.json").read_text())
    assert [[Segment.from_json(s) for s in e["segments"]] for e in meta["episodes"]] == [
        list(e.segments) for e in Dataset(tmp_path / "some")
    ]
    summary = some.summary()
    assert summary["segments"] == sum(len(e.segments) for e in some)
    assert summary["segments_annotated"] == sum(s.annotated for e in some for s in e.segments)
    assert other_seed_differs(tmp_path, full)


def other_seed_differs(tmp_path, full):
    other = _play(tmp_path, "other", annotate=1.0, episodes=1, seed=5)
    return not np.array_equal(other[0].actions, full[0].actions)


def test_annotate_fraction_is_respected(tmp_path):
    none = _play(tmp_path, "none", annotate=0.0, episodes=3, steps=128)
    half = _play(tmp_path, "half", annotate=0.5, episodes=3, steps=128)
    assert none.summary()["segments_annotated"] == 0
    completed = half.summary()["segments_completed"]
    annotated = half.summary()["segments_annotated"]
    assert completed > 40
    assert abs(annotated - completed / 2) < 4 * np.sqrt(completed / 4)  # within 4 sd
    assert "annotated" in json.dumps(half.summary())


def test_play_collection_resumes_to_the_same_data(tmp_path):
    whole = _play(tmp_path, "whole", annotate=0.5, episodes=2, steps=48, env_id=PUTNEXT)
    _play(tmp_path, "part", annotate=0.5, episodes=1, steps=48, env_id=PUTNEXT)
    resumed = _play(tmp_path, "part", annotate=0.5, episodes=2, steps=48, env_id=PUTNEXT)
    assert [e.segments for e in resumed] == [e.segments for e in whole]
    np.testing.assert_array_equal(resumed[1].observations, whole[1].observations)


def test_datasets_without_segments_are_unchanged(tmp_path):
    spec = env_spec(GOTO)
    writer = DatasetWriter(tmp_path / "plain", spec, {"expert": "scripted"})
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, *spec.obs_shape), dtype=np.uint8)
    writer.add(Episode(frames, np.zeros(3, np.int64), np.zeros(3, np.float32), True, False))
    meta = json.loads((tmp_path / "plain" / "metadata.json").read_text())
    assert "segments" not in meta["episodes"][0]
    ds = Dataset(tmp_path / "plain")
    assert ds[0].segments is None and "segments" not in ds.summary()


def test_bad_segments_are_refused(tmp_path):
    frames = np.zeros((4, 3, 64, 64), np.uint8)
    actions, rewards = np.zeros(3, np.int64), np.zeros(3, np.float32)
    with pytest.raises(DatasetError, match="segment"):
        Episode(frames, actions, rewards, False, True, (Segment(0, 2, True), Segment(1, 3, True)))
    with pytest.raises(DatasetError, match="segment"):
        Episode(frames, actions, rewards, False, True, (Segment(0, 4, True),))
    _play(tmp_path, "d", annotate=1.0, episodes=1, steps=16)
    path = tmp_path / "d" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["episodes"][0]["segments"][0]["annotated"] = False  # but it has a mission
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="malformed metadata"):
        Dataset(tmp_path / "d")


def test_unknown_ids_and_wrong_settings_are_one_line_errors(tmp_path):
    with pytest.raises(EnvError, match="did you mean BabyAI/GoToLocal-v0") as info:
        make_env("BabyAI/GoToLocl-v0")
    assert "\n" not in str(info.value)
    with pytest.raises(DittoError, match="BabyAI levels only"):
        collect("CartPole-v1", "babyai-play", 1, tmp_path / "x", progress=False)
    with pytest.raises(DittoError, match="babyai-play"):
        collect(GOTO, "scripted", 1, tmp_path / "y", annotate=0.5, progress=False)
    with pytest.raises(DittoError, match="annotate must be in"):
        collect(GOTO, "babyai-play", 1, tmp_path / "z", annotate=2.0, progress=False)


def test_missing_minigrid_is_one_line_naming_the_extra():
    code = (
        "import sys, ditto, ditto.cli, ditto.data.collect, ditto.envs, ditto.experts\n"
        "assert 'minigrid' not in sys.modules  # imported only when a BabyAI env is made\n"
        "sys.modules['minigrid'] = None  # as if not installed\n"
        "from ditto.envs import make_env\n"
        "try:\n    make_env('BabyAI/GoToLocal-v0')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == (
        f"EnvError BabyAI/GoToLocal-v0 needs the optional package minigrid ({BABYAI_INSTALL})"
    )


def test_cli_collects_play_data_and_shows_the_annotations(tmp_path, capsys):
    from ditto.cli import main

    out = tmp_path / "cli"
    args = ["collect", "--env", GOTO, "--expert", "babyai-play", "--episodes", "1"]
    assert main([*args, "--out", str(out), "--annotate", "0.5", "--play-steps", "32"]) == 0
    assert main(["dataset", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "segments" in text and "annotated" in text and "annotate=0.5" in text
