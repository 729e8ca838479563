"""Offline training of the world model on one or more episode datasets.

    run = train_world_model(["data/expert", "data/noisy"], "runs/wm", world_model_config("small"))

Run directory:
    config.json        resolved config, data, env spec, versions
    metrics.jsonl      one JSON object per log / validation step
    events.*           TensorBoard
    checkpoint.safetensors   latest state (weights, optimizer, step, RNG, sampler, carried state)
    diagnostics/       real vs reconstruction vs open-loop imagination (PNG grid, GIF)

Under torchrun (`torchrun --nproc-per-node N -m ditto train-world-model ...`), N processes
train one model with DistributedDataParallel: rank r trains on rows r*B/N.. of the batch-B
chunk stream (ChunkSampler's shard), the gradients are averaged, and rank 0 alone writes the
run directory; the checkpoint holds the whole batch's state, so every rank resumes from it.
See docs/scaling.md.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ditto import distributed
from ditto.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ditto.config import WorldModelConfig
from ditto.data import ChunkSampler, Episode, WindowBatch, WindowSampler, open_datasets
from ditto.device import resolve_device
from ditto.distributed import Ranks
from ditto.errors import ConfigError
from ditto.io import writer_lock
from ditto.runs import CHECKPOINT, CONFIG, fork_rng, read_config, restore_rng, rng_tensors
from ditto.specs import EnvSpec
from ditto.training import TrainingLoop, run_precision, start_or_resume
from ditto.world_model.diagnostics import save_gif, save_grid
from ditto.world_model.model import WorldModel, to_uint8
from ditto.world_model.networks import frames_to_input
from ditto.world_model.rssm import State, detach_state


def split_episodes(num_episodes: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out a fraction of whole episodes (at least one, if there are two or more)."""
    order = np.random.default_rng(seed).permutation(num_episodes)
    held_out = 0 if num_episodes < 2 else max(1, round(fraction * num_episodes))
    return sorted(order[held_out:].tolist()), sorted(order[:held_out].tolist())


def episode_weights(
    dataset_of: list[int], lengths: list[int], data_weights: tuple[float, ...], data: list[str]
) -> list[float] | None:
    """Draw probabilities of the training episodes that give dataset d the share data_weights[d]
    of the training frames (None: uniform over episodes, so every frame equally likely).

    The chunk sampler plays each drawn episode to its end, so an episode's share of the frames is
    its draw probability times its length; dividing a dataset's weight by its frame count makes
    the shares come out as asked."""
    if not data_weights:
        return None
    if len(data_weights) != len(data):
        raise ConfigError(
            f"data_weights has {len(data_weights)} entries for {len(data)} datasets; give one per dataset"
        )
    frames = np.bincount(dataset_of, weights=lengths, minlength=len(data))
    empty = [data[d] for d in range(len(data)) if frames[d] == 0 and data_weights[d] > 0]
    if empty:
        raise ConfigError(
            f"{empty[0]} has no training episodes (all held out); give it weight 0 or more episodes"
        )
    return [data_weights[d] / frames[d] if data_weights[d] else 0.0 for d in dataset_of]


def batch_to_torch(
    batch: WindowBatch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(batch.frames).to(device, non_blocking=True),
        torch.from_numpy(batch.actions).to(device, non_blocking=True),
        torch.from_numpy(batch.is_first).to(device, non_blocking=True),
    )


