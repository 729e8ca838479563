"""A GIF of one episode of a trained agent in the real environment, as the agent saw it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ditto.agents.registry import config_from_json
from ditto.checkpoint import load_checkpoint
from ditto.device import resolve_device
from ditto.envs import make_env
from ditto.evaluation.protocol import agent_loader, policy_snapshots
from ditto.io import atomic_write_bytes
from ditto.runs import read_config
from ditto.specs import EnvSpec


def record_episode(
    run: Path,
    out_gif: Path,
    *,
    seed: int = 0,
    max_steps: int = 500,
    scale: int = 3,
    greedy: bool | None = None,
    device: str = "auto",
) -> float:
    """Play one episode (at most max_steps) with the run's newest policy snapshot, write the
    frames the agent saw (upscaled `scale` times) to `out_gif`, and return the episode return."""
    run = Path(run)
    saved = read_config(run, "agent")
    spec = EnvSpec.from_json(saved["env"])
    greedy = config_from_json(saved["agent"]).greedy if greedy is None else greedy
    newest = policy_snapshots(run)[-1]
    agent = agent_loader(saved, resolve_device(device), greedy)(load_checkpoint(newest))
    torch.manual_seed(seed)  # the policy samples actions (and latents)
    frames, total = _play(agent, spec, seed, max_steps)
    _write_gif(out_gif, frames, scale)
    return total


def _play(agent, spec: EnvSpec, seed: int, max_steps: int) -> tuple[list[np.ndarray], float]:
    """The frames (C, H, W) of one episode, first to last, and its return."""
    env = make_env(spec.env_id, size=spec.obs_shape[1], grayscale=spec.obs_shape[0] == 1)
    try:
        frame, _ = env.reset(seed=seed)
        frames, total, is_first = [frame], 0.0, True
        for _ in range(max_steps):
            # The agent acts on batches (N envs); this is a batch of one.
            action = agent.act(frame[None], np.array([is_first]))[0]
            frame, reward, terminated, truncated, _ = env.step(action)
            frames.append(frame)
            total += float(reward)
            is_first = False
            if terminated or truncated:
                break
    finally:
        env.close()
    return frames, total


def _write_gif(path: Path, frames: list[np.ndarray], scale: int) -> None:
    images = []
    for frame in frames:
        rgb = np.moveaxis(frame, 0, -1)
        if rgb.shape[-1] == 1:
            rgb = np.repeat(rgb, 3, -1)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        images.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=50, loop=0
    )
    atomic_write_bytes(Path(path), buffer.getvalue())
