"""Scoring goal-conditioned runs (lumos, lumos-dbc) under the protocol: `ditto evaluate` gives
each episode its env's mission, reports success overall, per mission type and on seen /
unseen missions, held-out missions only (`--missions unseen`), and chains of missions
(`--chain K`). Tiny BabyAI play data and a debug world model, as tests/test_lumos.py makes."""

import json

import numpy as np
import pytest

from ditto.cli import main
from ditto.data import Dataset
from ditto.envs.babyai import mission_type
from ditto.evaluation.protocol import (
    evaluate_run,
    mission_scores,
    resolve_protocol,
    run_missions,
    training_missions,
)
from ditto.runs import read_config
from tests.test_lumos import make_play


def test_mission_types_are_the_templates():
    assert mission_type("go to the red ball") == "go to"
    assert mission_type("go to a grey key") == "go to"
    assert mission_type("put the blue key next to a green box") == "put next to"
    assert mission_type("pick up the purple ball") == "pick up"


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    return make_play(tmp_path_factory.mktemp("lumos-eval"))


@pytest.fixture(scope="module")
def scored(play, tmp_path_factory, one_torch_thread):
    """A lumos-dbc run on the play data, scored by `ditto evaluate --save --json`."""
    run = tmp_path_factory.mktemp("scored") / "lumos-dbc"
    code = main(
        [
            *("train", "--algo", "lumos-dbc", "--world-model", str(play / "wm")),
            *("--expert-data", str(play / "play"), "--expert-episodes", "1"),
            *("--out", str(run), "--preset", "debug", "--steps", "4", "--batch", "8"),
            *("--set", "checkpoint_every=2"),
        ]
    )
    assert code == 0
    code = main(
        [
            *("evaluate", str(run), "--episodes", "3", "--checkpoints", "2"),
            *("--num-envs", "2", "--device", "cpu", "--save", "--json"),
        ]
    )
    assert code == 0
    return run, json.loads((run / "eval.json").read_text())


def test_evaluate_scores_a_lumos_run_by_its_missions(scored, play):
    run, result = scored
    assert result["algo"] == "lumos-dbc" and result["episodes"] == 6
    assert result["protocol"] == {
        **dict(checkpoints=2, episodes=3, greedy=False, sticky_actions=False),
        **dict(missions="all", chain=1),
    }
    played = result["played"]
    # snapshot i plays seeds from 1000000 + 1000 i, one mission each
    assert [e["seed"] for e in played] == [1_000_000 + k for k in range(3)] + [
        1_001_000 + k for k in range(3)
    ]
    assert all(len(e["missions"]) == 1 for e in played)
    done = [d for e in played for _, d in e["missions"]]
    assert result["success_rate"] == pytest.approx(np.mean(done))
    assert set(result["by_type"]) == {"go to"} and result["by_type"]["go to"]["missions"] == 6
    # seen + unseen: every mission given, split by the training annotations
    seen = training_missions(read_config(run, "agent"), _config(run))
    assert result["training_missions"] == len(seen) > 0
    assert result["seen"]["missions"] == sum(m in seen for e in played for m, _ in e["missions"])
    assert result["seen"]["missions"] + result["unseen"]["missions"] == 6
    assert result["chain"] == {
        "length": 1,
        "completed_mean": pytest.approx(np.mean(done)),
        "reached": [pytest.approx(np.mean(done))],
    }
    assert 0.0 <= result["random_success_rate"] <= 1.0
    expected = (result["success_rate"] - result["random_success_rate"]) / (
        1 - result["random_success_rate"]
    )
    assert result["normalized_score"] == pytest.approx(expected)
    # the same call in Python, the same score (sampling seeded per snapshot)
    again = evaluate_run(run, episodes=3, checkpoints=2, num_envs=2, device="cpu", progress=False)
    assert again["played"] == played and again["success_rate"] == result["success_rate"]


def _config(run):
    from ditto.agents.registry import config_from_json

    return config_from_json(read_config(run, "agent")["agent"])


