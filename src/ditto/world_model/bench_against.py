"""Today's world-model training step against another commit's, timed in one run on one machine.

    ditto bench world-model --against 77aa8b7 --preset small

A speed claim on a shared CPU is only worth a ratio measured side by side: the load of
other jobs moves absolute times by tens of percent from one hour to the next. So both
sides run at once, each in its own process (world_model/bench_worker.py) whose PYTHONPATH
starts with its own `src`: "today" is the checkout this `ditto` is imported from (its
HEAD; `src/` must be committed, so the hash names the code that ran) and "against" is
REV's `src`, taken with `git archive` into a temporary folder (nothing is registered in
.git, and the folder is removed at the end, on an error, Ctrl-C or SIGTERM too). Both build the
same preset, batch, length and mode on the same device and thread count and warm up;
then the rounds alternate, today then REV, REV then today, ..., so a drift in the
machine's load falls on both. Each round times `steps` steps per side and keeps their
median; a side's figure is the median of its rounds, and the speedup of a round is
REV's ms/step over today's from the same round, reported as the median and the range
over rounds (above 1: today is faster).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import ditto
from ditto.errors import ConfigError, DittoError

WORKER = Path(__file__).with_name("bench_worker.py")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def checkout_of(src: Path) -> Path:
    """The git checkout whose `src` folder holds this ditto; a one-line error if there is none."""
    found = _git(src, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        raise ConfigError(f"--against needs ditto run from a git checkout; {src} is not in one")
    return Path(found.stdout.strip())


def resolve_commit(repo: Path, rev: str) -> str:
    """The full hash of rev in repo, or a one-line error."""
    bad = not rev or rev.startswith("-")
    found = None if bad else _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found is None or found.returncode != 0:
        raise ConfigError(f"unknown revision {rev!r} in {repo}")
    return found.stdout.strip()


def check_committed(repo: Path, src: Path) -> None:
    """Refuse uncommitted changes under src (untracked files included): the result names
    today's side by its commit, which must then be the code that ran."""
    status = _git(repo, "status", "--porcelain", "--", str(src))
    if status.returncode != 0:
        raise ConfigError(f"git status failed in {repo}: {status.stderr.strip()}")
    changed = [line[3:] for line in status.stdout.splitlines()]
    if changed:
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise ConfigError(
            f"uncommitted changes under {src} ({shown}); commit them first, so that the "
            "timing names the code it ran"
        )


def export_src(repo: Path, commit: str, into: Path) -> Path:
    """commit's `src` folder, written under into (`git archive`); its path."""
    archive = into / "src.tar"
    made = _git(repo, "archive", "--format=tar", "-o", str(archive), commit, "src")
    if made.returncode != 0:
        raise ConfigError(f"commit {commit[:12]} has no src folder to time: {made.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into / "src"


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, and the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": _load(),
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Callable[[], object]:
    """Make SIGTERM (a plain `kill`) raise KeyboardInterrupt, so the cleanup runs as for
    Ctrl-C (on the main thread; elsewhere signals are left alone); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@dataclass
class Side:
    """One side's worker process and what it has measured."""

    name: str
    commit: str
    src: Path
    process: subprocess.Popen | None = None
    log: IO[str] | None = None
    ready: dict = field(default_factory=dict)
    round_ms: list[float] = field(default_factory=list)

    def start(self, settings: dict, cwd: Path) -> None:
        threads = str(settings["threads"])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.src), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
        self.log = tempfile.TemporaryFile("w+", dir=cwd)  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER.read_text(), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=cwd,
            env=env,
        )

    def reply(self) -> dict:
        """The worker's next line, or an error with the last line it wrote to stderr."""
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            lines = [x for x in self.log.read().splitlines() if x.strip()]
            last = lines[-1] if lines else f"exit status {self.process.returncode}"
            raise DittoError(f"the {self.name} side ({self.commit[:12]}) failed: {last}")
        return json.loads(line)

    def wait_ready(self) -> None:
        self.ready = self.reply()
        ran = Path(self.ready["ditto"]).resolve()
        if ran != (self.src / "ditto").resolve():
            raise DittoError(
                f"the {self.name} side imported ditto from {ran}, not {self.src / 'ditto'}"
            )

    def run_round(self) -> float:
        """One round's median ms/step."""
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        ms = 1000 * statistics.median(self.reply()["times"])
        self.round_ms.append(ms)
        return ms

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.process.stdin.close()
                    self.process.wait(timeout=3)  # an idle worker exits at once
                except (OSError, subprocess.TimeoutExpired):
                    self.process.kill()
                    self.process.wait()
            self.process.stdout.close()
        if self.log is not None:
            self.log.close()

    def summary(self) -> dict:
        return {
            "commit": self.commit,
            "ms_per_step": statistics.median(self.round_ms),
            "ms_min": min(self.round_ms),
            "ms_max": max(self.round_ms),
            "round_ms": self.round_ms,
            "batch": self.ready["batch"],
            "length": self.ready["length"],
            "params": self.ready["params"],
            "warmup_s": self.ready["warmup_s"],
            "threads": self.ready["threads"],
        }


