"""Data-parallel training under torchrun: which rank this process is, and the few collectives
the world-model trainer needs.

    torchrun --nproc-per-node 2 -m ditto train-world-model --data D --out RUN

torchrun starts one process per rank and sets WORLD_SIZE, RANK and LOCAL_RANK (and
MASTER_ADDR / MASTER_PORT, where the ranks meet). A process without them, or with
WORLD_SIZE=1, is one plain process: `Ranks()`, for which every function here does nothing,
so that a single-process run is exactly what it was before torchrun was supported.

The ranks meet (`join`) only once the run's settings are known and checked, so that a
setting every rank refuses (a batch that does not split) ends each of them with the same
one-line error instead of leaving them waiting for each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ditto.device import resolve_device
from ditto.errors import ConfigError, DittoError


@dataclass(frozen=True)
class Ranks:
    """This process's place among `world` data-parallel processes (1: a plain process)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0  # its index on its own machine: which GPU it takes

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory."""
        return self.rank == 0


def from_env(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The ranks torchrun's environment variables describe (`Ranks()` without them)."""
    if "WORLD_SIZE" not in environ:
        return Ranks()
    try:
        ranks = Ranks(
            int(environ["WORLD_SIZE"]),
            int(environ.get("RANK", "0")),
            int(environ.get("LOCAL_RANK", "0")),
        )
    except ValueError:
        raise DittoError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them); got "
            + ", ".join(f"{k}={environ.get(k)!r}" for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
        ) from None
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world or ranks.local_rank < 0:
        raise DittoError(
            f"RANK {ranks.rank} is not one of WORLD_SIZE {ranks.world} ranks (torchrun sets "
            "both); unset them to run one process"
        )
    return ranks


def rank_device(device: str, ranks: Ranks) -> torch.device:
    """The device of this rank: under torchrun, `auto` and `cuda` mean the GPU numbered by
    LOCAL_RANK (one GPU per process, as NCCL requires); `cpu` is every rank's CPU."""
    if not ranks.active:
        return resolve_device(device)
    if device.startswith("cuda:"):
        raise DittoError(
            f"--device {device}: under torchrun each rank takes the GPU of its LOCAL_RANK; "
            "give --device cuda (or auto), or cpu"
        )
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return resolve_device(f"cuda:{ranks.local_rank}")
    return resolve_device(device)


def per_rank_batch(batch: int, ranks: Ranks) -> int:
    """The batch each rank trains on: the config's batch is the global one, split evenly."""
    if batch % ranks.world:
        raise ConfigError(
            f"batch {batch} does not split over {ranks.world} ranks (torchrun's WORLD_SIZE); "
            "give a batch divisible by the number of processes"
        )
    return batch // ranks.world


def rank_seed(seed: int, ranks: Ranks, *more: int) -> int:
    """A seed of its own for each rank (and for each of `more`, e.g. a step), derived from
    the run's seed: the ranks' random streams are distinct and reproducible."""
    key = np.random.SeedSequence(seed, spawn_key=(ranks.rank, *more))
    return int(key.generate_state(1, np.uint64)[0])


@contextmanager
def session() -> Iterator[None]:
    """Leave the process group on the way out if `join` made it within (torchrun's processes
    end then anyway; a caller that made its own group keeps it)."""
    made_here = not dist.is_initialized()
    try:
        yield
    finally:
        if made_here and dist.is_initialized():
            dist.destroy_process_group()


def join(ranks: Ranks, device: torch.device) -> None:
    """Meet the other ranks (at MASTER_ADDR:MASTER_PORT): NCCL between GPUs, gloo on CPUs."""
    if not ranks.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives of Python objects use this GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world)


def check_same(ranks: Ranks, what: str, value: Any) -> None:
    """Refuse to train when the ranks disagree on `value` (what each found on disk)."""
    values = gather_objects(value, ranks)
    if any(v != values[0] for v in values):
        raise DittoError(
            f"the ranks found different {what} ({', '.join(map(str, values))}); the data and "
            "the run directory must be on storage that every node sees"
        )


class _Method(nn.Module):
    """A module's method as the forward of a module, for DistributedDataParallel (which
    averages the gradients of what its forward computes)."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.module, self.method)(*args)


def data_parallel(module: nn.Module, method: str, device: torch.device) -> Callable[..., Any]:
    """`module.<method>` whose backward averages the gradients over the ranks. Buffers are
    not broadcast at every step: the module must have none that training changes (the
    world model's one buffer is a constant)."""
    return nn.parallel.DistributedDataParallel(
        _Method(module, method),
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
    )


def mean(values: dict[str, torch.Tensor], ranks: Ranks) -> dict[str, torch.Tensor]:
    """Scalars averaged over the ranks (one collective): the global batch's metrics."""
    if not ranks.active:
        return values
    stacked = torch.stack([v.detach().float() for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, stacked / ranks.world, strict=True))


def gather_rows(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Every rank's `tensor` stacked along dim 0 in rank order (the global batch's rows)."""
    if not ranks.active:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ranks.world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_objects(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's `value`, in rank order."""
    if not ranks.active:
        return [value]
    values = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        dist.barrier()
