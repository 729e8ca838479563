"""What each stage of a grid asks of a Ray cluster: the grid YAML's optional `resources` section.

    resources:
      data:        {cpus: 1}            # collecting one env's datasets
      world_model: {cpus: 4, gpus: 1}   # training one env's world model (per preset)
      agent:       {cpus: 1, gpus: 0.5} # training one agent cell: two share a GPU
      score:       {cpus: 1, gpus: 0}   # scoring one cell (mostly env steps)

Every key is optional. `cpus` is also the number of torch threads a task uses. A stage's
`gpus` left out (or `auto`) is 1 for the world model and the agents and 0.25 for scoring
when the cluster has GPUs and the grid runs with --device auto or cuda, else 0; datasets
take no GPU unless asked. Quantities are Ray's: a number between 0 and 1 (a share of one
CPU or GPU) or a whole number. The local process pool ignores the section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ditto.errors import ConfigError

STAGES = ("data", "world_model", "agent", "score")
KEYS = ("cpus", "gpus")
# GPUs a stage takes by default on a cluster that has them (see the module doc).
GPU_DEFAULTS = {"data": 0.0, "world_model": 1.0, "agent": 1.0, "score": 0.25}


@dataclass(frozen=True)
class StageResources:
    """One task's request: Ray's num_cpus and num_gpus."""

    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        """Torch threads for a task that holds `cpus` CPUs (at least one)."""
        return max(1, int(self.cpus))

    def describe(self) -> str:
        return f"{self.cpus:g} CPU(s) and {self.gpus:g} GPU(s)"


def _quantity(value: Any, where: str, positive: bool) -> float:
    """A Ray resource quantity: a number in (0, 1] (or 0 where allowed), or a whole number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(
            f"{where} must be {'more than 0' if positive else '0 or more'}, got {value}"
        )
    if value > 1 and value != int(value):
        raise ConfigError(f"{where} above 1 must be a whole number (Ray's rule), got {value}")
    if value != round(value, 4):
        raise ConfigError(f"{where} has more than 4 decimals (Ray's precision), got {value}")
    return float(value)


def check_resources(section: Any) -> None:
    """Refuse a malformed `resources` section (ConfigError, one line); run when a grid loads."""
    if not isinstance(section, dict):
        raise ConfigError(f"grid: resources must be a mapping of stages, got {section!r}")
    unknown = sorted(set(section) - set(STAGES))
    if unknown:
        raise ConfigError(
            f"grid: resources: unknown stages {unknown}; allowed: {', '.join(STAGES)}"
        )
    for stage, request in section.items():
        where = f"grid: resources.{stage}"
        if not isinstance(request, dict):
            raise ConfigError(
                f"{where} must be a mapping like {{cpus: 1, gpus: 0}}, got {request!r}"
            )
        unknown = sorted(set(request) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {', '.join(KEYS)}")
        if "cpus" in request:
            _quantity(request["cpus"], f"{where}.cpus", positive=True)
        if request.get("gpus", "auto") != "auto":
            _quantity(request["gpus"], f"{where}.gpus", positive=False)


def resolve_resources(section: dict[str, Any], use_gpus: bool) -> dict[str, StageResources]:
    """Every stage's request, the section's values over the defaults; `auto` GPUs take
    GPU_DEFAULTS when `use_gpus` (the cluster has GPUs and the device allows them), else 0."""
    check_resources(section)
    resolved = {}
    for stage in STAGES:
        request = section.get(stage, {})
        gpus = request.get("gpus", "auto")
        if gpus == "auto":
            gpus = GPU_DEFAULTS[stage] if use_gpus else 0.0
        resolved[stage] = StageResources(float(request.get("cpus", 1)), float(gpus))
    return resolved
