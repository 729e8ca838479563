"""The imitation methods, each registered once: all that the trainer, evaluation, grids, the
report and the CLI know of a method, so that none of them names one.

A method is one module: its frozen config (an AgentConfig subclass whose `algo` default is the
method's name), its algorithm class, and one registration line:

    register_method(Method(DittoConfig, Ditto, label="DITTO", color="tab:blue"))

A method that trains in a world model (world_model=True) subclasses LatentImitation and is
built as `algorithm(model, expert_latents, config)`. One that learns from frames alone is built
as `algorithm(episodes, spec, config, device)` and gives `expert_frames(episodes)`, the held-out
data its diagnostics read, and `deployed_policy(config, spec)` (see PixelBC). Both give
`policy`, `stateful()`, `update(step, generator)` and `diagnostics(validation, policy)`.

The built-in methods register when `ditto.agents` is imported, in the order the report lists
them. A method from elsewhere is registered in the processes that import its module: not in
the worker processes of a grid run with jobs > 1, which import only ditto.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ditto.config import AgentConfig, from_preset
from ditto.errors import ConfigError

DEFAULT_ALGO = "ditto"  # what agent_config builds when no algo is named


@dataclass(frozen=True)
class Method:
    config: type[AgentConfig]  # its settings; their `algo` default is the method's name
    algorithm: Callable[..., Any]  # the class that trains it (see the module doc)
    label: str  # its name in the report
    color: str | None = None  # its colour in the report's figures (matplotlib's default: None)
    world_model: bool = True  # trains and acts inside a world model, or from frames alone
    # Whether a grid that names no `algos` runs it: not a method that `ditto evaluate` cannot
    # score yet (a goal-conditioned one, which needs each episode's mission).
    in_default_grid: bool = True

    @property
    def name(self) -> str:
        return self.config.algo


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make `method` known to `ditto train --algo NAME`, grids, evaluation and the report."""
    if not method.name:
        raise ConfigError(
            f'{method.config.__name__} names no method: declare `algo: str = "NAME"` in it'
        )
    if METHODS.get(method.name, method) != method:
        raise ConfigError(f"another method is registered as {method.name!r} already")
    METHODS[method.name] = method
    return method


def get_method(algo: str) -> Method:
    if algo not in METHODS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {', '.join(METHODS)}")
    return METHODS[algo]


def method_names() -> tuple[str, ...]:
    """The registered methods' names, in the order they registered (the report's order): what
    a grid runs when it names none, so those not `in_default_grid` are left out."""
    return tuple(name for name, method in METHODS.items() if method.in_default_grid)


def method_settings() -> dict[str, type[AgentConfig]]:
    """Every setting of the registered methods -> the config of the first method that has it
    (the CLI's flags of `ditto train`, the docs' tables of every method's settings)."""
    owners: dict[str, type[AgentConfig]] = {}
    for method in METHODS.values():
        for field in fields(method.config):
            owners.setdefault(field.name, method.config)
    return owners


def agent_config(preset: str = "small", **overrides: Any) -> AgentConfig:
    """The config of method `algo` (default ditto) at `preset`, with `overrides` applied (None
    values, i.e. flags not given, are ignored).

    A setting of another registered method is accepted and left out, as the one config that
    every method shared before ignored it: so one set of settings (a grid's `agent:`, a
    script's overrides) serves several methods. A setting no method has is an error."""
    config = get_method(overrides.pop("algo", None) or DEFAULT_ALGO).config
    unknown = sorted(set(overrides) - set(method_settings()))
    if unknown:
        raise ConfigError(f"unknown AgentConfig settings {unknown}")
    own = {f.name for f in fields(config)}
    return from_preset(config.presets(), preset, {k: v for k, v in overrides.items() if k in own})


def config_from_json(data: dict[str, Any]) -> AgentConfig:
    """An agent run's config from its config.json (`agent`), as the config of its method; runs
    written before each method had its own config load too (AgentConfig.from_json)."""
    return get_method(data.get("algo", DEFAULT_ALGO)).config.from_json(data)
