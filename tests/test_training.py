"""The training loop both trainers share (ditto.training), on a toy trainer: its cadence of
logs, between-steps work and checkpoints, its NaN guard, and its checkpoint on Ctrl-C."""

import math
from types import SimpleNamespace

import pytest
import torch

from ditto.training import TrainingDiverged, TrainingLoop


class _Log:
    def __init__(self):
        self.records, self.flushed = [], 0

    def write(self, record):
        self.records.append(record)

    def flush(self):
        self.flushed += 1


class _Toy(TrainingLoop):
    """Counts its steps; its loss is 1 / (step + 1) until `nan_at`, then NaN."""

    label = "toy"

    def __init__(self, tmp_path, steps=7, nan_at=None, interrupt_at=None, start=0):
        self.out, self.progress, self.device, self.bf16 = (
            tmp_path,
            False,
            torch.device("cpu"),
            False,
        )
        self.config = SimpleNamespace(steps=steps, log_every=3, checkpoint_every=4)
        self.step, self.log = start, _Log()
        self.nan_at, self.interrupt_at = nan_at, interrupt_at
        self.events = []

    def train_step(self):
        if self.step == self.interrupt_at:
            raise KeyboardInterrupt
        self.events.append(("step", self.step))
        return {"loss": math.nan if self.step == self.nan_at else 1 / (self.step + 1)}

    def divergence(self, metrics):
        return None if math.isfinite(metrics["loss"]) else f"loss {metrics['loss']}"

    def log_step(self, metrics, speed, bar):
        assert speed > 0
        self.log.write({"step": self.step, **metrics})

    def between_steps(self):
        self.events.append(("between", self.step))

    def save(self):
        self.events.append(("save", self.step))

    def load(self):
        raise AssertionError("not resumed here")

    def run_config(self):
        return {}


def test_logs_and_checkpoints_every_so_many_steps_and_at_the_end(tmp_path):
    toy = _Toy(tmp_path)
    toy.run_loop()
    assert toy.step == 7
    assert [r["step"] for r in toy.log.records] == [3, 6, 7]
    assert [s for kind, s in toy.events if kind == "save"] == [4, 7]
    assert [s for kind, s in toy.events if kind == "between"] == [1, 2, 3, 4, 5, 6, 7]
    assert toy.log.flushed == 1
    resumed = _Toy(tmp_path, steps=9, start=7)  # continues from its step
    resumed.run_loop()
    assert [s for kind, s in resumed.events if kind == "step"] == [7, 8]
    assert [s for kind, s in resumed.events if kind == "save"] == [8, 9]


def test_a_non_finite_step_stops_before_it_is_counted_logged_or_saved(tmp_path):
    toy = _Toy(tmp_path, nan_at=5)
    with pytest.raises(TrainingDiverged) as error:
        toy.run_loop()
    checkpoint = tmp_path / "checkpoint.safetensors"
    assert str(error.value) == (
        f"toy diverged at step 6 (loss nan); the last good checkpoint ({checkpoint}) is kept"
    )
    assert toy.step == 5 and [s for kind, s in toy.events if kind == "save"] == [4]
    assert toy.log.flushed == 1  # however the loop ends


def test_ctrl_c_saves_the_state_of_the_last_finished_step(tmp_path):
    toy = _Toy(tmp_path, interrupt_at=6)
    with pytest.raises(KeyboardInterrupt):
        toy.run_loop()
    assert [s for kind, s in toy.events if kind == "save"] == [4, 6]
    assert toy.log.flushed == 1
