"""Experiment grids: envs x presets x methods x N_E x seeds, run stage by stage, every stage cached.

    grid = load_grid("configs/small.yaml")
    run_grid(grid, "runs/sweep")      # skips finished work; an interrupted sweep resumes

A grid's directory:
    grid.json                                   the resolved grid
    <env>/data/{expert,noisy,random,noisy2,..}  datasets (as `ditto collect` writes them)
    <env>/<preset>/world_model                  the world-model run
    <env>/<preset>/agents/<algo>-ne<N>-seed<S>  agent runs; eval.json once scored
    report.md, report.html, results.json, figures/   (`ditto report`)

The world model trains on all of an env's datasets, in the order above (those
of 0 episodes left out), which is the order a `data_weights` override in the
grid's `world_model` settings follows.

A cell (one agent run) is finished when its eval.json was made under the
grid's evaluation settings. Agent cells run in `jobs` processes with one torch
thread each: on a small CPU two small models in parallel beat one model on two
threads.

This module is the local process pool; ditto.experiments.ray_backend runs the same
stages as Ray tasks on a cluster (the grid's optional `resources` section sizes them).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ditto.agents.registry import agent_config, config_from_json, get_method, method_names
from ditto.config import WORLD_MODEL_PRESETS, AgentConfig, world_model_config
from ditto.envs import has_sticky_actions
from ditto.errors import ConfigError, DittoError
from ditto.experiments.resources import check_resources
from ditto.io import atomic_write_json, writer_lock
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
    # Further noise levels, [{epsilon: E, episodes: N}, ...], collected as noisy2, noisy3, ...:
    # states the first level misses (CartPole at 0.7 falls near the centre; at 0.4 it drifts).
    more_noisy: tuple[dict[str, Any], ...] = ()
    world_model: dict[str, Any] = field(default_factory=dict)  # overrides for this env
    agent: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Evaluation settings; None takes the agent config's (the protocol: last 10 snapshots x 20 episodes)."""

    checkpoints: int | None = None
    episodes: int | None = None
    num_envs: int | None = None
    greedy: bool | None = None
    sticky_actions: bool = False  # Atari and MinAtar: score with sticky actions


@dataclass(frozen=True)
class Grid:
    envs: tuple[EnvPlan, ...]
    presets: tuple[str, ...] = ("small",)
    algos: tuple[str, ...] = field(default_factory=method_names)  # default: every method
    expert_episodes: tuple[int, ...] = (4,)
    seeds: tuple[int, ...] = (0,)
    world_model: dict[str, Any] = field(default_factory=dict)  # overrides for every env
    agent: dict[str, Any] = field(default_factory=dict)
    agent_by_algo: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: Evaluation = Evaluation()
    # CPUs and GPUs per stage for the Ray backend (ditto.experiments.resources); the local
    # pool ignores them, and they change no result.
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = json.loads(json.dumps(asdict(self)))  # tuples as lists, as read back from grid.json
        if not data["resources"]:
            del data["resources"]  # a grid without them writes the grid.json it always did
        return data


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
        EnvPlan(
            **_mappings(_checked(EnvPlan, {"env": e} if isinstance(e, str) else e, f"envs[{i}]"))
        )
        for i, e in enumerate(data.pop("envs"))
    )
    evaluation = Evaluation(
        **_checked(Evaluation, data.pop("evaluation", None) or {}, "evaluation")
    )
    lists = {}
    for key in ("presets", "algos", "expert_episodes", "seeds"):
        if key in data:
            value = data.pop(key)
            if not isinstance(value, list) or not value:
                raise ConfigError(f"grid: {key} must be a non-empty list, got {value!r}")
            lists[key] = tuple(value)
    grid = Grid(envs=envs, evaluation=evaluation, **lists, **_mappings(data))
    check_resources(grid.resources)
    _validate(grid)
    return grid


def _mappings(data: dict[str, Any]) -> dict[str, Any]:
    """Override sections (world_model, agent, agent_by_algo) as dicts; an empty YAML section is {}."""
    out = dict(data)
    for key in ("world_model", "agent", "agent_by_algo", "resources"):
        if key in out:
            out[key] = out[key] or {}
            if not isinstance(out[key], dict):
                raise ConfigError(f"grid: {key} must be a mapping of settings, got {out[key]!r}")
    return out


