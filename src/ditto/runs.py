"""Run-directory plumbing shared by the trainers: the resume rule, the metrics log, RNG state.

RUN/config.json             what the run is (written atomically at the start and on resume)
RUN/metrics.jsonl           one JSON object per log step
RUN/events.*                the same scalars for TensorBoard
RUN/checkpoint.safetensors  the latest full training state
RUN/eval.json               an agent run's score (`ditto evaluate --save`, sweeps)

config.json's "checksums" keeps the sha256 of each checkpoint the run holds (see
`verify_run`, `ditto run verify`); the trainers update it with every checkpoint.

The inputs a config.json names (a world model's datasets; an agent's world model and expert
data) are stored relative to the run where they share a root with it, absolute otherwise, so
that a tree of runs and data still works when it is moved or copied as a whole.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

import ditto
from ditto.checkpoint import Checkpoint
from ditto.errors import DittoError
from ditto.io import (
    CHECKSUMS,
    atomic_write_bytes,
    atomic_write_json,
    checksum_problem,
    holds_files,
    recorded_checksums,
)

CHECKPOINT = "checkpoint.safetensors"
SNAPSHOTS = "checkpoints"  # an agent run's policy snapshots
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"


def has_checkpoint(out: Path) -> bool:
    return (out / CHECKPOINT).is_file()


def should_resume(out: Path, kind: str, resume: bool) -> bool:
    """Whether to resume the run of `kind` in `out`. Nothing there is overwritten silently: a
    run with a checkpoint continues only with resume, and a new run starts only in a new or
    empty directory, or in a run of its kind that stopped before its first checkpoint."""
    if out.exists() and not out.is_dir():
        raise DittoError(f"--out {out} is a file; choose a directory for the run")
    if (out / CONFIG).is_file():
        read_config(out, kind)  # another kind of run is refused here
    elif out.is_dir() and holds_files(out):
        raise DittoError(
            f"{out} is not empty and holds no ditto run; choose a new or empty --out, so that "
            "nothing in it is overwritten"
        )
    if has_checkpoint(out) and not resume:
        raise DittoError(
            f"{out} already holds a trained run; pass --resume to continue it or choose a new --out"
        )
    return has_checkpoint(out)


def check_resumed_input(out: Path, flag: str, given: Any, started: Any) -> None:
    """A resumed run continues on the inputs it started with: a path (or list of paths) other
    than the one its config recorded, given by mistake, is refused rather than ignored."""
    if _resolved(given) != _resolved(started):
        raise DittoError(
            f"{out} was started {_with(flag, started)}, not {_with(flag, given)}; --resume "
            "continues a run on its own inputs, so give the same or use a new --out"
        )


def check_resumed_length(out: Path, step: int, steps: int) -> None:
    if steps < step:
        raise DittoError(
            f"{out} has already trained {step} steps; --steps {steps} would not continue it, "
            f"so give --steps {step} or more"
        )


def _resolved(paths: Any) -> Any:
    if isinstance(paths, (list, tuple)):
        return [Path(p).resolve() for p in paths]
    return None if paths is None else Path(paths).resolve()


def _with(flag: str, paths: Any) -> str:
    if paths is None:
        return f"without {flag}"
    return f"with {flag} {' '.join(map(str, paths)) if isinstance(paths, (list, tuple)) else paths}"


# What each kind of run is called, and the command that makes one.
RUN_KINDS = {
    "world_model": ("a world-model run", "ditto train-world-model"),
    "agent": ("an agent run", "ditto train"),
}


# The keys of each kind of run's config.json that name input paths.
INPUTS = {"world_model": ("data",), "agent": ("world_model", "expert_data")}
# Marks a config.json whose input paths are relative to the run; older ones were stored as
# typed, relative to the working directory of the time.
PATHS_KEY, PATHS_RELATIVE_TO_RUN = "paths_relative_to", "run"


def write_config(run: Path, config: dict[str, Any]) -> None:
    """Write a run's config.json, its input paths stored as `stored_path` makes them, and the
    checksums of the files the run already holds kept."""
    run = Path(run)
    inputs = {
        key: _each_path(config[key], lambda path: stored_path(run, path))
        for key in INPUTS[config["kind"]]
    }
    checksums = recorded_checksums(run / CONFIG)
    atomic_write_json(
        run / CONFIG,
        {**config, **inputs, PATHS_KEY: PATHS_RELATIVE_TO_RUN, CHECKSUMS: checksums},
    )


def verify_run(run: Path) -> list[str]:
    """One line per file of `run` that is missing or changed since it was written (checked
    against the sha256 its config.json records); empty when all match."""
    run = Path(run)
    path = run / CONFIG
    if not path.is_file():
        raise DittoError(f"{run}: not a ditto run (no {CONFIG})")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DittoError(f"{path} is damaged ({exc}); restore the file") from None
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("kind"), str)
        or saved["kind"] not in RUN_KINDS
    ):
        raise DittoError(f"{run}: not a ditto run ({path} is not a run's config)")
    checksums = saved.get(CHECKSUMS)
    if not isinstance(checksums, dict):
        return [f"{path}: records no checksums (written by an older ditto); nothing to verify"]
    # Every checkpoint is recorded before it appears (see io.atomic_write_recorded), so one
    # that is not was saved by an older ditto or put there by hand.
    found = [run / CHECKPOINT, *sorted((run / SNAPSHOTS).glob("*.safetensors"))]
    names = {p.relative_to(run).as_posix() for p in found if p.is_file()} | set(checksums)
    problems = (checksum_problem(run / name, checksums.get(name)) for name in sorted(names))
    return [problem for problem in problems if problem is not None]


def stored_path(run: Path, path: str | os.PathLike) -> str:
    """`path` as a run's config.json records it: relative to the run when the two share a
    directory other than the file system's root (so both move together), else absolute."""
    target, base = Path(path).resolve(), Path(run).resolve()
    try:
        common = Path(os.path.commonpath([target, base]))
    except ValueError:  # on different drives
        return str(target)
    if common == common.parent:  # nothing in common but the root
        return str(target)
    return os.path.relpath(target, base)


