import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto.cli import main
from ditto.data import Dataset
from ditto.io import LOCK, writer_lock
from ditto.runs import read_config, stored_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_collect_then_info_json(tmp_path, capsys):
    out = tmp_path / "cartpole"
    code, _, _ = run(
        capsys,
        "collect",
        "--env",
        "CartPole-v1",
        "--expert",
        "scripted",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--epsilon",
        "0.1",
    )
    assert code == 0
    code, stdout, _ = run(capsys, "dataset", "info", str(out), "--json")
    info = json.loads(stdout)
    assert {"env_id", "episodes", "steps", "return_mean", "return_min", "return_max"} <= info.keys()
    assert info["env_id"] == "CartPole-v1" and info["episodes"] == 2
    assert info["source"] == {"expert": "scripted", "epsilon": 0.1, "seed": 0}
    assert info["steps"] == len(Dataset(out)[0].actions) + len(Dataset(out)[1].actions)


def test_collect_atari_random_uses_the_vector_env(tmp_path, capsys):
    out = tmp_path / "pong"
    code, _, _ = run(
        capsys,
        "collect",
        "--env",
        "ALE/Pong-v5",
        "--expert",
        "random",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--num-envs",
        "2",
    )
    assert code == 0
    dataset = Dataset(out)
    assert len(dataset) == 2
    assert all(-21 <= r <= 21 for r in dataset.returns)
    assert dataset[0].observations.shape[1:] == (1, 64, 64)


def test_expert_eval_json(capsys):
    code, stdout, _ = run(
        capsys,
        "expert",
        "eval",
        "--env",
        "CartPole-v1",
        "--expert",
        "scripted",
        "--episodes",
        "2",
        "--json",
    )
    assert code == 0
    result = json.loads(stdout)
    assert result["episodes"] == 2 and result["return_mean"] == 500.0
    assert result["sticky_actions"] is False


def test_expert_eval_with_sticky_actions(capsys):
    argv = ["expert", "eval", "--expert", "scripted", "--episodes", "2", "--sticky-actions"]
    code, stdout, _ = run(capsys, *argv, "--env", "MinAtar/Freeway-v1", "--json")
    assert code == 0 and json.loads(stdout)["sticky_actions"] is True
    code, _, err = run(capsys, *argv, "--env", "CartPole-v1")
    assert code == 2 and err.strip() == (
        "error: sticky actions are an Atari and MinAtar setting; CartPole-v1 has none"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [
                "collect",
                "--env",
                "Nope-v0",
                "--expert",
                "random",
                "--episodes",
                "1",
                "--out",
                "{tmp}/x",
            ],
            "unknown env id 'Nope-v0'",
        ),
        (
            [
                "collect",
                "--env",
                "CartPole-v1",
                "--expert",
                "wizard",
                "--episodes",
                "1",
                "--out",
                "{tmp}/x",
            ],
            "unknown expert spec 'wizard'",
        ),
        (
            [
                "collect",
                "--env",
                "LunarLander-v3",
                "--expert",
                "scripted",
                "--episodes",
                "1",
                "--out",
                "{tmp}/x",
            ],
            "no scripted expert for LunarLander-v3",
        ),
        (
            [
                "collect",
                "--env",
                "CartPole-v1",
                "--expert",
                "random",
                "--episodes",
                "1",
                "--out",
                "{tmp}/x",
                "--epsilon",
                "2",
            ],
            "epsilon must be in \\[0, 1\\]",
        ),
        (
            [
                "collect",
                "--env",
                "CartPole-v1",
                "--expert",
                "sb3:{tmp}/missing.zip",
                "--episodes",
                "1",
                "--out",
                "{tmp}/x",
            ],
            "missing.zip",
        ),
        (["dataset", "info", "{tmp}/nothing"], "no such dataset directory"),
        (
            ["expert", "eval", "--env", "CartPole-v1", "--expert", "scripted", "--episodes", "0"],
            "--episodes must be >= 1, got 0",
        ),
        (  # an OSError from deep inside: one line too
            ["collect", "--env", "CartPole-v1", "--expert", "random", "--episodes", "1"]
            + ["--out", "{tmp}/x/inside", "--num-envs", "1"],
            r"x is a file, so --out .*x/inside cannot be made; choose another",
        ),
    ],
)
def test_bad_input_prints_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    if "{tmp}/x/inside" in argv:
        (tmp_path / "x").write_text("a file where a folder should be")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0])
    assert (tmp_path / "x").is_file() if "{tmp}/x/inside" in argv else not (tmp_path / "x").exists()