def test_training_missions_are_the_trained_episodes_annotations(scored, play):
    run, _ = scored
    infos = Dataset(play / "play").infos
    # --expert-episodes 1 of 3: the first trains, the second is held out for diagnostics
    trained = {s.mission for s in infos[0].segments if s.mission}
    held_out = {s.mission for info in infos[1:] for s in info.segments if s.mission}
    assert training_missions(read_config(run, "agent"), _config(run)) == trained
    assert held_out - trained, "the test needs a mission annotated only in the held-out episode"


def test_unseen_missions_are_never_in_the_training_annotations(scored, play, capsys):
    run, _ = scored
    seen = training_missions(read_config(run, "agent"), _config(run))
    start = 1_000_000
    from ditto.envs import make_env

    env = make_env("BabyAI/GoToLocal-v0")
    firsts = [env.reset(seed=start + k)[1]["mission"] for k in range(40)]
    assert any(m in seen for m in firsts), "the filter must have something to leave out"
    result = evaluate_run(
        run, episodes=4, checkpoints=1, num_envs=2, device="cpu", progress=False, missions="unseen"
    )
    given = [m for e in result["played"] for m, _ in e["missions"]]
    assert len(given) == 4 and not set(given) & seen
    assert result["seen"]["missions"] == 0 and result["unseen"]["missions"] == 4
    # the seeds are the first from 1000000 whose mission is unseen
    unseen_seeds = [start + k for k, m in enumerate(firsts) if m not in seen][:4]
    assert [e["seed"] for e in result["played"]] == unseen_seeds
    assert result["protocol"]["missions"] == "unseen"


class _ScriptedEnv:
    """A fake BabyAI env: every mission takes two steps; an episode from seed s has its first
    s % 4 missions done (terminated, reward 1), and the next runs out of budget."""

    def __init__(self):
        self.unwrapped = self

    def reset(self, seed):
        self.seed, self.given, self.steps = seed, 0, 0
        return np.zeros((3, 4, 4), np.uint8), {"mission": self._mission()}

    def _mission(self):
        return f"go to the red ball {self.seed} {self.given}"

    def new_mission(self):
        self.given, self.steps = self.given + 1, 0
        return self._mission()

    def step(self, action):
        self.steps += 1
        if self.steps < 2:
            return np.zeros((3, 4, 4), np.uint8), 0.0, False, False, {}
        done = self.given < self.seed % 4
        return np.zeros((3, 4, 4), np.uint8), float(done), done, not done, {}

    def close(self):
        pass


class _Listener:
    """An agent that records the missions it is given at each step."""

    def __init__(self):
        self.heard: list[list[str]] = []

    def set_missions(self, missions):
        self.heard.append(list(missions))

    def act(self, frames, is_first):
        return np.zeros(len(frames), dtype=np.int64)


def test_a_chain_counts_the_missions_done_in_a_row(monkeypatch):
    import ditto.envs

    monkeypatch.setattr(ditto.envs, "make_env", lambda env_id: _ScriptedEnv())
    agent = _Listener()
    seeds = [0, 1, 2, 3, 5, 7]  # done in a row: 0, 1, 2, 3, 1, 3; with K = 3: 0, 1, 2, 3, 1, 3
    episodes = run_missions(agent, "BabyAI/GoToLocal-v0", seeds, num_envs=2, chain=3)
    assert [e["seed"] for e in episodes] == seeds
    completed = [sum(d for _, d in e["missions"]) for e in episodes]
    assert completed == [0, 1, 2, 3, 1, 3]
    # a chain stops at its first failure or at K done, whichever is first
    assert [len(e["missions"]) for e in episodes] == [1, 2, 3, 3, 2, 3]
    assert [e["return"] for e in episodes] == [float(c) for c in completed]
    # each next mission was given to the agent as soon as the previous was done
    assert any("go to the red ball 3 2" in step for step in agent.heard)
    scores = mission_scores(episodes, 3, None)
    assert scores["chain"]["completed_mean"] == pytest.approx(10 / 6)
    assert scores["chain"]["reached"] == pytest.approx([5 / 6, 3 / 6, 2 / 6])
    assert scores["success_rate"] == pytest.approx(10 / 14)  # 14 missions given, 10 done


