"""Experiment grids on a Ray cluster: the grid's stages as Ray tasks, as a dependency graph.

    from ditto.experiments.grid import load_grid
    from ditto.experiments.ray_backend import run_grid_on_ray
    run_grid_on_ray(load_grid("configs/small.yaml"), "/shared/sweep", address="auto")

(`ditto sweep CONFIG --out DIR --ray [ADDRESS]` from the command line.) Each env's datasets
are one task; each (env, preset) world model a task that waits for them; each agent cell a
task that waits for its world model (pixel BC, which has none, for the datasets only); and
each cell's scoring a task that waits for its agent. Ray starts a task once its inputs are
done and a node has the CPUs and GPUs its stage asks for (the grid's `resources` section,
ditto.experiments.resources), so the stages of different envs overlap.

The grid directory is the same as the local pool's (ditto.experiments.grid), and the same
rules hold: finished cells (eval.json under the grid's evaluation settings) are not
submitted at all; a task whose worker or node dies is retried (`max_retries`) and its
trainer resumes from the checkpoint in its run directory; a DittoError (a bad setting, a
diverged run) is not retried, fails only the cells downstream of it, and is reported with
the others at the end. Every task reads and writes the grid directory at its path on its
node, so the directory must be on storage that every node sees at the same path: the driver
checks that each node sees a marker file it writes there before anything runs, and every
task checks it again as it starts (a node that joins later). Ray is imported only here, and
only when a grid runs; without it the backend says how to install it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ditto.agents.registry import get_method
from ditto.errors import ConfigError, DittoError
from ditto.experiments.grid import (
    Cell,
    EnvPlan,
    Grid,
    check_envs_and_experts,
    collect_data,
    env_slug,
    finished,
    plan_cells,
    prepare_grid_dir,
    print_stage,
    score_cell,
    train_cell,
    train_model,
    world_model_dir,
)
from ditto.experiments.resources import STAGES, StageResources, resolve_resources
from ditto.io import writer_lock

INSTALL = "pip install ditto-il[ray]"
MARKER = ".ditto-ray-"  # + a token per sweep: the file every node must see
MARKER_WAIT_S = 15.0  # how long a node looks for the marker (network file systems cache lookups)
PROBE_TIMEOUT_S = 300.0  # how long the driver waits for every node to answer the check
CANCEL_WAIT_S = 30.0  # after Ctrl-C, how long cancelled tasks have to save their checkpoints
DEVICES = ("auto", "cpu", "cuda")

# Tests only: the agent task of the cell named by KILL_CELL (its directory's name) exits hard
# (os._exit) right after its first full checkpoint, once: it first writes the file KILL_MARK.
KILL_CELL = "DITTO_RAY_TEST_KILL_CELL"
KILL_MARK = "DITTO_RAY_TEST_KILL_MARK"


def import_ray():
    """The ray module, or a one-line DittoError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DittoError(f"the Ray backend needs Ray, which is not installed: {INSTALL}") from None
    return ray


def run_grid_on_ray(
    grid: Grid,
    out: str | Path,
    *,
    address: str | None = None,
    device: str = "auto",
    max_retries: int = 3,
    runtime_env: dict[str, Any] | None = None,
    stage: Callable[[str], None] = print_stage,
) -> list[dict[str, Any]]:
    """Run every stage of the grid under `out` as Ray tasks; returns every cell's score.

    address: None or "local" starts a local Ray instance (or joins the one RAY_ADDRESS
    names, Ray's own rule) and stops it at the end; "auto" joins the cluster this machine
    belongs to; else a cluster's address ("HOST:6379", "ray://HOST:10001"). A Ray already
    initialised in this process is used as it is. device: auto (each task on a GPU when its
    stage has GPUs, else on the CPU), cpu, or cuda. max_retries: how often a task whose
    worker died is run again. runtime_env: Ray's, for every task (e.g. env_vars)."""
    ray = import_ray()
    if device not in DEVICES:
        raise ConfigError(
            f"--device {device}: with Ray, use auto, cpu or cuda (Ray gives each task its GPUs)"
        )
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
    out = Path(out).absolute()  # the path every node opens, whatever its working directory
    check_envs_and_experts(grid)
    with _connected(ray, address):
        resources = _resources(ray, grid, device)
        with writer_lock(out):
            for old in out.glob(MARKER + "*"):  # left by a driver that was killed
                old.unlink(missing_ok=True)
            marker = out / f"{MARKER}{uuid.uuid4().hex}"
            marker.touch()
            try:
                _check_shared(ray, out, marker)
                prepare_grid_dir(grid, out)
                return _run(ray, grid, out, resources, max_retries, runtime_env, marker, stage)
            finally:
                marker.unlink(missing_ok=True)