def test_a_file_or_a_missing_folder_where_a_folder_is_expected(tmp_path, capsys):
    (tmp_path / "metadata.json").write_text("{}")
    info = ["dataset", "info", str(tmp_path / "metadata.json")]
    assert "metadata.json is a file; give the dataset's directory" in _one_line_error(capsys, *info)
    report = ["report", str(tmp_path / "nothing")]
    assert "nothing: no such directory" in _one_line_error(capsys, *report)


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_afresh(
    tmp_path, capsys, make_dataset
):
    """It restarts as it was started (its own settings) and says so on one line."""
    data, _ = make_dataset(name="data")
    wm, agent, empty = tmp_path / "wm", tmp_path / "agent", tmp_path / "empty"
    train_wm = ["train-world-model", "--data", str(data), "--out", str(wm), "--preset", "debug"]
    train_bc = ["train", "--algo", "bc", "--expert-data", str(data), "--expert-episodes", "2"]
    train_bc += ["--preset", "debug", "--steps", "2"]
    assert run(capsys, *train_wm, "--steps", "2", "--set", "lr=0.002")[0] == 0
    assert run(capsys, *train_bc, "--out", str(agent))[0] == 0
    for run_dir in (wm, agent):
        (run_dir / "checkpoint.safetensors").unlink()  # as if killed before its first checkpoint
    empty.mkdir()  # as if killed before its config.json
    said = "stopped before its first checkpoint; starting it afresh"
    for argv, out in ((train_wm, wm), (train_bc, agent), (train_bc, empty)):
        code, _, err = run(capsys, *argv, "--out", str(out), "--resume")
        assert code == 0 and err.count(said) == 1 and "error" not in err, err
        assert (out / "checkpoint.safetensors").is_file()
    assert read_config(wm, "world_model")["world_model"]["lr"] == 0.002  # not the preset's
    assert read_config(wm, "world_model")["world_model"]["steps"] == 2


def test_a_count_below_its_minimum_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "world-model", "--preset", "debug", "--steps", "0"])
    assert exit_info.value.code == 2
    assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("bench", ["world-model", "imagination"])
def test_bench_refuses_cuda_graphs_on_a_cpu(capsys, bench):
    args = ["bench", bench, "--preset", "debug", "--modes", "fp32", "bf16+compile+graphs"]
    message = _one_line_error(capsys, *args, "--device", "cpu")
    assert "mode bf16+compile+graphs replays CUDA graphs, which need a CUDA device" in message


def test_collect_refuses_to_mix_sources(tmp_path, capsys):
    out = str(tmp_path / "ds")
    assert (
        run(
            capsys,
            "collect",
            "--env",
            "CartPole-v1",
            "--expert",
            "random",
            "--episodes",
            "1",
            "--out",
            out,
        )[0]
        == 0
    )
    code, _, err = run(
        capsys,
        "collect",
        "--env",
        "CartPole-v1",
        "--expert",
        "scripted",
        "--episodes",
        "2",
        "--out",
        out,
    )
    assert code == 2 and "already holds episodes" in err
    assert len(Dataset(out)) == 1


