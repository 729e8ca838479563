"""Experiment grids: YAML checking, every stage end to end on the debug presets, cached cells."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from ditto.cli import main
from ditto.data import Dataset
from ditto.errors import ConfigError
from ditto.evaluation.protocol import evaluate_run
from ditto.experiments.demo import DEMOS, demo_plan, run_demo
from ditto.experiments.grid import grid_from_dict, load_grid, run_grid
from ditto.runs import EVAL

TINY = {
    "envs": [
        {
            "env": "CartPole-v1",
            "expert": "scripted",
            "expert_episodes": 2,
            "noisy_episodes": 1,
            "random_episodes": 1,
            "more_noisy": [{"epsilon": 0.4, "episodes": 1}],
        }
    ],
    "presets": ["debug"],
    "algos": ["ditto", "bc"],
    "expert_episodes": [1],
    "seeds": [0],
    "world_model": {"steps": 6},
    "agent": {"steps": 4, "checkpoint_every": 2},
    "evaluation": {"checkpoints": 1, "episodes": 1, "num_envs": 1},
}


def test_grid_runs_every_stage_and_skips_finished_cells(tmp_path, monkeypatch):
    grid = grid_from_dict(TINY)
    results = run_grid(grid, tmp_path / "sweep", device="cpu", jobs=1)
    assert sorted(r["algo"] for r in results) == ["bc", "ditto"]
    root = tmp_path / "sweep" / "CartPole-v1"
    assert len(Dataset(root / "data" / "expert")) == 2
    assert Dataset(root / "data" / "noisy2").metadata["source"]["epsilon"] == 0.4
    assert (root / "debug" / "world_model" / "checkpoint.safetensors").is_file()
    scored = root / "debug" / "agents" / "ditto-ne1-seed0" / EVAL
    first = scored.stat().st_mtime_ns
    again = run_grid(grid, tmp_path / "sweep", device="cpu", jobs=1)
    assert scored.stat().st_mtime_ns == first  # cached, not re-scored
    assert {r["return_mean"] for r in again} == {r["return_mean"] for r in results}

    # A grid copied elsewhere as a whole (cp -r) goes on there, from another working directory.
    shutil.copytree(tmp_path / "sweep", tmp_path / "copy" / "sweep")
    shutil.rmtree(tmp_path / "sweep")
    monkeypatch.chdir(tmp_path / "copy")
    grown = run_grid(grid_from_dict({**TINY, "seeds": [0, 1]}), "sweep", device="cpu", jobs=1)
    assert sorted(f"{r['algo']}{r['seed']}" for r in grown) == ["bc0", "bc1", "ditto0", "ditto1"]
    moved = Path("sweep/CartPole-v1/debug/agents/ditto-ne1-seed0")
    assert (moved / EVAL).stat().st_mtime_ns == first  # still cached
    scored = evaluate_run(moved, device="cpu", progress=False, **asdict(grid.evaluation))
    assert scored["episodes"] == 1


def test_a_grid_may_grow_but_not_change_its_settings(tmp_path):
    run_grid(grid_from_dict({**TINY, "algos": ["bc"]}), tmp_path / "s", device="cpu", jobs=1)
    grown = run_grid(
        grid_from_dict({**TINY, "algos": ["bc", "dbc"]}), tmp_path / "s", device="cpu", jobs=1
    )
    assert sorted(r["algo"] for r in grown) == ["bc", "dbc"]
    changed = {**TINY, "agent": {**TINY["agent"], "steps": 6}}
    with pytest.raises(ConfigError, match="other settings .*agent: .*'steps': 4.* -> .*'steps': 6"):
        run_grid(grid_from_dict(changed), tmp_path / "s", device="cpu", jobs=1)


def test_parallel_cells_and_rescoring_under_new_evaluation_settings(tmp_path):
    results = run_grid(grid_from_dict(TINY), tmp_path / "p", device="cpu", jobs=2)
    assert sorted(r["algo"] for r in results) == ["bc", "ditto"]
    assert {r["protocol"]["episodes"] for r in results} == {1}
    more = {**TINY, "evaluation": {**TINY["evaluation"], "episodes": 2}}
    rescored = run_grid(grid_from_dict(more), tmp_path / "p", device="cpu", jobs=1)
    assert {r["episodes"] for r in rescored} == {2}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algos": ["ppo"]}, "unknown algo 'ppo'"),
        ({"presets": ["huge"]}, "unknown preset 'huge'"),
        ({"expert_episodes": [2]}, "collects 2 expert episodes but N_E goes up to 2"),
        ({"agent": {"step": 3}}, "step"),
        ({"colour": "blue"}, "unknown keys \\['colour'\\]"),
        ({"envs": []}, "at least one env"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"agent": {"lr": "1e-3"}}, "lr must be float, got '1e-3' \\(YAML reads 1e-3 as text"),
        ({"evaluation": {"checkpoints": 11}}, "more than the 2 snapshots"),
        (
            {"evaluation": {"sticky_actions": True}},
            "Atari and MinAtar setting; CartPole-v1 has none",
        ),
        (
            {"envs": [{**TINY["envs"][0], "more_noisy": [{"epsilon": "0.4", "episodes": 3}]}]},
            "more_noisy entries look like \\{epsilon: 0.4, episodes: 40\\}",
        ),
    ],
)
def test_bad_grids_fail_early_with_one_line(change, message):
    with pytest.raises(ConfigError, match=message):
        grid_from_dict({**TINY, **change})


def test_minatar_grid_scores_cells_with_sticky_actions(tmp_path):
    env = {**TINY["envs"][0], "env": "MinAtar/Breakout-v1", "more_noisy": []}
    grid = {
        **TINY,
        "envs": [env],
        "algos": ["dbc"],
        "evaluation": {**TINY["evaluation"], "sticky_actions": True},
    }
    results = run_grid(grid_from_dict(grid), tmp_path / "m", device="cpu", jobs=1)
    assert [r["protocol"]["sticky_actions"] for r in results] == [True]
    # Scored without sticky actions before, a cell is scored again.
    plain = {**grid, "evaluation": TINY["evaluation"]}
    assert [
        r["protocol"]["sticky_actions"]
        for r in run_grid(grid_from_dict(plain), tmp_path / "m", device="cpu", jobs=1)
    ] == [False]


def test_yaml_grid_files(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text("envs: [CartPole-v1]\nalgos: [dbc]\nexpert_episodes: [4]\nseeds: [0, 1]\n")
    grid = load_grid(path)
    assert grid.envs[0].env == "CartPole-v1" and grid.seeds == (0, 1)
    path.write_text("envs: [CartPole-v1\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    path.write_text("envs: [CartPole-v1]\nalgos: [dbc]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--ray", "--jobs", "2"]) == 2
    assert "with --ray, the grid's resources: section sizes the tasks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_configs_are_valid():
    shipped = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"small", "paper", "cartpole", "atari_cpu"}
    for path in shipped:
        load_grid(path)


def test_demo_writes_the_report_and_results(tmp_path, monkeypatch):
    plan = {"budget": "seconds", "caveat": "Too short to learn anything.", "grid": TINY}
    monkeypatch.setitem(DEMOS, "CartPole-v1", plan)
    run_demo("CartPole-v1", tmp_path / "demo", device="cpu", jobs=1)
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert sorted(r["algo"] for r in results) == ["bc", "ditto"]
    for row in results:
        assert {
            "algo",
            "expert_episodes",
            "return_mean",
            "return_stderr",
            "normalized_score",
            "seeds",
        } <= set(row)
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "agent_ditto.gif" in report and "DITTO" in report
    assert "Too short to learn anything." in report  # the plan's caveat is stated
    assert "data:image/gif;base64," in (tmp_path / "demo" / "report.html").read_text()


def test_demo_needs_an_expert_for_envs_without_a_plan():
    with pytest.raises(ConfigError, match="--expert"):
        demo_plan("LunarLander-v3")
    plan = demo_plan("LunarLander-v3", "random")
    assert "caveat" not in plan  # CartPole's caveat does not carry over
    env = plan["grid"]["envs"][0]
    assert (env["env"], env["expert"]) == ("LunarLander-v3", "random")
    assert (
        DEMOS["CartPole-v1"]["grid"]["envs"][0]["env"] == "CartPole-v1"
    )  # the template is not changed
