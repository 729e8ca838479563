"""Typed configs with named presets, one place for every hyperparameter.

    config = world_model_config("small", steps=2000)   # a preset, with overrides

Presets: `debug` (tiny; every test uses it; seconds on CPU), `small` (trains
usefully on a 2-core CPU in minutes), `paper` (the paper's sizes and batch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class WorldModelConfig:
    # Architecture (DreamerV2 as used by DITTO; see ../shared/method.md).
    cnn_depth: int = 48  # encoder channels depth * (1, 2, 4, 8); decoder mirrors them
    deter: int = 1024  # GRU state h
    hidden: int = 1000  # width of the MLPs around the GRU
    stoch: int = 32  # categorical variables in z
    classes: int = 32  # classes per variable
    # Loss: image_scale * image NLL + kl_scale * [balance * KL(sg(q)||p) + (1 - balance) * KL(q||sg(p))]
    image_scale: float = 2.0
    kl_scale: float = 0.1
    kl_balance: float = 0.8
    free_nats: float = 0.0
    # Optimisation.
    lr: float = 3e-4
    eps: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 200.0
    batch: int = 50
    length: int = 50
    steps: int = 100_000
    carry_state: bool = True  # truncated BPTT: carry h, z across consecutive chunks of an episode
    # Speed.
    precision: str = "auto"  # auto | bf16 | fp32: auto = bf16 autocast where the hardware has fast bf16
    compile: bool = False  # torch.compile the training step
    # Logging, validation, checkpoints (in training steps).
    log_every: int = 50
    eval_every: int = 1000
    checkpoint_every: int = 1000
    val_episodes: float = 0.1  # fraction of episodes held out for validation (at least one)
    open_loop_context: int = 5  # validation: posterior on this many frames, then prior only
    open_loop_horizon: int = 15
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown world-model config keys: {sorted(unknown)}")
        return cls(**data)


WORLD_MODEL_PRESETS: dict[str, WorldModelConfig] = {
    "debug": WorldModelConfig(
        cnn_depth=4,
        deter=32,
        hidden=32,
        stoch=4,
        classes=4,
        batch=4,
        length=8,
        steps=20,
        precision="fp32",  # on CPU, bf16 autocast is slower than fp32 for a model this small
        log_every=5,
        eval_every=10,
        checkpoint_every=10,
        open_loop_context=2,
        open_loop_horizon=3,
    ),
    "small": WorldModelConfig(
        cnn_depth=16,
        deter=256,
        hidden=256,
        stoch=16,
        classes=16,
        batch=16,
        length=32,
        steps=3000,
        log_every=50,
        eval_every=500,
        checkpoint_every=500,
    ),
    "paper": WorldModelConfig(),
}


def world_model_config(preset: str = "small", **overrides: Any) -> WorldModelConfig:
    """The named preset with `overrides` applied (None values are ignored)."""
    if preset not in WORLD_MODEL_PRESETS:
        raise ValueError(
            f"unknown preset {preset!r}; choose one of {', '.join(WORLD_MODEL_PRESETS)}"
        )
    return replace(
        WORLD_MODEL_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}
    )