@contextmanager
def _connected(ray, address: str | None) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=None if address in (None, "local") else address)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ... from Ray
        where = (
            "start a local Ray instance"
            if address in (None, "local")
            else f"reach Ray at {address}"
        )
        raise DittoError(f"could not {where}: {_first_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return next(
        (line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__
    )


# ----- resources ---------------------------------------------------------------------------------
def _resources(ray, grid: Grid, device: str) -> dict[str, StageResources]:
    """Each stage's request, checked against the device and the cluster's nodes."""
    nodes = _alive_nodes(ray)
    has_gpus = any(n["Resources"].get("GPU", 0) > 0 for n in nodes)
    use_gpus = device == "cuda" or (device == "auto" and has_gpus)
    resources = resolve_resources(grid.resources, use_gpus)
    for name in STAGES[1:]:  # the stages that take a device (collection runs on the CPU)
        gpus = resources[name].gpus
        if device == "cpu" and gpus > 0:
            raise ConfigError(
                f"--device cpu, but resources.{name} asks for {gpus:g} GPU(s); set its gpus to 0 "
                "or use --device auto"
            )
        if device == "cuda" and gpus == 0:
            raise ConfigError(
                f"--device cuda, but resources.{name} asks for no GPU; give it gpus or use "
                "--device auto"
            )
    for name, request in resources.items():
        if not any(
            n["Resources"].get("CPU", 0) >= request.cpus
            and n["Resources"].get("GPU", 0) >= request.gpus
            for n in nodes
        ):
            most = max(
                nodes, key=lambda n: (n["Resources"].get("GPU", 0), n["Resources"].get("CPU", 0))
            )
            raise ConfigError(
                f"resources.{name} asks for {request.describe()}, more than any Ray node has "
                f"(the largest: {most['Resources'].get('CPU', 0):g} CPU(s) and "
                f"{most['Resources'].get('GPU', 0):g} GPU(s)); lower it in the grid's resources"
            )
    return resources


def _alive_nodes(ray) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _task_device(request: StageResources) -> str:
    return "cuda" if request.gpus > 0 else "cpu"


# ----- shared storage ----------------------------------------------------------------------------
def _check_shared(ray, out: Path, marker: Path, wait_s: float = MARKER_WAIT_S) -> None:
    """Refuse a grid directory that some node of the cluster does not see (DittoError): each
    node looks for `marker` for up to `wait_s` seconds."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = _alive_nodes(ray)
    probe = ray.remote(_sees_marker)
    refs = {
        probe.options(
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
        ).remote(str(marker), wait_s): n.get("NodeManagerHostname") or n["NodeManagerAddress"]
        for n in nodes
    }
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    if late:
        raise DittoError(
            f"{len(late)} of {len(nodes)} Ray nodes (e.g. {refs[late[0]]}) did not answer the "
            f"shared-storage check within {PROBE_TIMEOUT_S:.0f} s; is the cluster busy or down?"
        )
    blind = []
    for ref in ready:
        try:
            if not ray.get(ref):
                blind.append(refs[ref])
        except Exception as exc:  # e.g. ditto not installed on that node
            raise DittoError(
                f"Ray node {refs[ref]} cannot run ditto's tasks ({_first_line(exc)}); install "
                "the same ditto-il on every node"
            ) from None
    if blind:
        raise DittoError(
            f"{out} is not on storage that every Ray node sees ({len(blind)} of {len(nodes)} nodes, "
            f"e.g. {blind[0]}, cannot read it); put the grid directory on shared storage (NFS, "
            "a cluster file system) mounted at the same path on every node"
        )


def _sees_marker(marker: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    return os.path.exists(marker)


def _in_task(marker: str, threads: int) -> None:
    """What every task does first: check its node sees the grid directory; set torch's threads."""
    import torch

    if not os.path.exists(marker):
        raise DittoError(
            f"Ray node {socket.gethostname()} does not see the grid directory {Path(marker).parent}; "
            "put it on storage every node mounts at the same path"
        )
    torch.set_num_threads(threads)


# ----- the tasks ---------------------------------------------------------------------------------
def _data_task(plan: EnvPlan, root: str, marker: str, threads: int) -> list[str]:
    _in_task(marker, threads)
    return [str(p) for p in collect_data(plan, Path(root), progress=False).values()]


def _world_model_task(
    grid: Grid,
    plan: EnvPlan,
    preset: str,
    data: list[str],
    out: str,
    device: str,
    marker: str,
    threads: int,
) -> str:
    _in_task(marker, threads)
    train_model(grid, plan, preset, [Path(p) for p in data], Path(out), device, progress=False)
    return out


def _agent_task(cell: Cell, upstream: Any, marker: str, threads: int) -> str:
    """Train one cell (`upstream`, its world model's or datasets' task, only orders it)."""
    _in_task(marker, threads)
    with _fault_injection(cell):
        train_cell(cell, progress=False)
    return cell.out


def _score_task(cell: Cell, trained: str, device: str, marker: str, threads: int) -> dict[str, Any]:
    _in_task(marker, threads)
    return score_cell(cell, device=device, progress=False)


@contextmanager
def _fault_injection(cell: Cell) -> Iterator[None]:
    """Tests only (KILL_CELL, KILL_MARK): die as a killed worker does, mid-cell, once."""
    name, mark = os.environ.get(KILL_CELL), os.environ.get(KILL_MARK)
    if not name or not mark or Path(cell.out).name != name or Path(mark).exists():
        yield
        return
    from ditto.agents.trainer import AgentTrainer

    save = AgentTrainer.save

    def save_then_die(self) -> None:
        save(self)
        Path(mark).write_text(f"killed {cell.out} after step {self.step}\n")
        os._exit(1)

    AgentTrainer.save = save_then_die
    try:
        yield
    finally:
        AgentTrainer.save = save


# ----- the graph ---------------------------------------------------------------------------------
Submit = Callable[..., Any]  # submit(stage, task name, *args) -> the task's ObjectRef


def _submitter(
    ray,
    resources: dict[str, StageResources],
    max_retries: int,
    runtime_env: dict[str, Any] | None,
    marker: Path,
) -> Submit:
    functions = {
        "data": ray.remote(_data_task),
        "world_model": ray.remote(_world_model_task),
        "agent": ray.remote(_agent_task),
        "score": ray.remote(_score_task),
    }
    extra = {} if runtime_env is None else {"runtime_env": runtime_env}

    def submit(stage_name: str, task_name: str, *args: Any) -> Any:
        """One task of the stage: its CPUs and GPUs, retries, and the marker and threads."""
        request = resources[stage_name]
        return (
            functions[stage_name]
            .options(
                name=task_name,
                num_cpus=request.cpus,
                num_gpus=request.gpus,
                max_retries=max_retries,
                **extra,
            )
            .remote(*args, marker=str(marker), threads=request.threads)
        )

    return submit


def _submit_env(
    submit: Submit,
    grid: Grid,
    plan: EnvPlan,
    out: Path,
    resources: dict[str, StageResources],
    todo: dict[str, list[Cell]],
) -> dict[Any, tuple[str, Cell | None]]:
    """The env's tasks, for its unfinished cells (by preset): ref -> (what, its cell if a score)."""
    data = submit("data", f"data {plan.env}", plan, str(out / env_slug(plan.env)))
    waiting: dict[Any, tuple[str, Cell | None]] = {data: (f"{plan.env}: datasets", None)}
    for preset, cells in todo.items():
        model = submit(
            "world_model",
            f"world model {plan.env} {preset}",
            grid,
            plan,
            preset,
            data,
            str(world_model_dir(out, plan.env, preset)),
            _task_device(resources["world_model"]),
        )
        waiting[model] = (f"{plan.env}: world model ({preset} preset)", None)
        for cell in cells:
            name = f"{plan.env} {preset} {Path(cell.out).name}"
            upstream = model if get_method(cell.config["algo"]).world_model else data
            trained = submit("agent", f"agent {name}", cell, upstream)
            score = submit(
                "score", f"score {name}", cell, trained, _task_device(resources["score"])
            )
            waiting[score] = (name, cell)
    return waiting


def _run(
    ray,
    grid: Grid,
    out: Path,
    resources: dict[str, StageResources],
    max_retries: int,
    runtime_env: dict[str, Any] | None,
    marker: Path,
    stage: Callable[[str], None],
) -> list[dict[str, Any]]:
    submit = _submitter(ray, resources, max_retries, runtime_env, marker)
    cells: list[Cell] = []
    scores: dict[str, dict[str, Any]] = {}  # cell.out -> its score
    waiting: dict[Any, tuple[str, Cell | None]] = {}
    for plan in grid.envs:
        todo: dict[str, list[Cell]] = {}
        for preset in grid.presets:
            planned = plan_cells(grid, plan, preset, out, _task_device(resources["agent"]))
            cells += planned
            for cell in planned:
                scored = finished(cell)
                if scored is None:
                    todo.setdefault(preset, []).append(cell)
                else:
                    scores[cell.out] = scored
        if todo:  # else every cell of this env is finished: its data and models are not needed
            waiting.update(_submit_env(submit, grid, plan, out, resources, todo))

    todo_count = sum(cell is not None for _, cell in waiting.values())
    stage(
        f"Ray: {len(cells)} cells, {len(cells) - todo_count} finished already; {todo_count} to "
        f"train and score on {len(_alive_nodes(ray))} node(s) "
        f"({', '.join(f'{k} {v.describe()}' for k, v in resources.items())} per task)"
    )
    failed = _wait(ray, waiting, scores, len(cells), max_retries, stage)
    if failed:
        raise DittoError(
            f"{len(failed)} of {len(cells)} runs failed (the others are saved); {failed[0]}"
        )
    return [scores[cell.out] for cell in cells]


def _wait(
    ray,
    waiting: dict[Any, tuple[str, Cell | None]],
    scores: dict[str, dict[str, Any]],
    total: int,
    max_retries: int,
    stage: Callable[[str], None],
) -> list[str]:
    """Collect the tasks as they end; the failed cells' messages. Ctrl-C (or a bug in a task)
    cancels what is left: running trainers are interrupted and save a checkpoint."""
    failed: list[str] = []
    remaining = list(waiting)
    bar = tqdm(total=total, initial=len(scores), desc="agents (Ray)", unit="run")
    try:
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            label, cell = waiting[done[0]]
            try:
                value = ray.get(done[0])
            except Exception as exc:
                error = _task_error(ray, exc, max_retries)
                if cell is None:
                    stage(f"{label}: failed: {error} (its cells fail with it)")
                else:
                    failed.append(f"{Path(cell.out).name}: {error}")
                    bar.update(1)
                continue
            if cell is None:
                stage(f"{label}: done")
            else:
                scores[cell.out] = value
                bar.set_postfix_str(f"{Path(cell.out).name}: {value['return_mean']:.1f}")
                bar.update(1)
    except BaseException:
        for ref in remaining:
            ray.cancel(ref)  # a running trainer gets a KeyboardInterrupt and saves its checkpoint
        # Give them that time before Ray (a local instance) shuts down; a second Ctrl-C ends it.
        ray.wait(remaining, num_returns=len(remaining), timeout=CANCEL_WAIT_S)
        raise
    finally:
        bar.close()
    return failed


def _task_error(ray, exc: Exception, max_retries: int) -> str:
    """What a failed task says, in one line: its DittoError (or one upstream of it), or how
    its worker died (after max_retries retries). Anything else is a bug: raised as it is."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DittoError):
        return str(cause)
    died = cause if isinstance(cause, ray.exceptions.RayError) else exc
    if isinstance(died, ray.exceptions.RayError) and not isinstance(
        died, ray.exceptions.RayTaskError
    ):  # a worker or node died, memory ran out, ...: retried max_retries times already
        return f"its Ray task died {max_retries + 1} time(s): {_first_line(died)}"
    raise exc
