"""Agent update speed: one DITTO update (rollout + reward + actor-critic losses + optimisers).

    ditto bench imagination --preset debug small paper --device cpu

Each preset pairs the world-model and agent presets of the same name, at batch
512 x horizon 15 unless overridden. The expert latents are synthetic (random
states of the model): speed does not depend on their values, but with
`reward_match="nearest"` it does depend on their number (every imagined state
is compared with all of them; N_E expert episodes of length T give N_E x T).
All modes run in
one process so their ratios are comparable; medians over timed updates, with
each update's FLOPs and the rate achieved.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ditto.agents.ditto import Ditto
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.registry import agent_config
from ditto.config import world_model_config
from ditto.envs import env_spec
from ditto.world_model.bench import (
    MODES,
    _device_name,
    check_modes,
    compiled,
    count_flops,
    time_calls,
)
from ditto.world_model.model import WorldModel

_EPISODE_LENGTH = 200  # of the synthetic expert episodes


def synthetic_latents(
    model: WorldModel, episodes: int, length: int, horizon: int, device: torch.device
) -> ExpertLatents:
    cfg = model.config
    count = episodes * length
    deter = torch.randn(count, cfg.deter, device=device)
    stoch = (
        F.one_hot(torch.randint(cfg.classes, (count, cfg.stoch), device=device), cfg.classes)
        .flatten(1)
        .float()
    )
    offsets = torch.arange(episodes, device=device)[:, None] * length
    starts = (offsets + torch.arange(length - horizon, device=device)).flatten()
    acted = (offsets + torch.arange(length - 1, device=device)).flatten()
    actions = F.one_hot(
        torch.randint(model.spec.action.n, (count,), device=device), model.spec.action.n
    ).float()
    return ExpertLatents(torch.cat([deter, stoch], -1), actions, starts, acted, horizon, episodes)


def bench_imagination(
    presets: list[str],
    modes: list[str],
    device: torch.device,
    env_id: str = "ALE/Pong-v5",
    batch: int = 512,
    horizon: int = 15,
    steps: int = 5,
    warmup: int = 2,
    reward_match: str = "time",
    expert_latents: int = 1600,
) -> Iterator[dict]:
    """One result per preset x mode; speedups are against the first mode."""
    check_modes(modes, device)
    for preset in presets:
        baseline = None
        for mode in modes:
            bf16, compile_mode = MODES[mode]
            torch.manual_seed(0)
            model = (
                WorldModel(env_spec(env_id), world_model_config(preset))
                .to(device)
                .requires_grad_(False)
            )
            config = agent_config(preset, batch=batch, horizon=horizon, reward_match=reward_match)
            episodes = max(1, expert_latents // _EPISODE_LENGTH)
            expert = synthetic_latents(model, episodes, _EPISODE_LENGTH, horizon, device)
            algo = Ditto(model, expert, config)
            flops = count_flops(lambda algo=algo: algo.update(0, torch.Generator().manual_seed(0)))
            if compile_mode:
                model.rssm.img_step = compiled(model.rssm.img_step, compile_mode)
                algo.actor.forward = torch.compile(algo.actor.forward, mode=compile_mode)
            generator = torch.Generator().manual_seed(0)

            def update(step: int, algo=algo, bf16=bf16, generator=generator) -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    algo.update(step, generator)

            warmup_s, median = time_calls(update, device, steps, warmup)
            baseline = baseline or median
            yield {
                "preset": preset,
                "mode": mode,
                "device": _device_name(device),
                "batch": batch,
                "horizon": horizon,
                "reward_match": reward_match,
                "expert_latents": expert.features.shape[0],
                "update_s": median,
                "updates_per_s": 1.0 / median,
                "speedup_vs_first_mode": baseline / median,
                "warmup_s": warmup_s,
                "gflop_per_update": flops / 1e9,
                "tflops_per_s": flops / median / 1e12,
            }
