"""Training-step speed of the world model: fp32 eager vs bf16 autocast vs bf16 + torch.compile.

    ditto bench world-model --preset small --device cpu

All modes run in one process on the same synthetic batch (speed does not
depend on the pixels), so their ratios are comparable; each mode reports the
median over timed steps after warm-up (compilation happens during warm-up).
Each mode also reports the step's FLOPs and the rate it achieves (on a CPU,
compare it with `benchmarks/cpu_precision.py`'s matmul GFLOP/s).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from ditto.config import world_model_config
from ditto.envs import env_spec
from ditto.errors import ConfigError
from ditto.world_model.model import WorldModel


class Mode(NamedTuple):
    bf16: bool  # autocast
    compile: str | None  # a torch.compile mode, None for eager


# "reduce-overhead" adds CUDA graphs, which replay a step's many small kernels (the RSSM's
# per-step GRU) in one launch; a GPU-only mode (check_modes). The trainer runs
# fp32 or bf16, eager or compiled ("default"); graphs are a candidate measured here. (The
# convolutions are channels-last in every mode: world_model/networks.py.)
MODES = {
    "fp32": Mode(False, None),
    "bf16": Mode(True, None),
    "fp32+compile": Mode(False, "default"),
    "bf16+compile": Mode(True, "default"),
    "bf16+compile+graphs": Mode(True, "reduce-overhead"),
}


def check_modes(modes: list[str], device: torch.device) -> None:
    """Refuse an unknown mode, and CUDA graphs off a GPU: there "reduce-overhead" compiles as
    "default" does, so it would time plain compile under the graphs' name."""
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"unknown bench mode {mode!r}; choose from {', '.join(MODES)}")
        if MODES[mode].compile == "reduce-overhead" and device.type != "cuda":
            raise ConfigError(
                f"mode {mode} replays CUDA graphs, which need a CUDA device, not {device}; "
                "drop it from --modes or pass --device cuda"
            )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn) -> float:
    """FLOPs of one call of fn, forward and backward kernels alike, as torch's FlopCounterMode counts them.

    Called on the eager function (a compiled one would hide its kernels), so
    every mode of a preset reports the same count and its own FLOP/s.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _batch(model: WorldModel, batch: int, length: int, device: torch.device):
    rng = np.random.default_rng(0)
    spec = model.spec
    frames = torch.from_numpy(
        rng.integers(0, 256, (batch, length, *spec.obs_shape), dtype=np.uint8)
    )
    actions = torch.from_numpy(spec.action.encode(rng.integers(0, spec.action.n, (batch, length))))
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return frames.to(device), actions.to(device), is_first.to(device)


def train_step(
    preset: str,
    mode: str,
    device: torch.device,
    env_id: str = "ALE/Pong-v5",
    batch: int | None = None,
    length: int | None = None,
    overrides: dict | None = None,
):
    """One world-model training step (forward, backward, clip, AdamW) on a fixed synthetic batch,
    as the benchmark times it: (the eager step, the compiled one or the eager one again, a dict of
    the preset's batch, length and parameter count).

    `ditto bench world-model --against REV` times this function in both commits' code, where it
    exists (an older commit runs a copy of it: world_model/bench_worker.py), so a change to
    what a training step is belongs here. `overrides`: settings that replace the preset's.
    """
    bf16, compile_mode = MODES[mode]
    config = world_model_config(preset, **{"batch": batch, "length": length, **(overrides or {})})
    config = replace(config, precision="bf16" if bf16 else "fp32", compile=compile_mode is not None)
    torch.manual_seed(0)
    model = WorldModel(env_spec(env_id), config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, eps=config.eps)
    frames, actions, is_first = _batch(model, config.batch, config.length, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = model.loss(frames, actions, is_first)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    timed = compiled(step, compile_mode) if compile_mode else step
    shape = {
        "batch": config.batch,
        "length": config.length,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return step, timed, shape


def bench_mode(
    preset: str,
    mode: str,
    device: torch.device,
    env_id: str,
    steps: int,
    warmup: int,
    batch: int | None,
    length: int | None,
) -> dict:
    eager, step, shape = train_step(preset, mode, device, env_id, batch, length)
    flops = count_flops(eager)
    warmup_s, median = time_calls(lambda _: step(), device, steps, warmup)
    frames = shape["batch"] * shape["length"]
    return {
        "preset": preset,
        "mode": mode,
        "device": _device_name(device),
        **shape,
        "step_s": median,
        "steps_per_s": 1.0 / median,
        "frames_per_s": frames / median,
        "warmup_s": warmup_s,
        "gflop_per_step": flops / 1e9,
        "tflops_per_s": flops / median / 1e12,
    }


def compiled(fn, mode: str):
    """torch.compile(fn), afresh: each preset x mode compiles the same code again, and past
    dynamo's recompile limit (8) torch would silently run it eager."""
    torch.compiler.reset()
    return torch.compile(fn, mode=mode)


def time_calls(fn, device: torch.device, steps: int, warmup: int) -> tuple[float, float]:
    """Call fn(i) for i = 0..warmup+steps-1: seconds of the warm-up calls, median seconds of the rest."""
    start = time.perf_counter()
    for i in range(warmup):
        fn(i)
    _sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for i in range(warmup, warmup + steps):
        start = time.perf_counter()
        fn(i)
        _sync(device)
        times.append(time.perf_counter() - start)
    return warmup_s, statistics.median(times)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os
    import platform

    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def bench_world_model(
    presets: list[str],
    modes: list[str],
    device: torch.device,
    env_id: str = "ALE/Pong-v5",
    steps: int = 5,
    warmup: int = 2,
    batch: int | None = None,
    length: int | None = None,
) -> Iterator[dict]:
    """One result per preset x mode, as each finishes; speedups are against the first mode."""
    check_modes(modes, device)
    for preset in presets:
        baseline = None
        for mode in modes:
            result = bench_mode(preset, mode, device, env_id, steps, warmup, batch, length)
            baseline = baseline or result["step_s"]
            result["speedup_vs_first_mode"] = baseline / result["step_s"]
            yield result
