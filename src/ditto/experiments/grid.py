"""Experiment grids: envs x presets x methods x N_E x seeds, run stage by stage, every stage cached.

    grid = load_grid("configs/small.yaml")
    run_grid(grid, "runs/sweep")      # skips finished work; an interrupted sweep resumes

A grid's directory:
    grid.json                                   the resolved grid
    <env>/data/{expert,noisy,random}            datasets (as `ditto collect` writes them)
    <env>/<preset>/world_model                  the world-model run
    <env>/<preset>/agents/<algo>-ne<N>-seed<S>  agent runs; eval.json once scored
    report.md, report.html, results.json, figures/   (`ditto report`)

A cell (one agent run) is finished when its eval.json exists. Agent cells run
in `jobs` processes with one torch thread each: on a small CPU two small
models in parallel beat one model on two threads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ditto.config import AGENT_PRESETS, ALGOS, WORLD_MODEL_PRESETS, agent_config, world_model_config
from ditto.errors import ConfigError
from ditto.io import atomic_write_json
from ditto.runs import EVAL


@dataclass(frozen=True)
class EnvPlan:
    """The data one env needs: expert, noisy (epsilon-expert) and random episodes."""

    env: str
    expert: str = "scripted"
    expert_episodes: int = 20  # imitation takes the first N_E; validation the next ones
    noisy_episodes: int = 60
    epsilon: float = 0.7
    random_episodes: int = 60
    world_model: dict[str, Any] = field(default_factory=dict)  # overrides for this env
    agent: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    checkpoints: int = 10  # the protocol: the last 10 snapshots x 20 episodes
    episodes: int = 20
    num_envs: int = 8
    greedy: bool = False


@dataclass(frozen=True)
class Grid:
    envs: tuple[EnvPlan, ...]
    presets: tuple[str, ...] = ("small",)
    algos: tuple[str, ...] = ALGOS
    expert_episodes: tuple[int, ...] = (4,)
    seeds: tuple[int, ...] = (0,)
    world_model: dict[str, Any] = field(default_factory=dict)  # overrides for every env
    agent: dict[str, Any] = field(default_factory=dict)
    agent_by_algo: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: Evaluation = Evaluation()

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples as lists, as read back from grid.json


def _checked(cls, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}")
    return data


def grid_from_dict(data: dict[str, Any]) -> Grid:
    """A Grid from its YAML/JSON form, every key and value checked."""
    data = dict(_checked(Grid, data, "grid"))
    if not data.get("envs"):
        raise ConfigError("grid: name at least one env under `envs`")
    envs = tuple(
        EnvPlan(**_checked(EnvPlan, {"env": e} if isinstance(e, str) else e, f"envs[{i}]"))
        for i, e in enumerate(data.pop("envs"))
    )
    evaluation = Evaluation(**_checked(Evaluation, data.pop("evaluation", {}), "evaluation"))
    lists = {
        k: tuple(data.pop(k)) for k in ("presets", "algos", "expert_episodes", "seeds") if k in data
    }
    grid = Grid(envs=envs, evaluation=evaluation, **lists, **data)
    _validate(grid)
    return grid


def _validate(grid: Grid) -> None:
    for preset in grid.presets:
        if preset not in WORLD_MODEL_PRESETS or preset not in AGENT_PRESETS:
            raise ConfigError(
                f"grid: unknown preset {preset!r}; choose from {', '.join(WORLD_MODEL_PRESETS)}"
            )
    for algo in (*grid.algos, *grid.agent_by_algo):
        if algo not in ALGOS:
            raise ConfigError(f"grid: unknown algo {algo!r}; choose from {', '.join(ALGOS)}")
    for plan in grid.envs:
        if max(grid.expert_episodes) >= plan.expert_episodes:
            raise ConfigError(
                f"grid: {plan.env} collects {plan.expert_episodes} expert episodes but N_E goes up to "
                f"{max(grid.expert_episodes)}; collect more (validation needs episodes beyond N_E)"
            )
        for preset in grid.presets:  # fail now, not hours in, on a bad override
            world_model_config(preset, **{**grid.world_model, **plan.world_model})
            for algo in grid.algos:
                _agent_config(grid, plan, preset, algo, grid.expert_episodes[0], grid.seeds[0])


def load_grid(path: str | Path) -> Grid:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such grid file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return grid_from_dict(data)


def env_slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def cell_name(algo: str, expert_episodes: int, seed: int) -> str:
    return f"{algo}-ne{expert_episodes}-seed{seed}"


def _agent_config(
    grid: Grid, plan: EnvPlan, preset: str, algo: str, expert_episodes: int, seed: int
):
    overrides = {**grid.agent, **plan.agent, **grid.agent_by_algo.get(algo, {})}
    return agent_config(preset, **overrides, algo=algo, expert_episodes=expert_episodes, seed=seed)


# ----- stages ------------------------------------------------------------------------------------
def collect_data(plan: EnvPlan, root: Path, progress: bool = True) -> dict[str, Path]:
    """The plan's datasets under root/data (collection resumes where it stopped)."""
    from ditto.data.collect import collect

    data = root / "data"
    wanted = {
        "expert": (plan.expert, plan.expert_episodes, 0.0, 0),
        "noisy": (plan.expert, plan.noisy_episodes, plan.epsilon, 10_000),
        "random": ("random", plan.random_episodes, 0.0, 20_000),
    }
    paths = {}
    for name, (expert, episodes, epsilon, seed) in wanted.items():
        if episodes:
            collect(
                plan.env,
                expert,
                episodes,
                data / name,
                epsilon=epsilon,
                seed=seed,
                progress=progress,
            )
            paths[name] = data / name
    return paths


