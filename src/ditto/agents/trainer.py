"""Training an imitation agent: DITTO, D-BC, D-GAIL (in a world model) or pixel BC.

    run = train_agent(agent_config("small", algo="ditto", expert_episodes=4),
                      expert_data="data/expert", out="runs/ditto", world_model="runs/wm")

Run directory:
    config.json              resolved config, world model, expert data, env spec, versions
    metrics.jsonl, events.*  losses and diagnostics (held-out latent distance, action accuracy)
    checkpoint.safetensors   the full training state, to resume
    checkpoints/step_*.safetensors   policy snapshots every checkpoint_every updates (the last
                             keep_checkpoints are kept): what `ditto evaluate` scores; with
                             policy_ema, the moving average of the policy's weights
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.registry import Method, config_from_json, get_method
from ditto.checkpoint import load_checkpoint, save_checkpoint
from ditto.config import AgentConfig
from ditto.data import Dataset, Episode
from ditto.device import resolve_device
from ditto.errors import DittoError
from ditto.io import remove_recorded, writer_lock
from ditto.runs import CHECKPOINT, CONFIG, SNAPSHOTS, fork_rng, restore_rng, rng_tensors
from ditto.training import TrainingLoop, run_precision, start_or_resume
from ditto.world_model.trainer import WorldModelRun, load_world_model


def split_expert_episodes(
    dataset: Dataset, count: int, val_fraction: float
) -> tuple[list[Episode], list[Episode], bool]:
    """The first `count` episodes train; validation uses episodes the agent never trains on.

    Validation takes the dataset's next episodes after the first `count` (about
    val_fraction of count, at least one) when it has them, else holds out the last
    round(val_fraction * count) of the `count`; with none to spare it validates on
    the training episodes (the returned flag says so).
    """
    if count < 1:
        raise DittoError(f"--expert-episodes must be >= 1, got {count}")
    if count > len(dataset):
        raise DittoError(
            f"--expert-episodes {count} is more than the {len(dataset)} episodes in {dataset.root}; "
            "collect more or ask for fewer"
        )
    wanted = max(1, round(val_fraction * count))
    if len(dataset) > count:
        return list(dataset[:count]), list(dataset[count : count + wanted]), False
    held_out = round(val_fraction * count)
    if held_out:
        return list(dataset[: count - held_out]), list(dataset[count - held_out : count]), False
    episodes = list(dataset[:count])
    return episodes, episodes, True


@dataclass
class AgentRun:
    path: Path
    step: int

    def __fspath__(self) -> str:  # the run stands for its directory wherever a path is expected
        return str(self.path)


class AgentTrainer(TrainingLoop):
    unit = "update"

    def __init__(
        self,
        config: AgentConfig,
        expert_data: str | os.PathLike,
        out: str | os.PathLike,
        world_model: str | os.PathLike | None = None,
        device: str = "auto",
        resume: bool = False,
        progress: bool = True,
    ):
        self.out, self.progress = Path(out), progress
        # a Dataset or a world-model run stands for its directory
        expert_data = os.fspath(expert_data)
        world_model = None if world_model is None else os.fspath(world_model)
        inputs = {
            "--expert-data": ("expert_data", expert_data),
            "--world-model": ("world_model", world_model),
        }
        config, saved = start_or_resume(self.out, "agent", resume, config, config_from_json, inputs)
        if saved is not None:
            expert_data, world_model = saved["expert_data"], saved["world_model"]
        self.config, self.expert_data = config, expert_data
        self.world_model_path = world_model
        self.device = resolve_device(device)
        self.bf16 = run_precision(config, self.device, saved)

        dataset = Dataset(expert_data)
        self.spec = dataset.spec
        self.expert_return = float(dataset.returns.mean())
        train, val, self.val_on_train = split_expert_episodes(
            dataset, config.expert_episodes, config.val_fraction
        )
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.world_model_step: int | None = None
        self.world_model_digest: str | None = None
        self._build(get_method(config.algo), train, val, saved)
        self.policy = self.algo.policy
        self.average = (
            AveragedModel(self.policy, multi_avg_fn=get_ema_multi_avg_fn(config.policy_ema))
            if config.policy_ema
            else None
        )
        self.step = 0
        self.resume_state(saved)
        self.open_log(saved)

    @property
    def label(self) -> str:
        return self.config.algo

    def _build(
        self, method: Method, train: list[Episode], val: list[Episode], saved: dict | None
    ) -> None:
        """The method's algorithm (self.algo) and the held-out data of its diagnostics."""
        if method.world_model:
            self._build_in_world_model(method, train, val, saved)
        elif self.world_model_path is not None:  # recorded, it would claim a dependence
            raise DittoError(
                f"--algo {self.config.algo} learns from frames alone, without a world model: "
                "drop --world-model"
            )
        else:
            self.algo = method.algorithm(train, self.spec, self.config, self.device)
            self.validation = self.algo.expert_frames(val)

    def _build_in_world_model(
        self, method: Method, train: list[Episode], val: list[Episode], saved: dict | None
    ) -> None:
        """The method in the world model it trains in, with the expert's latents: the training
        episodes' and the held-out ones' (for diagnostics). `saved`: a resumed run's config.json."""
        config = self.config
        if self.world_model_path is None:
            raise DittoError(
                f"--algo {config.algo} trains inside a world model: pass --world-model RUN"
            )
        # A run from before these were recorded takes the model's now as its own.
        world = load_agent_world_model(self.world_model_path, saved, str(self.device))
        self.world_model_step, self.world_model_digest = world.step, world.digest
        model = world.model.requires_grad_(False)
        model.spec.check_compatible(self.spec, f"expert data {self.expert_data}")
        with self.autocast():
            horizon, actor_z = config.horizon, config.actor_z
            expert = ExpertLatents.from_episodes(model, train, horizon, self.device, actor_z)
            self.validation = ExpertLatents.from_episodes(model, val, horizon, self.device, actor_z)
        self.algo = method.algorithm(model, expert, config)

    # ----- persistence -------------------------------------------------------------------------
    def run_config(self) -> dict:
        return {
            "kind": "agent",
            "agent": self.config.to_json(),
            "world_model": self.world_model_path,
            "world_model_step": self.world_model_step,
            "world_model_digest": self.world_model_digest,
            "expert_data": self.expert_data,
            "expert_return": self.expert_return,
            "env": self.spec.to_json(),
            "val_on_train": self.val_on_train,
        }

    @property
    def deployed(self) -> nn.Module:
        """The policy that snapshots hold and diagnostics measure: the trained one or its average."""
        return self.policy if self.average is None else self.average.module

    def _stateful(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        averaged = {} if self.average is None else {"policy_average": self.average}
        return {**self.algo.stateful(), **averaged}

    def save(self) -> None:
        meta = {"step": self.step, "generator": self.generator.get_state().tolist()}
        save_checkpoint(
            self.out / CHECKPOINT,
            self._stateful(),
            tensors=rng_tensors(self.device),
            meta=meta,
            record_in=self.out / CONFIG,
        )

    def save_snapshot(self) -> None:
        """The deployed policy alone, for evaluation; only the newest keep_checkpoints snapshots stay."""
        folder = self.out / SNAPSHOTS
        save_checkpoint(
            folder / f"step_{self.step:08d}.safetensors",
            {"policy": self.deployed},
            meta={"step": self.step},
            record_in=self.out / CONFIG,
        )
        for old in sorted(folder.glob("step_*.safetensors"))[: -self.config.keep_checkpoints]:
            remove_recorded(old, self.out / CONFIG)

    def save_checkpoint(self) -> None:
        self.save_snapshot()
        self.save()

    def load(self) -> None:
        checkpoint = load_checkpoint(self.out / CHECKPOINT)
        for name, obj in self._stateful().items():
            checkpoint.restore(name, obj)
        self.step = int(checkpoint.meta["step"])
        self.generator.set_state(torch.tensor(checkpoint.meta["generator"], dtype=torch.uint8))
        restore_rng(checkpoint, self.device)

    # ----- training ----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        with self.autocast():
            metrics = self.algo.update(self.step, self.generator)
        if self.average is not None:
            self.average.update_parameters(self.policy)
        return metrics

    def divergence(self, metrics: dict[str, float]) -> str | None:
        return None if all(math.isfinite(v) for v in metrics.values()) else str(metrics)

    def log_step(self, metrics: dict[str, float], speed: float, bar) -> None:
        with self.autocast(), fork_rng(self.device):
            metrics.update(self.algo.diagnostics(self.validation, self.deployed))
        self.log.write({"step": self.step, **metrics, "charts/updates_per_second": speed})
        shown = {k.split("/")[-1]: f"{v:.3f}" for k, v in metrics.items() if k.startswith("val/")}
        bar.set_postfix(shown)

    def train(self) -> AgentRun:
        self.run_loop()
        return AgentRun(self.out, self.step)


def load_agent_world_model(path: str | Path, agent: dict | None, device: str) -> WorldModelRun:
    """The world model an agent trains or acts in. `agent` is the agent run's config.json (None
    for a new agent); a world model that has changed since the agent was trained in it (trained
    on, or trained again) is refused: the agent would act on features it never saw. Runs from
    before the step and the digest were recorded are not checked for them."""
    if agent is not None and not Path(path).is_dir():
        raise DittoError(
            f"the world model the agent was trained in is not at {path}; keep the two together "
            "(config.json records it relative to the agent; older runs, to where they were trained)"
        )
    run = load_world_model(path, device)
    agent = agent or {}
    trained_at, digest = agent.get("world_model_step"), agent.get("world_model_digest")
    if trained_at is not None and run.step != trained_at:
        raise DittoError(
            f"the world model {path} is at step {run.step}, but the agent was trained in it at step "
            f"{trained_at}; its features have changed since, so train a new agent in it"
        )
    if digest is not None and run.digest != digest:
        raise DittoError(
            f"the world model {path} has other weights than the one the agent was trained in "
            "(was it trained again?); its features differ, so train a new agent in it"
        )
    return run


def train_agent(
    config: AgentConfig,
    expert_data: str | os.PathLike,
    out: str | os.PathLike,
    world_model: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> AgentRun:
    """Train (or, with resume=True, continue) an agent; see AgentTrainer. A second process
    given the same `out` meanwhile is refused."""
    with writer_lock(out):
        return AgentTrainer(config, expert_data, out, world_model, device, resume, progress).train()
