"""Pixel BC: behaviour cloning end to end from frames (CNN + MLP), the paper's pixel baseline.

Acts on the current frame (frame_stack=1, the paper) or on the last k frames
stacked along channels; the first frame of an episode is repeated to fill the stack.
With bc_augment, training frames are randomly shifted (DrQ, Kostrikov et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ditto.agents.expert_data import policy_actions
from ditto.agents.networks import Actor, grad_norm
from ditto.agents.registry import Method, register_method
from ditto.config import AgentConfig
from ditto.data import Episode
from ditto.specs import EnvSpec
from ditto.world_model.networks import Encoder


@dataclass(frozen=True)
class BCConfig(AgentConfig):
    algo: str = "bc"
    bc_frame_stack: int = 1  # pixel BC: frames stacked along channels as its input
    bc_cnn_depth: int = 32  # pixel BC: its CNN's channel depth
    # Train on frames shifted by up to 4 px (edges repeated), DrQ's augmentation: it keeps
    # a CNN from memorising pixel positions of a few episodes.
    bc_augment: bool = False

    PRESETS = {"debug": {"bc_cnn_depth": 4}}


class PixelPolicy(nn.Module):
    def __init__(self, spec: EnvSpec, config: BCConfig):
        super().__init__()
        self.frame_stack = config.bc_frame_stack
        self.encoder = Encoder(spec.obs_shape[0] * self.frame_stack, config.bc_cnn_depth)
        self.actor = Actor(self.encoder.out_dim, spec.action, config.layers, config.units)

    @property
    def discrete(self) -> bool:
        return self.actor.discrete

    def forward(self, stacked_frames: torch.Tensor):
        """(B, k * C, 64, 64) uint8 -> action distribution."""
        return self.actor(self.encoder(stacked_frames))


class ExpertFrames:
    """Expert frames on the device with, for each acted frame, the indices of its frame stack."""

    def __init__(
        self, episodes: Sequence[Episode], spec: EnvSpec, frame_stack: int, device: torch.device
    ):
        frames, actions, stacks, offset = [], [], [], 0
        for episode in episodes:
            length = len(episode.observations)
            frames.append(np.asarray(episode.observations))
            actions.append(policy_actions(episode, spec.action.n, spec.action.is_discrete))
            t = np.arange(offset, offset + length - 1)  # frames where the expert acted
            lags = np.arange(frame_stack - 1, -1, -1)
            stacks.append(
                np.maximum(t[:, None] - lags[None], offset)
            )  # oldest first; repeat the first frame
            offset += length
        self.frames = torch.from_numpy(np.concatenate(frames)).to(device)
        self.actions = torch.from_numpy(np.concatenate(actions)).to(device)
        self.stacks = torch.from_numpy(np.concatenate(stacks)).to(device)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked frames (B, k * C, H, W) and expert actions (B, A) of the acted frames `rows`."""
        index = self.stacks[rows]  # (B, k)
        stacked = self.frames[index].flatten(1, 2)
        return stacked, self.actions[index[:, -1]]


SHIFT = 4  # pixels, DrQ's setting for 84x84 frames


def random_shift(frames: torch.Tensor, generator: torch.Generator, pad: int = SHIFT):
    """(B, C, H, W) uint8 frames, each moved by its own random offset in [-pad, pad]^2,
    the edge pixels repeated into the gap."""
    b, c, h, w = frames.shape
    padded = F.pad(frames.float(), (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(frames.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=frames.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=frames.device))[:, None, None, :]
    batch = torch.arange(b, device=frames.device)[:, None, None, None]
    channel = torch.arange(c, device=frames.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].to(frames.dtype)


class PixelBC:
    def __init__(
        self, episodes: Sequence[Episode], spec: EnvSpec, config: BCConfig, device: torch.device
    ):
        self.config, self.spec, self.device = config, spec, device
        self.data = self.expert_frames(episodes)
        self.policy = self.deployed_policy(config, spec).to(device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)

    @classmethod
    def deployed_policy(cls, config: BCConfig, spec: EnvSpec) -> PixelPolicy:
        """An untrained policy of the shape the snapshots hold, for evaluation to load them into."""
        return PixelPolicy(spec, config)

    def expert_frames(self, episodes: Sequence[Episode]) -> ExpertFrames:
        """`episodes` as this policy reads them: its training data, or the held-out frames
        that diagnostics() measures it on."""
        return ExpertFrames(episodes, self.spec, self.config.bc_frame_stack, self.device)

    def stateful(self):
        return {"policy": self.policy, "policy_optim": self.optimizer}

    def update(self, step: int, generator: torch.Generator) -> dict[str, float]:
        rows = torch.randint(len(self.data.stacks), (self.config.batch,), generator=generator)
        frames, actions = self.data.batch(rows.to(self.data.stacks.device))
        if self.config.bc_augment:
            frames = random_shift(frames, generator)
        loss = -self.policy(frames).log_prob(actions).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm(self.policy)
        self.optimizer.step()
        return {"losses/actor": loss.item(), "charts/actor_grad_norm": norm.item()}

    @torch.no_grad()
    def diagnostics(
        self, validation: ExpertFrames, policy: PixelPolicy, samples: int = 256
    ) -> dict[str, float]:
        """How often `policy` (the deployed one) takes the expert's action on held-out frames."""
        rows = torch.randint(
            len(validation.stacks), (samples,), generator=torch.Generator().manual_seed(0)
        )
        frames, actions = validation.batch(rows.to(validation.stacks.device))
        predicted = policy(frames).mode()
        if policy.discrete:
            return {
                "val/action_accuracy": float(
                    (predicted.argmax(-1) == actions.argmax(-1)).float().mean()
                )
            }
        return {"val/action_mse": float((predicted - actions).square().mean())}


register_method(Method(BCConfig, PixelBC, label="BC", color="tab:red", world_model=False))
