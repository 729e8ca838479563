"""Grids on Ray (ditto.experiments.ray_backend) against the local pool, on a local Ray instance.

The module starts one Ray instance with 2 CPUs (about 10 s here) for all of its Ray tests, and
runs the sequential sweep of the debug grid once; each Ray test then sweeps that grid into
its own directory. Without Ray installed those tests are skipped; the `resources` section's
checks and the missing-Ray message are tested regardless.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ditto.errors import ConfigError, DittoError
from ditto.experiments import ray_backend
from ditto.experiments.grid import grid_from_dict, run_grid
from ditto.experiments.report import write_report
from ditto.experiments.resources import StageResources, resolve_resources
from ditto.runs import EVAL

from .test_grid import TINY

KILLED = "ditto-ne1-seed0"  # the cell the fault-injection test kills mid-run


# ----- without a cluster -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "resources, message",
    [
        ([1, 2], "resources must be a mapping"),
        ({"agents": {"cpus": 1}}, "unknown stages \\['agents'\\]; allowed: data, world_model"),
        ({"agent": 2}, "resources.agent must be a mapping like \\{cpus: 1, gpus: 0\\}"),
        ({"agent": {"gpu": 1}}, "resources.agent: unknown keys \\['gpu'\\]; allowed: cpus, gpus"),
        ({"agent": {"cpus": 0}}, "resources.agent.cpus must be more than 0, got 0"),
        ({"score": {"gpus": -1}}, "resources.score.gpus must be 0 or more"),
        ({"world_model": {"gpus": 1.5}}, "above 1 must be a whole number"),
        ({"data": {"cpus": "two"}}, "resources.data.cpus must be a number, got 'two'"),
        ({"data": {"cpus": True}}, "must be a number"),
        ({"agent": {"gpus": 0.00001}}, "more than 4 decimals"),
    ],
)
def test_bad_resources_fail_early_with_one_line(resources, message):
    with pytest.raises(ConfigError, match=message) as error:
        grid_from_dict({**TINY, "resources": resources})
    assert "\n" not in str(error.value)


def test_resources_defaults_and_overrides():
    on_gpus = resolve_resources({"agent": {"gpus": 0.5, "cpus": 2}}, use_gpus=True)
    assert on_gpus["agent"] == StageResources(cpus=2, gpus=0.5) and on_gpus["agent"].threads == 2
    assert on_gpus["world_model"].gpus == 1 and on_gpus["data"].gpus == 0
    on_cpus = resolve_resources({"world_model": {"gpus": "auto", "cpus": 0.5}}, use_gpus=False)
    assert {r.gpus for r in on_cpus.values()} == {0}
    assert on_cpus["world_model"].threads == 1
    # The section changes no result: grid.json leaves it out when empty, and a grid may gain it.
    assert "resources" not in grid_from_dict(TINY).to_json()
    sized = grid_from_dict({**TINY, "resources": {"agent": {"cpus": 2}}})
    assert sized.to_json()["resources"] == {"agent": {"cpus": 2}}


def test_importing_ditto_does_not_import_ray():
    code = (
        "import sys, ditto, ditto.cli, ditto.experiments.grid, ditto.experiments.ray_backend; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(DittoError, match=r"needs Ray.*: pip install ditto-il\[ray\]$"):
        ray_backend.run_grid_on_ray(grid_from_dict(TINY), tmp_path / "g")
    assert not (tmp_path / "g").exists()


# ----- on a local Ray instance -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, one_torch_thread):
    """The debug grid swept by the local pool, one cell at a time: its results.json."""
    out = tmp_path_factory.mktemp("sequential") / "sweep"
    run_grid(grid_from_dict(TINY), out, device="cpu", jobs=1)
    write_report(out)
    return json.loads((out / "results.json").read_text())


def _results(out: Path) -> list:
    write_report(out)
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_ray_sweep_gives_the_sequential_results(ray_instance, sequential, tmp_path):
    out = tmp_path / "ray"
    scores = ray_backend.run_grid_on_ray(grid_from_dict(TINY), out)
    assert sorted(s["algo"] for s in scores) == ["bc", "ditto"]
    assert _results(out) == sequential
    assert not list(out.glob(ray_backend.MARKER + "*"))  # the storage check's file is gone

    # Finished cells are not submitted again; a grown grid runs only its new cells.
    scored = out / "CartPole-v1" / "debug" / "agents" / "bc-ne1-seed0" / EVAL
    first = scored.stat().st_mtime_ns
    again = ray_backend.run_grid_on_ray(grid_from_dict({**TINY, "algos": ["bc", "dbc"]}), out)
    assert sorted(s["algo"] for s in again) == ["bc", "dbc"]
    assert scored.stat().st_mtime_ns == first


@pytest.mark.slow
def test_a_ray_task_killed_mid_cell_is_retried_and_resumes(ray_instance, sequential, tmp_path):
    """The first attempt of one cell's agent task exits hard (os._exit) right after its first
    checkpoint (step 2 of 4); Ray runs the task again, which resumes from that checkpoint."""
    mark = tmp_path / "killed"
    env = {ray_backend.KILL_CELL: KILLED, ray_backend.KILL_MARK: str(mark)}
    out = tmp_path / "ray"
    ray_backend.run_grid_on_ray(
        grid_from_dict(TINY), out, max_retries=1, runtime_env={"env_vars": env}
    )
    assert mark.read_text().endswith(f"{KILLED} after step 2\n")
    assert _results(out) == sequential


def test_ray_refuses_what_it_cannot_run(ray_instance, tmp_path):
    grid = grid_from_dict({**TINY, "resources": {"world_model": {"gpus": 1}}})
    with pytest.raises(ConfigError, match="world_model asks for 1 CPU.* and 1 GPU.*more than any"):
        ray_backend.run_grid_on_ray(grid, tmp_path / "g")
    with pytest.raises(ConfigError, match="--device cpu, but resources.world_model asks for 1 GPU"):
        ray_backend.run_grid_on_ray(grid, tmp_path / "g", device="cpu")
    with pytest.raises(ConfigError, match="with Ray, use auto, cpu or cuda"):
        ray_backend.run_grid_on_ray(grid, tmp_path / "g", device="cuda:1")
    assert not (tmp_path / "g").exists()


def test_a_grid_directory_some_node_cannot_see_is_refused(ray_instance, tmp_path):
    """One node here, so the check is run on a marker that no node sees."""
    with pytest.raises(DittoError, match="not on storage that every Ray node sees \\(1 of 1"):
        ray_backend._check_shared(ray_instance, tmp_path, tmp_path / ".absent", wait_s=0)
    (tmp_path / ".present").touch()
    ray_backend._check_shared(ray_instance, tmp_path, tmp_path / ".present", wait_s=0)
    # A task on a node that does not see it (one that joined later) fails with one line.
    plan = grid_from_dict(TINY).envs[0]
    task = ray_instance.remote(ray_backend._data_task).remote(
        plan, str(tmp_path / "env"), marker=str(tmp_path / ".absent"), threads=1
    )
    with pytest.raises(DittoError) as error:
        ray_instance.get(task)
    message = ray_backend._task_error(ray_instance, error.value, max_retries=3)
    assert message.startswith("Ray node ") and "does not see the grid directory" in message
    assert not (tmp_path / "env").exists()
