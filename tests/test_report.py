import json
import math

import numpy as np
import pytest
from PIL import Image

from ditto.agents.registry import agent_config
from ditto.agents.trainer import train_agent
from ditto.errors import DittoError
from ditto.evaluation.record import record_episode
from ditto.experiments.report import (
    collect_results,
    load_published,
    publish,
    results_page,
    write_report,
)

ENV = "CartPole-v1"
EXPERT, RANDOM = 200.0, 20.0


def _returns(algo: str, expert_episodes: int, seed: int) -> list[float]:
    base = {"ditto": 150.0, "bc": 60.0}[algo] + 10 * expert_episodes + seed
    return [base - 3.0, base, base + 5.0]


def _fake_run(root, algo: str, expert_episodes: int, seed: int, world_model) -> None:
    """An agent run directory as training and `ditto evaluate --save` leave it (no checkpoints)."""
    run = root / f"{algo}_ne{expert_episodes}_s{seed}"
    run.mkdir(parents=True)
    config = {
        "kind": "agent",
        "agent": {"algo": algo, "expert_episodes": expert_episodes, "seed": seed, "steps": 20},
        "world_model": None if algo == "bc" else str(world_model),
        "expert_data": "expert",
        "expert_return": EXPERT,
        "env": {"env_id": ENV},
        "versions": {"ditto": "0.0-test", "torch": "x"},
    }
    (run / "config.json").write_text(json.dumps(config))
    metrics = [{"step": s, "val/action_accuracy": 0.5, "losses/actor": 1.0 / s} for s in (10, 20)]
    if algo != "bc":
        for record in metrics:
            record["val/latent_distance"] = 2.0 / record["step"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    returns = _returns(algo, expert_episodes, seed)
    mean = float(np.mean(returns))
    result = {
        "run": str(run),
        "algo": algo,
        "env_id": ENV,
        "expert_episodes": expert_episodes,
        "seed": seed,
        "return_mean": mean,
        "return_stderr": float(np.std(returns, ddof=1) / math.sqrt(len(returns))),
        "normalized_score": (mean - RANDOM) / (EXPERT - RANDOM),
        "expert_return": EXPERT,
        "random_return": RANDOM,
        "episodes": len(returns),
        "checkpoints": [{"step": 10, "return_mean": mean - 10}, {"step": 20, "return_mean": mean}],
        "greedy": False,
        "returns": returns,
    }
    (run / "eval.json").write_text(json.dumps(result))


@pytest.fixture
def results_root(tmp_path):
    root = tmp_path / "grid"
    world_model = root / "wm"
    (world_model / "diagnostics").mkdir(parents=True)
    (world_model / "config.json").write_text(
        json.dumps({"kind": "world_model", "env": {"env_id": ENV}})
    )
    frames = [Image.new("RGB", (8, 8), (shade, 0, 0)) for shade in (0, 128, 255)]
    frames[0].save(
        world_model / "diagnostics" / "open_loop.gif", save_all=True, append_images=frames[1:]
    )
    for algo in ("ditto", "bc"):
        for expert_episodes in (1, 4):
            for seed in (0, 1):
                _fake_run(root / "runs", algo, expert_episodes, seed, world_model)
    return root


def test_report_tables_figures_and_html(results_root, tmp_path):
    extra, in_place = tmp_path / "episode.gif", results_root / "figures" / "agent_bc.gif"
    in_place.parent.mkdir()
    for path in (extra, in_place):
        Image.new("RGB", (8, 8)).save(path)
    gifs = {"a BC episode": extra, "BC in place": in_place}  # copied / used where it is
    out = write_report(results_root, notes=["A `note`."], extra_gifs=gifs, config={"steps": 20})

    rows = json.loads((results_root / "results.json").read_text())
    assert rows == json.loads(json.dumps(out["results"]))
    assert [(r["algo"], r["expert_episodes"]) for r in rows] == [
        ("ditto", 1),
        ("ditto", 4),
        ("bc", 1),
        ("bc", 4),
    ]
    assert all(r["seeds"] == 2 and r["seed_list"] == [0, 1] and r["episodes"] == 6 for r in rows)
    first = rows[0]  # ditto, N_E = 1: returns 157 160 165 (seed 0), 158 161 166 (seed 1)
    pooled = [157.0, 160.0, 165.0, 158.0, 161.0, 166.0]
    assert first["return_mean"] == pytest.approx(np.mean(pooled))
    assert first["return_stderr"] == pytest.approx(np.std(pooled, ddof=1) / math.sqrt(6))
    assert first["normalized_score"] == pytest.approx(
        (np.mean(pooled) - RANDOM) / (EXPERT - RANDOM)
    )
    low, high = first["iqm_ci95"]
    assert low <= first["iqm_normalized_score"] <= high

    markdown = out["report"].read_text()
    assert (
        "| method | N_E | seeds | return ± stderr | normalised score | IQM [95% CI] |" in markdown
    )
    for name in (
        "score_vs_expert_episodes_CartPole-v1.png",
        "training_CartPole-v1.png",
        "open_loop_CartPole-v1.gif",
    ):
        assert f"(figures/{name})" in markdown
        with Image.open(results_root / "figures" / name) as image:
            image.verify()
    assert (results_root / "figures" / "a_BC_episode.gif").is_file()
    assert "(figures/a_BC_episode.gif)" in markdown and "(figures/agent_bc.gif)" in markdown
    assert sorted(p.name for p in (results_root / "figures").glob("*.gif")) == [
        "a_BC_episode.gif",
        "agent_bc.gif",
        "open_loop_CartPole-v1.gif",
    ]
    assert "A `note`." in markdown and '"steps": 20' in markdown and "0.0-test" in markdown

    page = out["html"].read_text()
    assert "data:image/png;base64," in page and "data:image/gif;base64," in page
    assert 'src="figures/' not in page and "<code>note</code>" in page and "<table>" in page


def test_collect_results_and_empty_dir(results_root, tmp_path):
    assert len(collect_results(results_root)) == 8
    assert all("run_dir" in result for result in collect_results(results_root))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DittoError, match="no evaluated runs"):
        write_report(tmp_path / "empty")


