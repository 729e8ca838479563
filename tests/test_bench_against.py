"""`ditto bench world-model --against REV`: today's training step against a commit's, alternating.

Timings here are noisy (a shared CPU), so the tests check the result's structure and a
loose bound on HEAD against itself, never a speed. Today's side is a clone of this
repository's HEAD (the checkout the tests run in may have uncommitted work, which the
benchmark refuses).
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from ditto.cli import main
from ditto.world_model import bench_against as ba

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clean clone of this repository's HEAD."""
    path = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(path)], check=True)
    return path


def test_head_against_itself_through_the_cli(clone, tmp_path, monkeypatch, capsys):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(ba, "bench_against", functools.partial(ba.bench_against, src=clone / "src"))
    args = ["bench", "world-model", "--against", "HEAD", "--preset", "debug", "--device", "cpu"]
    code = main([*args, "--rounds", "2", "--steps", "2", "--warmup", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert result["today"]["commit"] == result["against"]["commit"] == head
    assert (result["preset"], result["mode"], result["threads"], result["rounds"]) == (
        "debug",
        "fp32",
        1,
        2,
    )
    for side in ("today", "against"):
        r = result[side]
        assert len(r["round_ms"]) == 2 and r["ms_min"] <= r["ms_per_step"] <= r["ms_max"]
        assert r["threads"] == 1 and r["params"] == result["today"]["params"]
        assert (r["batch"], r["length"]) == (4, 8)  # the debug preset's
    speedup = result["speedup"]
    assert len(speedup["per_round"]) == 2 and speedup["min"] <= speedup["median"] <= speedup["max"]
    assert 1 / 3 < speedup["median"] < 3  # the same code: near 1, whatever the load
    assert result["speedup_per_frame"] == pytest.approx(speedup["median"])
    assert result["machine"]["cores"] and result["machine"]["cpu"] and result["date"]
    assert list(temp.iterdir()) == []  # REV's exported src is gone
    text = ba.describe(result)
    assert "speedup of today over HEAD: x" in text and head[:9] in text
    assert "per frame" not in text
    # A side whose preset has another batch: the per-frame ratio too.
    result["against"]["batch"], result["speedup_per_frame"] = 8, 2.5
    assert "per frame (the sides' batch x length differ): x2.50" in ba.describe(result)


def test_an_unknown_rev_is_a_one_line_error(capsys):
    args = ["bench", "world-model", "--against", "no-such-rev-1234", "--preset", "debug"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown revision 'no-such-rev-1234'" in err


def test_uncommitted_source_is_refused(clone, tmp_path):
    work = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(clone), str(work)], check=True)
    (work / "src" / "ditto" / "scratch.py").write_text("x = 1\n")
    with pytest.raises(ba.ConfigError, match="uncommitted changes under .*scratch.py"):
        ba.bench_against("HEAD", preset="debug", src=work / "src")


def test_one_preset_and_one_mode(capsys):
    args = ["bench", "world-model", "--against", "HEAD", "--preset", "debug", "small"]
    assert main(args) == 2
    assert "one --preset and one --modes" in capsys.readouterr().err


def test_the_workers_copy_of_train_step_for_older_commits(monkeypatch):
    """Commits before bench.train_step (77aa8b7) run the worker's copy: the same step."""
    import torch

    from ditto.world_model import bench, bench_worker

    cpu = torch.device("cpu")
    args = ("debug", "fp32", cpu, "ALE/Pong-v5", None, None)
    _, _, own = bench.train_step(*args)
    monkeypatch.delattr(bench, "train_step")
    eager, timed, copy = bench_worker._train_step(*args)
    assert copy == own and timed is eager
    timed()