def test_a_chain_with_the_bot_does_many_missions_in_one_room(monkeypatch):
    """The real env: an agent that is minigrid's bot does almost every mission, so a chain
    of 3 reaches 3 on most rooms, each next mission on the same room."""
    pytest.importorskip("minigrid")
    import ditto.envs
    from ditto.experts.babyai import BabyAIBotExpert

    made, resets, real = [], [], ditto.envs.make_env

    def make_env(env_id):
        env = real(env_id)
        reset = env.reset
        env.reset = lambda seed: resets.append(seed) or reset(seed=seed)
        made.append(env)
        return env

    monkeypatch.setattr(ditto.envs, "make_env", make_env)

    class Bot:
        def __init__(self):
            self.experts = {}

        def act(self, frames, is_first):
            experts = [self.experts.setdefault(i, BabyAIBotExpert(7)) for i in range(len(made))]
            return np.array([e.act(env, None) for e, env in zip(experts, made, strict=True)])

    episodes = run_missions(Bot(), "BabyAI/GoToLocal-v0", list(range(6)), num_envs=2, chain=3)
    scores = mission_scores(episodes, 3, None)
    assert scores["chain"]["completed_mean"] >= 2.5
    assert sorted(resets) == list(range(6))  # one reset an episode: a chain stays in its room
    assert any(len({m for m, _ in e["missions"]}) > 1 for e in episodes)  # new missions drawn


def test_evaluate_runs_a_chain_through_the_cli(scored, capsys):
    run, _ = scored
    code = main(
        [
            *("evaluate", str(run), "--episodes", "2", "--checkpoints", "1"),
            *("--num-envs", "2", "--device", "cpu", "--chain", "3"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "chains of 3:" in out and "success (missions) by type: go to" in out
    result = evaluate_run(
        run, episodes=2, checkpoints=1, num_envs=2, device="cpu", progress=False, chain=3
    )
    chain = result["chain"]
    assert 0.0 <= chain["completed_mean"] <= 3.0 and len(chain["reached"]) == 3
    assert chain["reached"] == sorted(chain["reached"], reverse=True)
    assert result["protocol"]["chain"] == 3


def test_other_methods_take_no_missions(world, tmp_path, capsys, one_torch_thread):
    run = tmp_path / "dbc"
    code = main(
        [
            *("train", "--algo", "dbc", "--world-model", str(world / "wm")),
            *("--expert-data", str(world / "expert"), "--expert-episodes", "3"),
            *("--out", str(run), "--preset", "debug", "--steps", "2"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"score it with `ditto evaluate {run}`" in capsys.readouterr().out
    # their protocol has no mission settings (a grid's saved scores stay finished)
    protocol = resolve_protocol(_config(run), checkpoints=None, episodes=None, greedy=None)
    assert set(protocol) == {"checkpoints", "episodes", "greedy", "sticky_actions"}
    assert main(["evaluate", str(run), "--episodes", "1", "--chain", "2"]) != 0
    assert "--missions and --chain score goal-conditioned runs" in capsys.readouterr().err


def test_a_lumos_run_in_an_env_without_missions_is_refused(world, tmp_path, capsys):
    run = tmp_path / "lumos"
    code = main(
        [
            *("train", "--algo", "lumos-dbc", "--world-model", str(world / "wm")),
            *("--expert-data", str(world / "expert"), "--expert-episodes", "3"),
            *("--out", str(run), "--preset", "debug", "--steps", "2"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    args = ["evaluate", str(run), "--episodes", "1", "--checkpoints", "1", "--device", "cpu"]
    assert main(args) != 0
    assert "CartPole-v1 gives no mission" in capsys.readouterr().err