def _validate(grid: Grid) -> None:
    for preset in grid.presets:
        if preset not in WORLD_MODEL_PRESETS or preset not in AgentConfig.PRESETS:
            raise ConfigError(
                f"grid: unknown preset {preset!r}; choose from {', '.join(WORLD_MODEL_PRESETS)}"
            )
    for algo in (*grid.algos, *grid.agent_by_algo):
        get_method(algo)
    for plan in grid.envs:
        if grid.evaluation.sticky_actions and not has_sticky_actions(plan.env):
            raise ConfigError(
                f"grid: evaluation.sticky_actions is an Atari and MinAtar setting; {plan.env} has none"
            )
        for level in plan.more_noisy:
            if (
                not isinstance(level, dict)
                or set(level) != {"epsilon", "episodes"}
                or not isinstance(level["epsilon"], int | float)
                or not 0 < level["epsilon"] <= 1
                or not isinstance(level["episodes"], int)
            ):
                raise ConfigError(
                    f"grid: {plan.env} more_noisy entries look like {{epsilon: 0.4, episodes: 40}} "
                    f"(0 < epsilon <= 1), got {level!r}"
                )
        if max(grid.expert_episodes) >= plan.expert_episodes:
            raise ConfigError(
                f"grid: {plan.env} collects {plan.expert_episodes} expert episodes but N_E goes up to "
                f"{max(grid.expert_episodes)}; collect more (validation needs episodes beyond N_E)"
            )
        for preset in grid.presets:  # fail now, not hours in, on a bad override
            _world_model_config(grid, plan, preset)
            for algo in grid.algos:
                config = _agent_config(
                    grid, plan, preset, algo, grid.expert_episodes[0], grid.seeds[0]
                )
                if (grid.evaluation.checkpoints or 0) > config.keep_checkpoints:
                    raise ConfigError(
                        f"grid: evaluation.checkpoints {grid.evaluation.checkpoints} is more than the "
                        f"{config.keep_checkpoints} snapshots {algo} keeps (agent: keep_checkpoints)"
                    )


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


def world_model_dir(out: Path, env_id: str, preset: str) -> Path:
    return Path(out) / env_slug(env_id) / preset / "world_model"


def cell_dir(
    out: Path, env_id: str, preset: str, algo: str, expert_episodes: int, seed: int
) -> Path:
    """Where a grid keeps one agent run (see the module doc)."""
    return (
        Path(out) / env_slug(env_id) / preset / "agents" / f"{algo}-ne{expert_episodes}-seed{seed}"
    )


def _world_model_config(grid: Grid, plan: EnvPlan, preset: str):
    return world_model_config(preset, **{**grid.world_model, **plan.world_model})


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
        **{
            f"noisy{i + 2}": (plan.expert, level["episodes"], level["epsilon"], 30_000 + 10_000 * i)
            for i, level in enumerate(plan.more_noisy)
        },
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

    config = _world_model_config(grid, plan, preset)
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
    """Train the cell's agent (resuming) and score it; the score is kept in eval.json and
    reused while it was made under the same evaluation settings."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    scored = finished(cell)
    if scored is not None:
        return scored
    train_cell(cell, progress)
    return score_cell(cell, progress=progress)


def train_cell(cell: Cell, progress: bool = False) -> None:
    """Train the cell's agent, resuming from its run directory's checkpoint if it has one."""
    from ditto.agents.trainer import train_agent

    config = config_from_json(cell.config)
    world_model = cell.world_model if get_method(config.algo).world_model else None
    train_agent(
        config,
        cell.expert_data,
        cell.out,
        world_model,
        device=cell.device,
        resume=True,
        progress=progress,
    )


def score_cell(cell: Cell, device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the cell's trained agent under its evaluation settings into its eval.json
    (on `device`, default the cell's)."""
    from ditto.evaluation.protocol import evaluate_run

    out = Path(cell.out)
    result = evaluate_run(out, device=device or cell.device, progress=progress, **cell.evaluation)
    atomic_write_json(out / EVAL, result)
    return result


def finished(cell: Cell) -> dict[str, Any] | None:
    """The cell's saved score if it was made under the cell's evaluation settings, else None."""
    from ditto.evaluation.protocol import recorded_protocol, resolve_protocol

    path = Path(cell.out) / EVAL
    if not path.is_file():
        return None
    scored = json.loads(path.read_text())
    wanted = resolve_protocol(
        config_from_json(cell.config),
        checkpoints=cell.evaluation["checkpoints"],
        episodes=cell.evaluation["episodes"],
        greedy=cell.evaluation["greedy"],
        sticky_actions=cell.evaluation.get("sticky_actions", False),
    )
    return scored if recorded_protocol(scored) == wanted else None


def plan_cells(grid: Grid, plan: EnvPlan, preset: str, out: Path, device: str) -> list[Cell]:
    root = out / env_slug(plan.env)
    cells = []
    for expert_episodes in grid.expert_episodes:
        for seed in grid.seeds:
            for algo in grid.algos:
                config = _agent_config(grid, plan, preset, algo, expert_episodes, seed)
                cells.append(
                    Cell(
                        config=config.to_json(),
                        expert_data=str(root / "data" / "expert"),
                        world_model=str(world_model_dir(out, plan.env, preset)),
                        out=str(cell_dir(out, plan.env, preset, algo, expert_episodes, seed)),
                        evaluation=asdict(grid.evaluation),
                        device=device,
                    )
                )
    return cells