def input_path(run: Path, stored: str, legacy: bool = False) -> Path:
    """Where an input path that `run`'s config.json records lies now (absolute).

    It is read relative to the run. A `legacy` config (from before paths were stored so)
    recorded them relative to the working directory of the time, so when the run-relative
    reading finds nothing, the path as stored (relative to the working directory) is taken
    if it exists. The world model's digest is what checks that the right one was found."""
    path = (Path(run).resolve() / stored).resolve()
    if legacy and not path.exists() and Path(stored).exists():
        return Path(stored).resolve()
    return path


def _each_path(value: Any, convert) -> Any:
    """`convert` applied to a path, to each of a list of paths, or None as None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [convert(v) for v in value]
    return convert(value)


def _resolve_inputs(run: Path, saved: dict[str, Any]) -> dict[str, Any]:
    legacy = saved.get(PATHS_KEY) != PATHS_RELATIVE_TO_RUN
    resolved = {}
    for key in (key for key in INPUTS[saved["kind"]] if key in saved):
        try:
            resolved[key] = _each_path(
                saved[key], lambda stored: str(input_path(run, stored, legacy))
            )
        except TypeError:  # a number or a mapping where a path belongs
            raise DittoError(
                f"{run / CONFIG} is damaged ({key} is not a path); restore the file"
            ) from None
    return {**saved, **resolved}


def read_config(run: Path, kind: str) -> dict[str, Any]:
    """The config.json of a run of `kind` ("world_model" or "agent"), its input paths made
    absolute (see `input_path`), or a one-line error when the directory holds none, a damaged
    one, or another kind of run's."""
    what, command = RUN_KINDS[kind]
    path = Path(run) / CONFIG
    if not path.is_file():
        raise DittoError(f"{run}: not {what} (no {CONFIG}); train one with `{command}`")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DittoError(f"{path} is damaged ({exc}); retrain the run or restore the file") from exc
    found = saved.get("kind") if isinstance(saved, dict) else None
    if found != kind:
        known = isinstance(found, str) and found in RUN_KINDS
        found_what = RUN_KINDS[found][0] if known else "not a ditto run"
        raise DittoError(f"{run}: not {what} ({found_what}); train one with `{command}`")
    return _resolve_inputs(Path(run), saved)


def versions() -> dict[str, str]:
    return {
        "ditto": ditto.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, up to a line cut short by a kill mid-write."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class MetricsLog:
    """metrics.jsonl plus TensorBoard. Resuming at `step` forgets lines written after it
    (they are written again), so a resumed run's log equals an uninterrupted one's."""

    def __init__(self, out: Path, resume_step: int | None = None):
        self.path, self.out = out / METRICS, out
        records = read_metrics(self.path) if resume_step is not None else []
        kept = [r for r in records if r["step"] <= (resume_step or 0)]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._tensorboard = None

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.out))
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tensorboard.add_scalar(key, value, record["step"])

    def flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch RNG state(s) to put in a checkpoint."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def restore_rng(checkpoint: Checkpoint, device: torch.device) -> None:
    torch.set_rng_state(checkpoint.tensor("rng/torch"))
    if device.type == "cuda" and checkpoint.has_tensor("rng/cuda"):
        torch.cuda.set_rng_state(checkpoint.tensor("rng/cuda"), device)


def fork_rng(device: torch.device):
    """Run side work (validation, diagnostics) without moving the training RNG."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
