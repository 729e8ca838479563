"""The training loop that the world-model trainer (ditto.world_model.trainer) and the agent
trainer (ditto.agents.trainer) share; each supplies only its step and its state.

    class MyTrainer(TrainingLoop):
        def __init__(...):
            config, saved = start_or_resume(out, "world_model", resume, config, from_json, inputs)
            self.bf16 = run_precision(config, self.device, saved)
            ...                       # build the model, optimiser, data
            self.resume_state(saved)  # a resumed run: its checkpoint (load)
            self.open_log(saved)      # config.json (run_config) and metrics.jsonl

        def train_step(self): ...     # one step: its metrics
        def divergence(self, metrics): ...   # None, or the numbers that are not finite
        def log_step(self, metrics, speed, bar): ...
        def save(self): ...           # the checkpoint to resume from
        def load(self): ...           # ... and back from it
        def run_config(self): ...     # what config.json holds

The loop (`run_loop`) keeps what both trainers do alike: the progress bar; a step, then the
NaN guard (a diverged run stops before it saves or samples anything, so its last good
checkpoint is what resumes it); logging every `log_every` steps and at the end, the trainer's
`between_steps` (validation), a checkpoint every `checkpoint_every` steps and at the end; a
checkpoint on Ctrl-C; the metrics log flushed however it ends. The resume rule: a run with a
checkpoint continues only when asked, on its own inputs and config (only its length may
change); its precision is the one `auto` chose when it started.

This module sits below both trainers (it imports neither).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from ditto.device import use_bf16
from ditto.errors import DittoError
from ditto.runs import (
    CHECKPOINT,
    MetricsLog,
    check_resumed_input,
    check_resumed_length,
    read_config,
    should_resume,
    versions,
    write_config,
)


class TrainingDiverged(DittoError):
    """The loss became NaN or Inf."""


def start_or_resume(
    out: Path,
    kind: str,
    resume: bool,
    config: Any,
    from_json: Callable[[dict[str, Any]], Any],
    inputs: dict[str, tuple[str, Any]],
) -> tuple[Any, dict[str, Any] | None]:
    """The config to train on, and the config.json of the run of `kind` in `out` to continue
    (None: a new run). A run with a checkpoint continues only with `resume`
    (runs.should_resume), on the inputs it started with (`inputs`: flag -> its key in
    config.json and what was given now; another is refused), with its own config but for how
    long it trains (`config.steps`)."""
    if not should_resume(out, kind, resume):
        return config, None
    saved = read_config(out, kind)
    for flag, (key, given) in inputs.items():
        check_resumed_input(out, flag, given, saved[key])
    return from_json({**saved[kind], "steps": config.steps}), saved


def run_precision(config: Any, device: torch.device, saved: dict[str, Any] | None) -> bool:
    """Whether the run trains under bf16 autocast. "auto" resolves once, when the run starts:
    a run resumed on other hardware keeps its precision."""
    return saved["bf16"] if saved is not None else use_bf16(config.precision, device)


class TrainingLoop(ABC):
    """A trainer: its state (set up by the subclass) and its step; `run_loop` trains it."""

    unit: ClassVar[str] = "step"  # what one step is called (an agent's: "update")
    advice: ClassVar[str] = ""  # what the divergence error adds, e.g. what to try

    # Set up by the subclass.
    out: Path
    config: Any  # steps, log_every, checkpoint_every, ...
    device: torch.device
    bf16: bool
    step: int
    progress: bool  # show the progress bar
    log: Any  # a MetricsLog, or one that writes nothing

    @property
    @abstractmethod
    def label(self) -> str:
        """What trains, as the progress bar names it."""

    @property
    def subject(self) -> str:
        """What trains, as the divergence error names it."""
        return self.label

    @abstractmethod
    def train_step(self) -> dict[str, Any]:
        """Step number `self.step` (from 0), with whatever state it moves on: its metrics."""

    @abstractmethod
    def divergence(self, metrics: dict[str, Any]) -> str | None:
        """None where the step's numbers are finite, else those numbers as the error shows them."""

    @abstractmethod
    def log_step(self, metrics: dict[str, Any], speed: float, bar: tqdm) -> None:
        """Log the metrics of the step just taken (`speed`: steps per second this session)."""

    @abstractmethod
    def save(self) -> None:
        """Write the checkpoint that a resumed run starts from."""

    @abstractmethod
    def load(self) -> None:
        """Restore the state (and self.step) from the run's checkpoint."""

    @abstractmethod
    def run_config(self) -> dict[str, Any]:
        """What the run's config.json holds (its kind, its config, its inputs, ...) besides
        the device, the precision and the versions, which every run records."""

    def between_steps(self) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """After a step's log and before its checkpoint (the world model validates here)."""

    def save_checkpoint(self) -> None:
        """The periodic checkpoint (an agent also keeps a snapshot of its policy)."""
        self.save()

    def save_on_interrupt(self) -> None:
        self.save()

    # ----- set-up ------------------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def resume_state(self, saved: dict[str, Any] | None) -> None:
        """A resumed run (`saved`: its config.json) continues from its checkpoint's state and
        step, which its length must not be below."""
        if saved is not None:
            self.load()
            check_resumed_length(self.out, self.step, self.config.steps)

    def open_log(self, saved: dict[str, Any] | None) -> None:
        """Write config.json (on resume too, so that it records how long the run now trains)
        and open the metrics log, which a resumed run continues from its checkpoint's step."""
        recorded = {"device": str(self.device), "bf16": self.bf16, "versions": versions()}
        write_config(self.out, {**self.run_config(), **recorded})
        self.log = MetricsLog(self.out, self.step if saved is not None else None)

    # ----- the loop ----------------------------------------------------------------------------
    def due(self, every: int) -> bool:
        """Whether the step just taken is one of every `every`, or the last."""
        return self.step % every == 0 or self.step == self.config.steps

    def run_loop(self) -> None:
        """Train from self.step to config.steps (see the module's doc)."""
        cfg = self.config
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=self.label,
            unit=self.unit,
            disable=not self.progress,
        )
        start_time, start_step = time.perf_counter(), self.step
        try:
            while self.step < cfg.steps:
                metrics = self.train_step()
                numbers = self.divergence(metrics)
                if numbers is not None:
                    raise TrainingDiverged(
                        f"{self.subject} diverged at {self.unit} {self.step + 1} ({numbers}); the "
                        f"last good checkpoint ({self.out / CHECKPOINT}) is kept{self.advice}"
                    )
                self.step += 1
                bar.update(1)
                if self.due(cfg.log_every):
                    speed = (self.step - start_step) / (time.perf_counter() - start_time)
                    self.log_step(metrics, speed, bar)
                self.between_steps()
                if self.due(cfg.checkpoint_every):
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_on_interrupt()
            raise
        finally:
            bar.close()
            self.log.flush()