def run_cells(cells: list[Cell], jobs: int, desc: str = "agents") -> list[dict[str, Any]]:
    """Every cell, `jobs` at a time in spawned processes (one torch thread each) when jobs > 1.

    A failing cell does not stop the others; the failures are raised together at the end.
    Ctrl-C stops the running cells (their trainers save a checkpoint) and starts no more.
    """
    results, todo = [], []
    for cell in cells:
        scored = finished(cell)
        (todo.append(cell) if scored is None else results.append(scored))
    failed: list[str] = []
    bar = tqdm(total=len(cells), initial=len(results), desc=desc, unit="run")

    def done(cell: Cell, result: dict[str, Any] | None, error: DittoError | None = None) -> None:
        if error is not None:
            failed.append(f"{Path(cell.out).name}: {error}")
        else:
            results.append(result)
            bar.set_postfix_str(f"{Path(cell.out).name}: {result['return_mean']:.1f}")
        bar.update(1)

    try:
        if jobs <= 1:
            for cell in todo:
                try:
                    done(cell, run_cell(cell, progress=True))
                except DittoError as exc:
                    done(cell, None, exc)
        else:
            _run_parallel(todo, jobs, done)
    finally:
        bar.close()
    if failed:
        raise DittoError(
            f"{len(failed)} of {len(cells)} runs failed (the others are saved); {failed[0]}"
        )
    return results


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_in_worker(cell: Cell) -> dict[str, Any]:
    """A cell in a worker process: Ctrl-C reaches it only while it runs, so its trainer can save."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_cell(cell, False, 1)
    finally:
        _ignore_interrupts()


def _run_parallel(todo: list[Cell], jobs: int, done: Callable) -> None:
    # spawn, not fork: forking after torch has started its thread pools can hang.
    context = multiprocessing.get_context("spawn")
    queue, running = list(todo), {}
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_ignore_interrupts) as pool:
        try:
            while queue or running:
                while queue and len(running) < jobs:  # no backlog: after Ctrl-C nothing new starts
                    cell = queue.pop(0)
                    running[pool.submit(_run_in_worker, cell)] = cell
                finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished_now:
                    cell = running.pop(future)
                    try:
                        done(cell, future.result())
                    except DittoError as exc:
                        done(cell, None, exc)
        except BaseException:
            for future in running:
                future.cancel()
            raise


def default_jobs(device: str) -> int:
    """Parallel agent runs: one per CPU core (at most 4), one on a GPU."""
    from ditto.device import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(4, (os.cpu_count() or 1)))


def print_stage(text: str) -> None:
    print(f"\n[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# What a grid may change between runs into the same directory: it may add cells, and
# a changed evaluation re-scores them; the settings that made finished runs may not change.
GROWABLE = ("envs", "presets", "algos", "expert_episodes", "seeds", "evaluation", "resources")


def _changed_settings(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changed = [
        f"{k}: {saved.get(k)} -> {new.get(k)}"
        for k in new
        if k not in GROWABLE and saved.get(k) != new.get(k)
    ]
    old_envs = {e["env"]: e for e in saved.get("envs", [])}
    for env in new["envs"]:
        before = old_envs.get(env["env"], env)
        changed += [
            f"{env['env']} {k}: {before.get(k)} -> {v}"
            for k, v in env.items()
            if before.get(k) != v
        ]
    return changed


def check_envs_and_experts(grid: Grid) -> None:
    """Unknown env ids and experts that cannot load fail before anything is written."""
    from ditto.envs import env_spec
    from ditto.experts import make_expert

    for plan in grid.envs:
        env_spec(plan.env)
        make_expert(plan.expert, plan.env)


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    device: str = "auto",
    jobs: int | None = None,
    stage: Callable[[str], None] = print_stage,
) -> list[dict[str, Any]]:
    """Run every stage of the grid under `out`, skipping finished work; returns every cell's score.

    `stage` is told when each stage begins (a progress display). A second sweep into `out`
    meanwhile is refused."""
    out = Path(out)
    check_envs_and_experts(grid)
    with writer_lock(out):
        return _run_stages(grid, out, device, jobs, stage)


def prepare_grid_dir(grid: Grid, out: Path) -> None:
    """Write grid.json into `out`, refusing a directory run with other settings (see GROWABLE)."""
    saved = out / "grid.json"
    if saved.is_file():
        changed = _changed_settings(json.loads(saved.read_text()), grid.to_json())
        if changed:
            raise ConfigError(
                f"{out} was run with other settings ({'; '.join(changed)}); finished runs would not "
                "match them. Use a new --out (adding envs, presets, methods, N_E or seeds is fine)"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, grid.to_json())


def _run_stages(
    grid: Grid, out: Path, device: str, jobs: int | None, stage: Callable[[str], None]
) -> list[dict[str, Any]]:
    prepare_grid_dir(grid, out)
    jobs = jobs or default_jobs(device)
    results = []
    for plan in grid.envs:
        root = out / env_slug(plan.env)
        stage(f"{plan.env}: collect expert, noisy and random episodes")
        data = list(collect_data(plan, root).values())
        for preset in grid.presets:
            stage(f"{plan.env}: train the world model ({preset} preset)")
            train_model(
                grid,
                plan,
                preset,
                data,
                world_model_dir(out, plan.env, preset),
                device,
                progress=True,
            )
            cells = plan_cells(grid, plan, preset, out, device)
            stage(
                f"{plan.env}: train and score {len(cells)} agents ({preset} preset, {jobs} at a time)"
            )
            results += run_cells(cells, jobs, desc=f"agents {plan.env} {preset}")
    return results