def train_model(
    grid: Grid, plan: EnvPlan, preset: str, data: list[Path], out: Path, device: str, progress: bool
):
    from ditto.world_model.trainer import train_world_model

    config = world_model_config(preset, **{**grid.world_model, **plan.world_model})
    return train_world_model(data, out, config, device=device, resume=True, progress=progress)


@dataclass(frozen=True)
class Cell:
    """One agent run and its evaluation."""

    config: dict[str, Any]  # AgentConfig as JSON
    expert_data: str
    world_model: str
    out: str
    evaluation: dict[str, Any]
    device: str


def run_cell(cell: Cell, progress: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Train the cell's agent (resuming) and score it; the score is cached in eval.json."""
    import torch

    from ditto.agents.trainer import train_agent
    from ditto.config import AgentConfig
    from ditto.evaluation.protocol import evaluate_run

    if threads:
        torch.set_num_threads(threads)
    out = Path(cell.out)
    if (out / EVAL).is_file():
        return json.loads((out / EVAL).read_text())
    config = AgentConfig.from_json(cell.config)
    world_model = None if config.algo == "bc" else cell.world_model
    train_agent(
        config,
        cell.expert_data,
        out,
        world_model,
        device=cell.device,
        resume=True,
        progress=progress,
    )
    result = evaluate_run(out, device=cell.device, progress=progress, **cell.evaluation)
    atomic_write_json(out / EVAL, result)
    return result


def plan_cells(grid: Grid, plan: EnvPlan, preset: str, root: Path, device: str) -> list[Cell]:
    cells = []
    for expert_episodes in grid.expert_episodes:
        for seed in grid.seeds:
            for algo in grid.algos:
                config = _agent_config(grid, plan, preset, algo, expert_episodes, seed)
                cells.append(
                    Cell(
                        config=config.to_json(),
                        expert_data=str(root / "data" / "expert"),
                        world_model=str(root / preset / "world_model"),
                        out=str(root / preset / "agents" / cell_name(algo, expert_episodes, seed)),
                        evaluation=asdict(grid.evaluation),
                        device=device,
                    )
                )
    return cells


def run_cells(cells: list[Cell], jobs: int, desc: str = "agents") -> list[dict[str, Any]]:
    """Every cell, `jobs` at a time in spawned processes (one torch thread each) when jobs > 1."""
    todo = [c for c in cells if not (Path(c.out) / EVAL).is_file()]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, unit="run")
    results = [json.loads((Path(c.out) / EVAL).read_text()) for c in cells if c not in todo]
    try:
        if jobs <= 1:
            for cell in todo:
                bar.set_postfix_str(Path(cell.out).name)
                results.append(run_cell(cell, progress=True))
                bar.update(1)
            return results
        context = multiprocessing.get_context("spawn")  # fork after torch has run threads can hang
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(run_cell, cell, False, 1): cell for cell in todo}
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                bar.set_postfix_str(
                    f"{Path(futures[future].out).name}: {result['return_mean']:.1f}"
                )
                bar.update(1)
        return results
    finally:
        bar.close()


def default_jobs(device: str) -> int:
    """Parallel agent runs: one per core pair on CPU (at most 4), one on a GPU."""
    from ditto.device import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(4, (os.cpu_count() or 1)))


def _print_stage(text: str) -> None:
    print(f"\n[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    device: str = "auto",
    jobs: int | None = None,
    stage: Callable[[str], None] = _print_stage,
) -> list[dict[str, Any]]:
    """Run every stage of the grid under `out`, skipping finished work; returns every cell's score.

    `stage` is told when each stage begins (a progress display)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "grid.json"
    if saved.is_file() and json.loads(saved.read_text()) != grid.to_json():
        raise ConfigError(
            f"{out} holds a different grid ({saved}); use a new --out, or delete it to start over"
        )
    atomic_write_json(saved, grid.to_json())
    jobs = jobs or default_jobs(device)
    results = []
    for plan in grid.envs:
        root = out / env_slug(plan.env)
        stage(f"{plan.env}: collect expert, noisy and random episodes")
        data = list(collect_data(plan, root).values())
        for preset in grid.presets:
            stage(f"{plan.env}: train the world model ({preset} preset)")
            train_model(
                grid, plan, preset, data, root / preset / "world_model", device, progress=True
            )
            cells = plan_cells(grid, plan, preset, root, device)
            stage(
                f"{plan.env}: train and score {len(cells)} agents ({preset} preset, {jobs} at a time)"
            )
            results += run_cells(cells, jobs, desc=f"agents {plan.env} {preset}")
    return results
