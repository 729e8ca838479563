"""`ditto demo`: the whole DITTO pipeline on one env, ending in a report.

Collect expert and noisy episodes, train the world model, train every registered
method (DITTO, D-BC, D-GAIL and pixel BC) for several N_E and seeds, score them in
the real env and write report.md / report.html / results.json, with a GIF of each
method playing. The demo is a Grid (see grid.py)
with a plan per env sized to a stated budget; every stage is cached, so a
re-run reuses finished work and an interrupted demo resumes.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from ditto.errors import ConfigError
from ditto.experiments.grid import cell_dir, grid_from_dict, print_stage, run_grid

# Each plan: the grid, the budget it was sized for (see benchmarks/RESULTS.md), and optionally
# a caveat the report states beside the results.
DEMOS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "budget": "15 minutes on a 2-core CPU with the install (make demo on a fresh clone)",
        "caveat": (
            "At this budget the world model learns to draw CartPole but not yet how actions move "
            "the pole, so on a 2-core CPU no method gets past the random policy here. "
            "`ditto sweep configs/cartpole.yaml` (about 1 h 15 min) trains it long enough to tell "
            "the methods apart; its numbers are in benchmarks/RESULTS.md."
        ),
        "grid": {
            "envs": [
                {
                    "env": "CartPole-v1",
                    "expert": "scripted",
                    "expert_episodes": 20,
                    "noisy_episodes": 60,
                    "epsilon": 0.7,
                    "random_episodes": 60,
                }
            ],
            "presets": ["small"],
            "expert_episodes": [1, 4, 15],
            "seeds": [0, 1],
            # Sized for the budget: batch 8 at lr 1e-3 reached the reconstruction error of the
            # preset's batch 16 at 3e-4 in half the CPU time (benchmarks/RESULTS.md).
            "world_model": {
                "steps": 1200,
                "batch": 8,
                "lr": 1e-3,
                "eval_every": 600,
                "checkpoint_every": 600,
            },
            "agent": {
                "steps": 400,
                "batch": 128,
                "layers": 3,
                "units": 128,
                "checkpoint_every": 100,
            },
            "agent_by_algo": {"dbc": {"steps": 1000}, "bc": {"batch": 64, "bc_cnn_depth": 16}},
            "evaluation": {"checkpoints": 3, "episodes": 10, "num_envs": 10},
        },
    },
    "ALE/Pong-v5": {
        "budget": "not measured end to end; on a 2-core CPU the world model alone takes 2-3 hours "
        "(20000 steps at the measured 0.3-0.5 s each)",
        "grid": {
            "envs": [
                {
                    "env": "ALE/Pong-v5",
                    "expert": "scripted",
                    "expert_episodes": 20,
                    "noisy_episodes": 20,
                    "epsilon": 0.5,
                    "random_episodes": 10,
                }
            ],
            "presets": ["small"],
            "expert_episodes": [1, 4, 15],
            "seeds": [0, 1],
            "world_model": {"steps": 20000},
            "agent": {"steps": 5000},
            "evaluation": {"checkpoints": 5, "episodes": 10, "num_envs": 10},
        },
    },
}


class _Stages:
    """Numbers the stages as they begin: `[12:03:44] stage 2/4: ...`."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def __call__(self, text: str) -> None:
        self.done += 1
        print_stage(f"stage {self.done}/{self.total}: {text}")


def demo_plan(env: str, expert: str | None = None) -> dict[str, Any]:
    """The demo plan for `env`: a built-in one, or CartPole's grid for any other env (budget unmeasured)."""
    if env in DEMOS:
        plan = copy.deepcopy(DEMOS[env])
    elif expert is None:
        raise ConfigError(
            f"no built-in demo plan for {env!r} (built in: {', '.join(DEMOS)}); "
            "name its expert, e.g. --expert sb3:experts/walker.zip or --expert zoo:FOLDER"
        )
    else:
        plan = copy.deepcopy(DEMOS["CartPole-v1"])
        plan["budget"] = "not measured for this env"
        plan.pop("caveat", None)
        plan["grid"]["envs"][0]["env"] = env
    if expert is not None:
        plan["grid"]["envs"][0]["expert"] = expert
    return plan


def run_demo(
    env: str = "CartPole-v1",
    out: str | Path = "runs/demo",
    *,
    expert: str | None = None,
    device: str = "auto",
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo for `env` into `out`; returns write_report's summary."""
    from ditto.evaluation.record import record_episode
    from ditto.experiments.report import write_report

    out = Path(out)
    plan = demo_plan(env, expert)
    grid = grid_from_dict(plan["grid"])
    print(f"ditto demo on {env} into {out} (budget: {plan['budget']})")
    started = time.perf_counter()
    stage = _Stages(total=4)  # collect, world model, agents, report
    run_grid(grid, out, device=device, jobs=jobs, stage=stage)
    stage("write the report, with GIFs of the agents playing")
    preset, largest = grid.presets[0], max(grid.expert_episodes)
    gifs = {}
    for algo in grid.algos:
        run = cell_dir(out, env, preset, algo, largest, grid.seeds[0])
        if run.is_dir():
            gif = out / "figures" / f"agent_{algo}.gif"
            episode_return = record_episode(run, gif, seed=0, device=device)
            gifs[f"{algo} (N_E={largest}) playing {env}, return {episode_return:.0f}"] = gif
    minutes = (time.perf_counter() - started) / 60
    evaluation = grid.evaluation
    notes = [
        f"Budget: {plan['budget']}. This run took {minutes:.1f} minutes (stages finished before count as zero).",
        *([plan["caveat"]] if "caveat" in plan else []),
        f"Scale: the `{preset}` presets with the overrides in the configuration below, far smaller than the "
        "paper's models and training; the protocol scores the last "
        f"{evaluation.checkpoints} policy snapshots x {evaluation.episodes} episodes per run (the paper: 10 x 20).",
    ]
    return write_report(
        out, title=f"ditto demo: {env}", notes=notes, extra_gifs=gifs, config=grid.to_json()
    )
