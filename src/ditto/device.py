"""Devices and precision: the one place that decides where and in what precision tensors run."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ditto.config import PRECISIONS
from ditto.errors import DittoError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DittoError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DittoError(
            f"--device {device!r} is not a device; use cpu, cuda, cuda:N or auto"
        ) from None
    if resolved.type == "cuda" and (resolved.index or 0) >= (count := torch.cuda.device_count()):
        raise DittoError(
            f"--device {device}: this machine has {count} CUDA device(s); use cuda:0 to cuda:{count - 1}"
        )
    return resolved


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX).

    Without it (e.g. AVX2-only CPUs), PyTorch falls back to slow reference
    kernels: measured on an AVX2 EPYC, a bf16 matmul ran 100x slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    """Resolve a precision setting: auto = bf16 autocast where the chip computes in bf16
    natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise DittoError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.cuda.get_device_capability(device) >= (8, 0)
        return device.type == "cpu" and cpu_has_native_bf16()
    return precision == "bf16"