def bench_against(
    rev: str,
    preset: str = "small",
    mode: str = "fp32",
    device: str = "cpu",
    rounds: int = 5,
    steps: int = 5,
    warmup: int = 2,
    threads: int = 1,
    batch: int | None = None,
    length: int | None = None,
    env_id: str = "ALE/Pong-v5",
    src: Path | None = None,
    on_round: Callable[[int, float, float], None] | None = None,
    against_preset: str | None = None,
    overrides: dict | None = None,
) -> dict:
    """Time today's training step (the checkout of src, by default this ditto's) against rev's.

    device is a resolved device ("cpu", "cuda", "cuda:1"). on_round(i, today_ms, against_ms)
    is called after each round. against_preset: the preset rev's side builds (default `preset`),
    to time a new preset against the one it would replace; rev must have it. overrides: settings
    that replace today's preset's (an option timed before it has a preset). Returns both commits, each side's ms/step (median and range
    over rounds), the speedup (rev's ms / today's, median and range over the rounds' ratios),
    the settings, the machine and the date.
    """
    src = Path(src or Path(ditto.__file__).parents[1]).resolve()
    repo = checkout_of(src)
    today = resolve_commit(repo, "HEAD")
    against = resolve_commit(repo, rev)
    check_committed(repo, src)
    settings = {
        "preset": preset,
        "mode": mode,
        "device": device,
        "threads": threads,
        "steps": steps,
        "warmup": warmup,
        "batch": batch,
        "length": length,
        "env_id": env_id,
    }
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **settings,
        "rounds": rounds,
        "against_rev": rev,
        "against_preset": against_preset or preset,
        "overrides": overrides or {},
    }
    today_side = {**settings, "overrides": overrides or {}}
    against_side = {**settings, "preset": against_preset or preset}
    sides = _alternate(repo, (today, today_side, src), (against, against_side), rounds, on_round)
    result["machine"]["load_after"] = _load()
    result["today"], result["against"] = sides[0].summary(), sides[1].summary()
    ratios = [b / a for a, b in zip(sides[0].round_ms, sides[1].round_ms, strict=True)]
    result["speedup"] = {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "per_round": ratios,
    }
    # Each side's preset has its own batch and length unless --batch/--length fix them
    # (a redesigned preset may change them); per frame compares those too.
    frames = [r["batch"] * r["length"] for r in (result["today"], result["against"])]
    result["speedup_per_frame"] = result["speedup"]["median"] * frames[0] / frames[1]
    return result


def _alternate(repo, today: tuple, against: tuple, rounds: int, on_round) -> list[Side]:
    """Start both sides (today's checkout, rev's exported source), let them warm up at once,
    untimed, then time `rounds` rounds, alternating which side goes first."""
    tmp = Path(tempfile.mkdtemp(prefix="ditto-bench-against-"))
    (today_commit, today_settings, src), (against_commit, against_settings) = today, against
    sides = [Side("today", today_commit, src)]
    restore_sigterm = _terminate_as_interrupt()
    try:
        sides.append(Side("against", against_commit, export_src(repo, against_commit, tmp)))
        for side, side_settings in zip(sides, (today_settings, against_settings), strict=True):
            side.start(side_settings, tmp)
        for side in sides:
            side.wait_ready()
        for i in range(rounds):
            for side in sides if i % 2 == 0 else sides[::-1]:
                side.run_round()
            if on_round is not None:
                on_round(i, sides[0].round_ms[-1], sides[1].round_ms[-1])
    finally:
        for side in sides:
            side.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        restore_sigterm()
    return sides


def _presets(result: dict) -> str:
    """'small', or 'small-fast (against small)' where the sides build different presets."""
    against = result.get("against_preset", result["preset"])
    today = result["preset"] + "".join(f" {k}={v}" for k, v in result.get("overrides", {}).items())
    return today + ("" if against == result["preset"] else f" (against {against})")


def describe(result: dict) -> str:
    """The result for people: settings, both sides, the speedup, the machine."""
    today, against, speedup = result["today"], result["against"], result["speedup"]
    m = result["machine"]

    def side(name: str, r: dict) -> str:
        return (
            f"  {name:<8} {r['commit'][:9]}  {r['ms_per_step']:8.1f} ms/step "
            f"(rounds {r['ms_min']:.1f}-{r['ms_max']:.1f}; B{r['batch']}xL{r['length']}, "
            f"{r['params']:,} params)"
        )

    same_shape = (today["batch"], today["length"]) == (against["batch"], against["length"])
    per_frame = (
        []
        if same_shape
        else [f"  per frame (the sides' batch x length differ): x{result['speedup_per_frame']:.2f}"]
    )

    def load(key: str) -> str:
        return "/".join(f"{x:g}" for x in m[key]) if m.get(key) else "?"

    return "\n".join(
        [
            f"world-model training step: preset {_presets(result)}, {result['mode']}, "
            f"{result['device']}, "
            f"{result['threads']} thread(s) per side, {result['rounds']} alternating rounds "
            f"x {result['steps']} steps (after {result['warmup']} warm-up)",
            side("today", today),
            side(result["against_rev"], against),
            f"  speedup of today over {result['against_rev']}: x{speedup['median']:.2f} "
            f"(rounds x{speedup['min']:.2f}-x{speedup['max']:.2f}; above 1: today is faster)",
            *per_frame,
            f"  {m['cpu']}, {m['cores']} cores; load {load('load_before')} before, "
            f"{load('load_after')} after; {result['date']}",
        ]
    )