@dataclass
class WorldModelRun:
    """A trained world model and its run directory."""

    path: Path
    model: WorldModel
    step: int

    def __fspath__(self) -> str:  # the run stands for its directory wherever a path is expected
        return str(self.path)

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the weights: equal exactly when the model computes the same features
        (computed once: a run's weights are those it was loaded or trained with)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        return digest.hexdigest()


def load_world_model(run: str | os.PathLike, device: str = "cpu") -> WorldModelRun:
    """The world model of a run directory (its latest checkpoint), in eval mode."""
    run = Path(run)
    saved = read_config(run, "world_model")
    model = WorldModel(
        EnvSpec.from_json(saved["env"]), WorldModelConfig.from_json(saved["world_model"])
    )
    checkpoint = load_checkpoint(run / CHECKPOINT)
    checkpoint.restore("model", model)
    model.to(resolve_device(device)).eval()
    return WorldModelRun(run, model, int(checkpoint.meta["step"]))


class WorldModelTrainer(TrainingLoop):
    label, subject = "world model", "the world model"
    advice = ". Try a lower learning rate or --precision fp32"

    def __init__(
        self,
        data: str | os.PathLike | Iterable[str | os.PathLike],
        out: str | os.PathLike,
        config: WorldModelConfig,
        device: str = "auto",
        resume: bool = False,
        progress: bool = True,
        ranks: Ranks | None = None,
    ):
        """`ranks`: this process's place in a data-parallel run (default: from torchrun's
        environment variables; a plain process without them)."""
        self.ranks = distributed.from_env() if ranks is None else ranks
        self.out, self.progress = Path(out), progress and self.ranks.is_main
        if isinstance(data, str | os.PathLike):  # one dataset (a Dataset is a path too)
            data = [data]
        data = [os.fspath(d) for d in data]
        self.device = distributed.rank_device(device, self.ranks)
        inputs = {"--data": ("data", list(data))}
        config, saved = start_or_resume(
            self.out, "world_model", resume, config, WorldModelConfig.from_json, inputs
        )
        data = data if saved is None else saved["data"]
        distributed.per_rank_batch(config.batch, self.ranks)  # before the ranks wait on each other
        self.config, self.data = config, data
        self.bf16 = run_precision(config, self.device, saved)
        weights = self._load_data()

        torch.manual_seed(config.seed)
        self.model = WorldModel(self.spec, config).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, eps=config.eps, weight_decay=config.weight_decay
        )
        shard = (self.ranks.rank, self.ranks.world)
        self.sampler = ChunkSampler(
            self.train_episodes, self.spec, config.batch, config.length, config.seed, weights, shard
        )
        self.carry: State | None = None
        self.step = 0
        self.resume_state(saved)
        self._parallel = self._join_ranks(saved is not None)
        self.open_log(saved)
        self._step_fn = torch.compile(self._train_step) if config.compile else self._train_step

    def _load_data(self) -> list[float] | None:
        """The datasets' episodes, split into training and held-out ones; returns the training
        episodes' draw weights (episode_weights)."""
        datasets = open_datasets(self.data)
        self.spec = datasets[0].spec
        episodes: list[Episode] = [episode for dataset in datasets for episode in dataset]
        dataset_of = [d for d, dataset in enumerate(datasets) for _ in dataset]
        train_ids, val_ids = split_episodes(
            len(episodes), self.config.val_episodes, self.config.seed
        )
        self.train_episodes = [episodes[i] for i in train_ids]
        self.val_episodes = [episodes[i] for i in val_ids]
        return episode_weights(
            [dataset_of[i] for i in train_ids],
            [len(episode.observations) for episode in self.train_episodes],
            self.config.data_weights,
            self.data,
        )

    def _join_ranks(self, resuming: bool):
        """Under torchrun (once the ranks have met and agreed on what they loaded), the
        model's loss whose backward averages the gradients over the ranks; else None."""
        if not self.ranks.active:
            return None
        distributed.join(self.ranks, self.device)
        found = {"resuming": resuming, "step": self.step, "episodes": len(self.train_episodes)}
        distributed.check_same(self.ranks, "runs or data", found)
        if not resuming:  # the same initial weights everywhere, then noise of each rank's own
            torch.manual_seed(distributed.rank_seed(self.config.seed, self.ranks))
        return distributed.data_parallel(self.model, "loss", self.device)

    # ----- persistence -------------------------------------------------------------------------
    def open_log(self, saved: dict | None) -> None:
        """Rank 0 writes the run directory; another rank's log writes nothing."""
        if self.ranks.is_main:
            super().open_log(saved)
        else:
            self.log = _NoLog()

    def run_config(self) -> dict:
        return {
            "kind": "world_model",
            "world_model": self.config.to_json(),
            "data": self.data,
            "env": self.spec.to_json(),
            "train_episodes": len(self.train_episodes),
            "val_episodes": len(self.val_episodes),
            **({"world_size": self.ranks.world} if self.ranks.active else {}),
        }

    def save(self) -> None:
        """Write the checkpoint (under torchrun: every rank takes part, rank 0 writes)."""
        tensors = rng_tensors(self.device)
        meta = {"step": self.step, "sampler": self.sampler.state_dict()}
        if self.ranks.active:  # each rank's RNG, for an exact resume on as many ranks
            meta["world_size"] = self.ranks.world
            for rank, states in enumerate(distributed.gather_objects(tensors, self.ranks)):
                tensors.update({f"rank{rank}/{k}": v for k, v in states.items()})
        if self.carry is not None:  # the whole batch's rows, whichever rank trained them
            carry = self.carry._asdict()
            tensors.update(
                {f"carry/{k}": distributed.gather_rows(v, self.ranks) for k, v in carry.items()}
            )
        if not self.ranks.is_main:
            return
        save_checkpoint(
            self.out / CHECKPOINT,
            {"model": self.model, "optim": self.optimizer},
            tensors=tensors,
            meta=meta,
            record_in=self.out / CONFIG,
        )

    def save_on_interrupt(self) -> None:
        # Under torchrun, saving would wait on ranks that the interrupt may have stopped
        # anywhere: the last periodic checkpoint is what a resume starts from.
        if not self.ranks.active:
            self.save()

    def load(self) -> None:
        checkpoint = load_checkpoint(self.out / CHECKPOINT)
        checkpoint.restore("model", self.model)
        checkpoint.restore("optim", self.optimizer)
        for group in self.optimizer.param_groups:  # the run's config.json, if edited, sets the lr
            group["lr"] = self.config.lr
        self.step = int(checkpoint.meta["step"])
        self.sampler.load_state_dict(checkpoint.meta["sampler"])
        self._restore_rng(checkpoint)
        if checkpoint.has_tensor("carry/deter"):
            rows = slice(self.sampler.rows.start, self.sampler.rows.stop)  # this rank's rows
            self.carry = State(
                *(checkpoint.tensor(f"carry/{k}")[rows].to(self.device) for k in State._fields)
            )

    def _restore_rng(self, checkpoint: Checkpoint) -> None:
        """The RNG as it was, on this rank; a run resumed on another number of ranks than
        saved it continues with new streams (still one per rank, from the seed and step)."""
        if not self.ranks.active:
            restore_rng(checkpoint, self.device)
        elif checkpoint.meta.get("world_size") == self.ranks.world:
            torch.set_rng_state(checkpoint.tensor(f"rank{self.ranks.rank}/rng/torch"))
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(
                    checkpoint.tensor(f"rank{self.ranks.rank}/rng/cuda"), self.device
                )
        else:
            torch.manual_seed(distributed.rank_seed(self.config.seed, self.ranks, self.step))

    # ----- training ----------------------------------------------------------------------------
    def _train_step(self, frames, actions, is_first, carry):
        with self.autocast():
            loss_of = self.model.loss if self._parallel is None else self._parallel
            loss, metrics, last = loss_of(frames, actions, is_first, carry)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {k: v.detach() for k, v in metrics.items()}, grad_norm, last

    def train_step(self) -> dict:
        frames, actions, is_first = batch_to_torch(self.sampler.sample(), self.device)
        metrics, grad_norm, last = self._step_fn(frames, actions, is_first, self.carry)
        # The global batch's loss: every rank then takes the same decisions (the loop's).
        metrics = distributed.mean(metrics, self.ranks)
        # The gradient's norm is checked too: under a finite loss, a NaN gradient has already
        # made the weights NaN, and this step may be one that saves a checkpoint.
        loss, grad_norm = torch.stack([metrics["loss"].float(), grad_norm.float()]).tolist()
        self.carry = detach_state(last) if self.config.carry_state else None
        return {**metrics, "loss": loss, "grad_norm": grad_norm}

    def divergence(self, metrics: dict) -> str | None:
        loss, grad_norm = metrics["loss"], metrics["grad_norm"]
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return None
        return f"loss {loss}, gradient norm {grad_norm}"

    def train(self) -> WorldModelRun:
        self.model.train()
        self.run_loop()
        distributed.barrier(self.ranks)  # no rank returns before rank 0 has saved the run
        return WorldModelRun(self.out, self.model, self.step)

    def between_steps(self) -> None:
        # Validation only writes (metrics, diagnostics): rank 0's alone, meanwhile the others
        # wait at the next step's gradient average.
        if self.due(self.config.eval_every) and self.ranks.is_main:
            self.log.write({"step": self.step, **self.validate()})

    def log_step(self, metrics: dict, speed: float, bar) -> None:
        record = {
            "step": self.step,
            "losses/world_model/loss": metrics["loss"],
            "losses/world_model/image_nll": float(metrics["image_nll"]),
            "losses/world_model/kl": float(metrics["kl"]),
            "losses/world_model/grad_norm": metrics["grad_norm"],
            "charts/steps_per_second": speed,
        }
        self.log.write(record)
        bar.set_postfix(
            loss=f"{metrics['loss']:.1f}",
            kl=f"{record['losses/world_model/kl']:.2f}",
            sps=f"{speed:.2f}",
        )

    # ----- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, sequences: int = 16, pictures: int = 4) -> dict[str, float]:
        """Reconstruction and open-loop prediction error on held-out episodes, vs copying the last frame.

        Errors are mean squared errors per pixel in [0, 1] units; also writes the diagnostics.
        """
        cfg = self.config
        episodes = (
            self.val_episodes or self.train_episodes
        )  # a one-episode dataset validates on itself
        # Filter as much of the context as the held-out episodes allow: a short filter from a
        # zero state cannot recover slow facts that training keeps in h (Pong's score, paddles).
        horizon = cfg.open_loop_horizon
        longest = max(len(episode.observations) for episode in episodes)
        context = min(cfg.open_loop_context, longest - horizon)
        if context < 1:
            return {}  # no held-out episode is long enough for an open-loop window
        sampler = WindowSampler(episodes, self.spec, context + horizon, seed=cfg.seed)
        self.model.eval()
        frames, actions, is_first = batch_to_torch(sampler.sample(sequences), self.device)
        # Validation draws latent samples; fork the RNG so training continues as if it had not run
        # (a resumed run then matches an uninterrupted one whatever the validation schedule).
        with fork_rng(self.device), self.autocast():
            posts, _ = self.model.observe(frames, actions, is_first)
            recon = self.model.decode(self.model.features(posts)).float()
            kl = self.model.kl(posts)
            context_recon, predictions = self.model.open_loop(frames, actions, is_first, context)
        self.model.train()
        target = frames_to_input(frames)
        open_loop_error, copy_last_error = open_loop_curves(predictions, frames, context)
        metrics = {
            "val/recon_mse": float((recon - target).square().mean()),
            "val/kl": float(kl),
            "val/open_loop_mse": float(open_loop_error.mean()),
            "val/copy_last_mse": float(copy_last_error.mean()),
            "val/open_loop_context": context,
        }
        for k in (1, 5, 10, 15):
            if k <= horizon:
                metrics[f"val/open_loop_mse_k{k}"] = float(open_loop_error[k - 1])
                metrics[f"val/copy_last_mse_k{k}"] = float(copy_last_error[k - 1])
        real_frames, model_frames, shown = open_loop_strips(
            frames, context_recon, predictions, context
        )
        save_grid(
            self.out / "diagnostics" / "open_loop.png",
            real_frames[:pictures],
            model_frames[:pictures],
            shown,
        )
        save_gif(
            self.out / "diagnostics" / "open_loop.gif",
            real_frames[:pictures],
            model_frames[:pictures],
            shown,
        )
        return metrics


