"""The latent probe: ridge R^2 per state quantity, from a world model's latent and the frame."""

import json

import numpy as np
import pytest

from ditto.cli import main
from ditto.config import world_model_config
from ditto.data.collect import collect
from ditto.errors import DittoError
from ditto.evaluation.probe import latent_probe, located, ridge_r2
from ditto.world_model.trainer import train_world_model


def test_ridge_r2_finds_a_linear_quantity_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    weights = rng.normal(size=20)
    linear = x @ (weights / np.linalg.norm(weights))  # unit variance, as the noise
    y = np.stack([linear, rng.normal(size=600), np.ones(600)], axis=1)
    groups = {"linear": [0], "noise": [1], "constant": [2], "both": [0, 1]}
    r2 = ridge_r2(x[:400], y[:400], x[400:], y[400:], groups)
    assert r2["linear"] > 0.99
    assert abs(r2["noise"]) < 0.05
    assert np.isnan(r2["constant"])
    assert 0.4 < r2["both"] < 0.6  # errors pooled: the noise column's count as much

    # An input that never varies in the fit data (a latent class never drawn) and then does
    # on held-out data must not blow the prediction up.
    x[:400, 0] = 0.0
    r2 = ridge_r2(x[:400], y[:400], x[400:], y[400:], groups)
    assert r2["noise"] > -0.1


def test_located_finds_a_single_block_and_skips_crowded_channels():
    cells = np.eye(4)[[0, 1, 2, 3, 1]]  # one block a frame, in 4 cells
    crowded = np.ones((5, 4))
    test_y = np.concatenate([cells, crowded], axis=1)
    predicted = np.concatenate([cells * 0.3 + 0.1, crowded], axis=1)
    predicted[4, :4] = [0.9, 0.2, 0.0, 0.0]  # the last frame's block is missed
    groups = {"ball": [0, 1, 2, 3], "bricks": [4, 5, 6, 7]}
    assert located(predicted, test_y, groups) == {"ball": 0.8}


@pytest.fixture(scope="module")
def breakout_world_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    collect("MinAtar/Breakout-v1", "scripted", 3, root / "data", epsilon=0.3, num_envs=1)
    config = world_model_config("debug", steps=5)
    train_world_model([root / "data"], root / "wm", config, progress=False)
    return root / "wm"


def test_probe_reports_every_object_of_the_game(breakout_world_model, capsys):
    report = latent_probe(breakout_world_model, "scripted", episodes=4, epsilon=0.3)
    assert report["env_id"] == "MinAtar/Breakout-v1"
    assert set(report["r2"]) == {"paddle", "ball", "trail", "brick"}
    assert report["episodes"] == {"fit": 3, "held_out": 1}
    # The frame draws every cell, so a linear read of its pixels finds the paddle.
    assert report["r2"]["paddle"]["frame"] > 0.5
    assert all(-5 < r["latent"] <= 1 for r in report["r2"].values())  # no blow-up (was -1e4)
    assert report["located"]["paddle"]["frame"] > 0.5 and "brick" not in report["located"]

    assert main(["probe", str(breakout_world_model), "--episodes", "4", "--json", "--save"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["r2"].keys() == report["r2"].keys()
    assert (breakout_world_model / "probe.json").is_file()


def test_probe_refuses_bad_input(breakout_world_model, tmp_path, capsys):
    with pytest.raises(DittoError, match="--episodes must be >= 2"):
        latent_probe(breakout_world_model, episodes=1)
    assert main(["probe", str(tmp_path), "--episodes", "2"]) == 2
    assert "not a world-model run" in capsys.readouterr().err