def test_a_single_seed_has_no_interval(tmp_path):
    _fake_run(tmp_path, "bc", 2, 0, None)
    result = json.loads((tmp_path / "bc_ne2_s0" / "eval.json").read_text())
    (row,) = write_report(tmp_path)["results"]
    assert row["return_stderr"] == pytest.approx(result["return_stderr"])
    assert row["iqm_ci95"] == [result["normalized_score"]] * 2


def test_record_episode_writes_a_gif(make_dataset, tmp_path):
    data, _ = make_dataset(lengths=(6, 8, 7))
    config = agent_config("debug", algo="bc", expert_episodes=2, steps=2)
    run = train_agent(config, data, tmp_path / "bc", progress=False).path
    total = record_episode(run, tmp_path / "episode.gif", max_steps=5, scale=2)
    assert math.isfinite(total) and 1 <= total <= 5  # CartPole: +1 per step
    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.size == (128, 128) and gif.n_frames >= 2


def test_sticky_and_sticky_free_scores_are_not_compared(results_root):
    def score_sticky(path):
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "protocol": {"sticky_actions": True}}))

    evals = sorted(results_root.rglob("eval.json"))
    score_sticky(evals[0])
    with pytest.raises(DittoError, match="without sticky actions and .* with them; report them"):
        write_report(results_root)
    for path in evals[1:]:
        score_sticky(path)
    write_report(results_root)
    assert "Scored with sticky actions" in (results_root / "report.md").read_text()


def test_report_finds_a_world_model_outside_it_through_the_runs_relative_path(tmp_path):
    """Agent configs record their world model relative to the run (runs can move)."""
    world_model = tmp_path / "models" / "wm"
    (world_model / "diagnostics").mkdir(parents=True)
    (world_model / "config.json").write_text(
        json.dumps({"kind": "world_model", "env": {"env_id": ENV}})
    )
    Image.new("RGB", (8, 8)).save(world_model / "diagnostics" / "open_loop.gif")
    root = tmp_path / "report"
    _fake_run(root, "ditto", 4, 0, world_model)
    config_path = root / "ditto_ne4_s0" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(world_model="../../models/wm", paths_relative_to="run")
    config_path.write_text(json.dumps(config))
    markdown = write_report(root)["report"].read_text()
    assert f"(figures/open_loop_{ENV}.gif)" in markdown


def test_publish_writes_the_reports_rows_with_their_provenance(results_root, tmp_path):
    rows = write_report(results_root)["results"]
    out = tmp_path / "results"
    path = publish(results_root, "toy", out=out, command="ditto sweep toy.yaml", headline=True)
    record = json.loads(path.read_text())
    assert path == out / "toy.json" and record["name"] == "toy" and record["headline"]
    assert record["command"] == "ditto sweep toy.yaml"
    assert (
        record["protocol"]["sticky_actions"] is False and record["versions"]["ditto"] == "0.0-test"
    )
    assert {"machine", "date", "commit", "world_model_steps", "source"} <= set(record)
    published = record["results"]
    assert [r["algo"] for r in published] == [r["algo"] for r in rows]
    for mine, theirs in zip(published, rows, strict=True):  # the report's aggregation, reused
        assert mine["iqm_normalized_score"] == pytest.approx(theirs["iqm_normalized_score"])
        assert mine["seed_returns"] == [
            np.mean(_returns(mine["algo"], mine["expert_episodes"], s)) for s in (0, 1)
        ]
        assert len(mine["seed_scores"]) == mine["seeds"] == 2
    assert load_published(out)[0]["name"] == "toy"
    page = results_page(load_published(out))
    assert "{ #toy }" in page and "`ditto sweep toy.yaml`" in page
    with pytest.raises(DittoError, match="file name"):
        publish(results_root, "Bad Name", out=out, command="x")
    (out / "other.json").write_text(json.dumps({"schema": "ditto-results/1", "name": "toy"}))
    with pytest.raises(DittoError, match="not a published result"):
        load_published(out)


def test_report_command_publishes_with_its_command(results_root, tmp_path, capsys):
    from ditto.cli import main

    out = tmp_path / "results"
    args = ["report", str(results_root), "--publish", "toy", "--results", str(out)]
    assert main(args) == 2 and "--publish needs --command" in capsys.readouterr().err
    assert main([*args, "--command", "ditto sweep toy.yaml", "--headline"]) == 0
    record = load_published(out)[0]
    assert record["command"] == "ditto sweep toy.yaml" and record["headline"]
    assert [r["seed_list"] for r in record["results"]] == [[0, 1]] * 4