def open_loop_curves(
    predictions: torch.Tensor, frames: torch.Tensor, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE per pixel ([0, 1] units) k = 1..H steps ahead: the open-loop predictions of
    `WorldModel.open_loop`, and copying the last context frame (the baseline they must beat)."""
    target = frames_to_input(frames)
    future = target[:, context:]
    open_loop = (predictions.float() - future).square().mean((0, 2, 3, 4))
    copy_last = (target[:, context - 1 : context] - future).square().mean((0, 2, 3, 4))
    return open_loop, copy_last


def open_loop_strips(
    frames: torch.Tensor,
    context_recon: torch.Tensor,
    predictions: torch.Tensor,
    context: int,
    shown: int = 5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """What the diagnostics draw: the last `shown` (at most) context frames, then the open-loop
    ones; real and model frames as uint8 arrays, and how many context frames lead them."""
    shown = min(context, shown)
    real = frames[:, context - shown :].cpu().numpy()
    model = torch.cat([context_recon[:, context - shown :].float(), predictions.float()], 1)
    return real, to_uint8(model).cpu().numpy(), shown


class _NoLog:
    """The metrics log of a rank other than 0, which writes nothing to the run directory."""

    def write(self, record: dict) -> None:
        pass

    def flush(self) -> None:
        pass


def train_world_model(
    data: str | os.PathLike | Iterable[str | os.PathLike],
    out: str | os.PathLike,
    config: WorldModelConfig,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> WorldModelRun:
    """Train (or, with resume=True, continue) a world model; see WorldModelTrainer. A second
    process given the same `out` meanwhile is refused. Under torchrun, this process trains as
    its rank (see the module's docstring); rank 0 holds `out` for the ranks."""
    ranks = distributed.from_env()
    with writer_lock(out) if ranks.is_main else nullcontext(), distributed.session():
        return WorldModelTrainer(data, out, config, device, resume, progress, ranks).train()