def test_help_of_every_command(capsys):
    for argv in (
        ["--help"],
        ["collect", "--help"],
        ["dataset", "info", "--help"],
        ["expert", "train", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    assert "--expert" in capsys.readouterr().out


def test_minari_export_import_via_cli(tmp_path, capsys, make_dataset):
    path, episodes = make_dataset(lengths=(4, 6))
    root = tmp_path / "minari"
    code, stdout, _ = run(
        capsys,
        "dataset",
        "export-minari",
        str(path),
        "--id",
        "ditto/cli-test-v0",
        "--root",
        str(root),
    )
    assert code == 0 and "exported" in stdout
    code, _, _ = run(
        capsys,
        "dataset",
        "import-minari",
        str(root / "ditto" / "cli-test-v0"),
        "--out",
        str(tmp_path / "back"),
    )
    assert code == 0
    back = Dataset(tmp_path / "back")
    assert all(
        np.array_equal(a.observations, b.observations) for a, b in zip(episodes, back, strict=True)
    )


@pytest.mark.parametrize("bench", ["world-model", "imagination"])
def test_bench_commands_run(capsys, bench):
    code, stdout, _ = run(
        capsys,
        "bench",
        bench,
        "--preset",
        "debug",
        "--modes",
        "fp32",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
        "--device",
        "cpu",
        *(["--batch", "8", "--reward-match", "nearest", "--expert-latents", "400"])
        if bench == "imagination"
        else [],
    )
    assert code == 0
    result = json.loads(stdout.splitlines()[0])
    if bench == "imagination":
        assert result["reward_match"] == "nearest" and result["expert_latents"] == 400
    assert (
        result["preset"] == "debug"
        and result["mode"] == "fp32"
        and result["speedup_vs_first_mode"] == 1.0
        and result["tflops_per_s"] > 0
    )


def test_flop_count_of_a_matmul_and_its_backward():
    from ditto.world_model.bench import count_flops

    a = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(8, 16)
    # forward 2*4*8*16; backward (grad of a only) the same again
    assert count_flops(lambda: (a @ b).sum().backward()) == 2 * (2 * 4 * 8 * 16)


def test_resume_keeps_the_runs_length_and_settings(tmp_path, capsys, make_dataset):
    """A run started with --steps N and resumed without --steps trains to N, not to the
    preset's default (20 for debug); other settings cannot change on resume."""
    data, _ = make_dataset()
    wm = str(tmp_path / "wm")
    train_wm = ["train-world-model", "--data", str(data), "--out", wm, "--preset", "debug"]
    assert run(capsys, *train_wm, "--steps", "4")[0] == 0
    code, out, _ = run(capsys, *train_wm, "--resume")
    assert code == 0 and "trained for 4 steps" in out
    assert json.loads((tmp_path / "wm" / "config.json").read_text())["world_model"]["steps"] == 4

    agent = str(tmp_path / "dbc")
    train = ["train", "--algo", "dbc", "--world-model", wm, "--expert-data", str(data)]
    train += ["--expert-episodes", "2", "--out", agent, "--preset", "debug"]
    assert run(capsys, *train, "--steps", "3")[0] == 0
    code, out, _ = run(capsys, *train, "--resume")
    assert code == 0 and "trained for 3 updates" in out
    code, out, _ = run(capsys, *train, "--resume", "--steps", "5")
    assert code == 0 and "trained for 5 updates" in out

    # Only the length may change on resume; a setting that matches the run's is fine.
    code, _, err = run(capsys, *train, "--resume", "--steps", "6", "--lr", "1e-4")
    assert code == 2 and err.strip().count("\n") == 0
    assert "was started with lr=0.0003, not 0.0001; --resume continues a run as it was" in err
    code, out, _ = run(capsys, *train, "--resume", "--steps", "6", "--set", "lr=3e-4")
    assert code == 0 and "trained for 6 updates" in out
    # A run from before a setting existed resumes with its default, so another value is refused.
    config_path = tmp_path / "dbc" / "config.json"
    saved = json.loads(config_path.read_text())
    del saved["agent"]["policy_ema"]
    config_path.write_text(json.dumps(saved))
    code, _, err = run(capsys, *train, "--resume", "--policy-ema", "0.5")
    assert code == 2 and "was started with policy_ema=0.0, not 0.5" in err


def test_a_run_of_the_wrong_kind_or_a_damaged_config_is_one_line(tmp_path, capsys, make_dataset):
    data, _ = make_dataset()
    wm = tmp_path / "wm"
    train_wm = ["train-world-model", "--data", str(data), "--out", str(wm), "--preset", "debug"]
    assert run(capsys, *train_wm, "--steps", "2")[0] == 0

    def error_of(*argv):
        code, _, err = run(capsys, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "not an agent run (a world-model run)" in error_of("evaluate", str(wm))
    train = ["train", "--algo", "dbc", "--expert-data", str(data), "--expert-episodes", "2"]
    assert "not a world-model run (no config.json)" in error_of(
        *train, "--world-model", str(data), "--out", str(tmp_path / "a")
    )
    (wm / "config.json").write_text('{"kind": "world_model", "env"')
    assert "config.json is damaged" in error_of(
        *train, "--world-model", str(wm), "--out", str(tmp_path / "b")
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _one_line_error(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_training_overwrites_nothing_and_ignores_no_input(tmp_path, capsys, make_dataset):
    """Someone's folder, a file, a mistyped --resume, other inputs or a shorter --steps on
    resume, and a world model that has changed since its agent: each a one-line error."""
    data, _ = make_dataset(name="data")
    other, _ = make_dataset(name="other", seed=1)
    wm, agent, theirs = tmp_path / "wm", tmp_path / "agent", tmp_path / "theirs"

    def train_wm(*flags, data=data, out=wm):
        return [
            "train-world-model",
            "--data",
            str(data),
            "--out",
            str(out),
            "--preset",
            "debug",
            *flags,
        ]

    def train(*flags, expert_data=data, out=agent):
        return [
            *(
                "train",
                "--algo",
                "dbc",
                "--world-model",
                str(wm),
                "--expert-data",
                str(expert_data),
            ),
            *("--expert-episodes", "2", "--out", str(out), "--preset", "debug", *flags),
        ]

    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    refused = "is not empty and holds no ditto run"
    assert refused in _one_line_error(capsys, *train_wm(out=theirs))
    assert refused in _one_line_error(capsys, *train(out=data))  # the dataset itself
    assert (theirs / "notes.txt").read_text() == "keep me" and not (data / "config.json").exists()
    assert "is a file; choose a directory" in _one_line_error(
        capsys, *train_wm(out=theirs / "notes.txt")
    )
    assert "holds no checkpoint to resume; drop --resume" in _one_line_error(
        capsys, *train_wm("--resume")
    )

    assert run(capsys, *train_wm("--steps", "2"))[0] == 0
    assert "not an agent run (a world-model run)" in _one_line_error(capsys, *train(out=wm))
    assert run(capsys, *train("--steps", "2"))[0] == 0
    assert f"was started with --data {data}, not with --data {other}" in _one_line_error(
        capsys, *train_wm("--resume", data=other)
    )
    assert "was started with --expert-data" in _one_line_error(
        capsys, *train("--resume", expert_data=other)
    )
    assert "has already trained 2 steps; --steps 1 would not continue it" in _one_line_error(
        capsys, *train_wm("--resume", "--steps", "1")
    )

    assert run(capsys, *train_wm("--resume", "--steps", "3"))[0] == 0  # the model moves on
    moved = "is at step 3, but the agent was trained in it at step 2"
    assert moved in _one_line_error(capsys, *train("--resume", "--steps", "3"))
    assert moved in _one_line_error(capsys, "evaluate", str(agent), "--episodes", "1")

    shutil.rmtree(wm)  # trained again to the agent's step: refused unless the weights are the same
    assert run(capsys, *train_wm("--steps", "2", "--seed", "1"))[0] == 0
    evaluate = ("evaluate", str(agent), "--episodes", "1", "--checkpoints", "1")
    assert "has other weights than the one the agent was trained in" in _one_line_error(
        capsys, *evaluate
    )
    shutil.rmtree(wm)
    assert run(capsys, *train_wm("--steps", "2"))[0] == 0  # same seed, same machine: same model
    assert run(capsys, *evaluate)[0] == 0


def test_data_weights_reach_the_run_and_a_wrong_count_is_one_line(tmp_path, capsys, make_dataset):
    expert, _ = make_dataset(name="expert")
    other, _ = make_dataset(name="other", seed=1)
    train_wm = ["train-world-model", "--data", str(expert), str(other), "--preset", "debug"]
    code, _, err = run(capsys, *train_wm, "--out", str(tmp_path / "bad"), "--data-weights", "1")
    assert code == 2 and err.strip().count("\n") == 0
    assert "data_weights has 1 entries for 2 datasets" in err
    assert not (tmp_path / "bad").exists()
    wm = tmp_path / "wm"
    code, _, _ = run(
        capsys, *train_wm, "--out", str(wm), "--steps", "2", "--data-weights", "3", "1"
    )
    assert code == 0
    assert json.loads((wm / "config.json").read_text())["world_model"]["data_weights"] == [3.0, 1.0]


def test_set_reaches_the_config_and_a_bad_setting_is_one_line(tmp_path, capsys, make_dataset):
    data, _ = make_dataset()
    wm = tmp_path / "wm"
    train_wm = ["train-world-model", "--data", str(data), "--out", str(wm), "--preset", "debug"]
    assert run(capsys, *train_wm, "--steps", "2", "--set", "lr=1e-3", "deter=16")[0] == 0
    saved = json.loads((wm / "config.json").read_text())["world_model"]
    assert (saved["lr"], saved["deter"]) == (1e-3, 16)

    train = ["train", "--algo", "ditto", "--world-model", str(wm), "--expert-data", str(data)]
    train += ["--expert-episodes", "2", "--preset", "debug", "--steps", "2"]
    agent = tmp_path / "agent"
    settings = ["--set", "entropy=0.01", "reward_match=nearest", "--set", "layers=1"]
    assert run(capsys, *train, "--out", str(agent), *settings)[0] == 0
    saved = json.loads((agent / "config.json").read_text())["agent"]
    assert (saved["entropy"], saved["reward_match"], saved["layers"]) == (0.01, "nearest", 1)

    for setting, message in [
        ("entropyy=0.01", r"unknown AgentConfig settings \['entropyy'\]"),
        ("layers=three", "layers must be int, got 'three'"),
        ("entropy", "--set takes KEY=VALUE, got 'entropy'"),
        ("steps=3", "steps is given both by its flag and by --set; keep one"),
        ("lr=null", "--set lr=null: give lr a value"),
    ]:
        code, _, err = run(capsys, *train, "--out", str(tmp_path / "bad"), "--set", setting)
        assert code == 2 and err.strip().count("\n") == 0 and re.search(message, err)
    assert not (tmp_path / "bad").exists()


def test_evaluate_gives_an_iqm_only_across_seeds_of_one_setting(tmp_path, capsys, make_dataset):
    data, _ = make_dataset(lengths=(5, 12, 30, 8))
    wm = str(tmp_path / "wm")
    assert (
        run(
            capsys,
            "train-world-model",
            "--data",
            str(data),
            "--out",
            wm,
            "--preset",
            "debug",
            "--steps",
            "2",
        )[0]
        == 0
    )
    runs = []
    for algo, seed in (("dbc", 0), ("dbc", 1), ("bc", 0)):
        runs.append(str(tmp_path / f"{algo}{seed}"))
        train = ["train", "--algo", algo, "--expert-data", str(data), "--expert-episodes", "2"]
        train += ["--out", runs[-1], "--preset", "debug", "--steps", "2", "--seed", str(seed)]
        if algo == "bc":  # it learns from frames alone
            assert "drop --world-model" in _one_line_error(capsys, *train, "--world-model", wm)
            assert run(capsys, *train)[0] == 0
        else:
            assert run(capsys, *train, "--world-model", wm)[0] == 0
    evaluate = ["evaluate", "--episodes", "1", "--checkpoints", "1", "--json"]
    code, out, _ = run(capsys, *evaluate, *runs[:2])
    assert code == 0 and json.loads(out)["runs"] == 2 and "iqm_normalized_score" in json.loads(out)
    code, out, _ = run(capsys, *evaluate, *runs)
    summary = json.loads(out)
    assert code == 0 and len(summary["per_run"]) == 3 and "iqm_normalized_score" not in summary
    code, out, _ = run(capsys, *evaluate[:-1], *runs)
    assert code == 0 and "no IQM across these runs: they differ in env, method or N_E" in out
    twice = _one_line_error(capsys, *evaluate, runs[0], runs[0] + "/")
    assert f"{runs[0]} is given twice; each run counts once in the IQM" in twice


def test_a_run_killed_during_its_first_write_can_start_again(tmp_path):
    from ditto.errors import DittoError
    from ditto.runs import should_resume

    killed = tmp_path / "run"
    killed.mkdir()
    (killed / ".config.json.x1y2.tmp").write_text("{")  # all that an atomic write leaves
    assert should_resume(killed, "world_model", resume=False) is False
    (killed / "notes.txt").write_text("someone's")
    with pytest.raises(DittoError, match="is not empty and holds no ditto run"):
        should_resume(killed, "world_model", resume=False)


def _train_in(folder, *flags, world_model="wm", data="cp"):
    """`ditto train` of a debug D-BC agent whose inputs are given as relative paths."""
    return [
        *("train", "--algo", "dbc", "--world-model", world_model, "--expert-data", data),
        *("--expert-episodes", "2", "--out", f"{folder}ag", "--preset", "debug", *flags),
    ]


def test_a_run_works_from_any_directory_and_after_its_tree_is_copied(
    tmp_path, capsys, make_dataset, monkeypatch
):
    """config.json records inputs relative to the run, so evaluating and resuming work from
    another working directory and on a copy, given the same inputs by any path (issue 26)."""
    make_dataset(name="A/cp", lengths=(5, 12, 30, 8))
    monkeypatch.chdir(tmp_path / "A")
    train_wm = ["train-world-model", "--data", "cp", "--out", "wm", "--preset", "debug"]
    assert run(capsys, *train_wm, "--steps", "2")[0] == 0
    assert run(capsys, *_train_in("", "--steps", "2"))[0] == 0
    saved = json.loads(Path("ag/config.json").read_text())
    assert (saved["world_model"], saved["expert_data"]) == ("../wm", "../cp")
    assert json.loads(Path("wm/config.json").read_text())["data"] == ["../cp"]

    monkeypatch.chdir(tmp_path)
    evaluate = ["evaluate", "--episodes", "1", "--checkpoints", "1"]
    assert run(capsys, *evaluate, "A/ag")[0] == 0
    absolute_data = str(tmp_path / "A" / "cp")  # the same data by another path
    resume = _train_in("A/", "--resume", "--steps", "3", world_model="A/wm", data=absolute_data)
    assert run(capsys, *resume)[0] == 0

    shutil.copytree(tmp_path / "A", tmp_path / "B")
    shutil.rmtree(tmp_path / "A")  # nothing may lead back to the original
    assert run(capsys, *evaluate, str(tmp_path / "B" / "ag"))[0] == 0
    resume = _train_in("B/", "--resume", "--steps", "4", world_model="B/wm", data="B/cp")
    assert run(capsys, *resume)[0] == 0
    train_wm = ["train-world-model", "--data", "B/cp", "--out", "B/wm", "--preset", "debug"]
    assert run(capsys, *train_wm, "--resume", "--steps", "3")[0] == 0
    assert stored_path(tmp_path / "run", "/usr/share") == "/usr/share"  # only / in common


def test_a_config_from_before_run_relative_paths_still_loads(
    tmp_path, capsys, make_dataset, monkeypatch
):
    """Older config.json files recorded inputs as typed, relative to the working directory:
    they load from there, and resuming rewrites them relative to the run."""
    make_dataset(name="A/cp", lengths=(5, 12, 30, 8))
    monkeypatch.chdir(tmp_path / "A")
    train_wm = ["train-world-model", "--data", "cp", "--out", "wm", "--preset", "debug"]
    assert run(capsys, *train_wm, "--steps", "2")[0] == 0
    assert run(capsys, *_train_in("", "--steps", "2"))[0] == 0
    for folder, paths in (
        ("wm", {"data": ["cp"]}),
        ("ag", {"world_model": "wm", "expert_data": "cp"}),
    ):
        config = json.loads(Path(folder, "config.json").read_text())
        del config["paths_relative_to"]
        Path(folder, "config.json").write_text(json.dumps({**config, **paths}))
    assert read_config(Path("wm"), "world_model")["data"] == [str(tmp_path / "A" / "cp")]
    assert read_config(Path("ag"), "agent")["world_model"] == str(tmp_path / "A" / "wm")

    evaluate = ["evaluate", "--episodes", "1", "--checkpoints", "1"]
    assert run(capsys, *evaluate, "ag")[0] == 0
    monkeypatch.chdir(tmp_path)  # where the old paths lead nowhere: one line says why
    missing = f"the world model the agent was trained in is not at {tmp_path / 'A' / 'ag' / 'wm'}"
    assert missing in _one_line_error(capsys, *evaluate, "A/ag")

    monkeypatch.chdir(tmp_path / "A")
    assert run(capsys, *_train_in("", "--resume", "--steps", "3"))[0] == 0
    saved = json.loads(Path("ag/config.json").read_text())
    assert (saved["world_model"], saved["paths_relative_to"]) == ("../wm", "run")
    assert run(capsys, *train_wm, "--resume", "--steps", "3")[0] == 0
    assert json.loads(Path("wm/config.json").read_text())["data"] == ["../cp"]
    monkeypatch.chdir(tmp_path)
    moved_on = "is at step 3, but the agent was trained in it at step 2"  # found, and checked
    assert moved_on in _one_line_error(capsys, "evaluate", "--episodes", "1", "A/ag")


_HOLD = """import sys, time
from ditto.io import writer_lock
with writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_of_the_same_out_is_refused_and_a_killed_one_blocks_nothing(
    tmp_path, capsys, make_dataset
):
    data, _ = make_dataset(name="data")
    wm = tmp_path / "wm"
    train_wm = ["train-world-model", "--data", str(data), "--out", str(wm), "--preset", "debug"]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(wm)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        refused = f"{wm} is being written by process {holder.pid}; wait for it to finish"
        assert refused in _one_line_error(capsys, *train_wm, "--steps", "2")
        assert not (wm / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
    assert (wm / LOCK).is_file()  # left behind, but no longer held
    assert run(capsys, *train_wm, "--steps", "2")[0] == 0
    assert not (wm / LOCK).exists()  # a writer that ends removes it


def test_every_writer_takes_the_lock(tmp_path, capsys, make_dataset):
    import yaml

    data, _ = make_dataset(name="data")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.dump({"envs": ["CartPole-v1"], "algos": ["dbc"], "presets": ["debug"]}))
    commands = {
        "collect": ["collect", "--env", "CartPole-v1", "--expert", "random", "--episodes", "1"],
        "train-world-model": ["train-world-model", "--data", str(data), "--preset", "debug"],
        "train": ["train", "--algo", "bc", "--expert-data", str(data), "--expert-episodes", "2"],
        "sweep": ["sweep", str(grid)],
    }
    for name, argv in commands.items():
        out = tmp_path / name
        with writer_lock(out):
            error = _one_line_error(capsys, *argv, "--out", str(out))
            assert f"{out} is being written by process {os.getpid()}" in error
        assert not out.exists()  # the holder made it; the refused command wrote nothing
