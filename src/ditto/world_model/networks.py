"""Encoder and decoder of 64x64 frames (DreamerV2's convolutional stacks)."""

from __future__ import annotations

import torch
from torch import nn


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [-0.5, 0.5]: the one place pixels are scaled for the networks."""
    return frames.float() / 255.0 - 0.5


class Encoder(nn.Module):
    """4 convs (kernel 4, stride 2, ELU), channels depth x (1, 2, 4, 8): a 64x64 frame -> 32*depth."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = channels
        for i in range(4):
            layers += [nn.Conv2d(in_channels, depth * 2**i, 4, stride=2), nn.ELU()]
            in_channels = depth * 2**i
        self.net = nn.Sequential(*layers, nn.Flatten()).to(memory_format=torch.channels_last)
        self.out_dim = depth * 8 * 2 * 2

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., C, 64, 64) uint8 -> (..., 32 * depth)."""
        lead = frames.shape[:-3]
        x = frames_to_input(frames.reshape(-1, *frames.shape[-3:]))
        # Channels-last convolutions are 20-40% faster on CPU (oneDNN) and on GPU (tensor cores).
        x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).reshape(*lead, self.out_dim)


class Decoder(nn.Module):
    """Linear -> 4 transposed convs (kernels 5, 5, 6, 6, stride 2): features -> 64x64 frame mean."""

    def __init__(self, feature_dim: int, channels: int, depth: int):
        super().__init__()
        self.depth = depth
        self.linear = nn.Linear(feature_dim, 32 * depth)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(32 * depth, 4 * depth, 5, stride=2),
            nn.ELU(),
            nn.ConvTranspose2d(4 * depth, 2 * depth, 5, stride=2),
            nn.ELU(),
            nn.ConvTranspose2d(2 * depth, depth, 6, stride=2),
            nn.ELU(),
            nn.ConvTranspose2d(depth, channels, 6, stride=2),
        ).to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., feature_dim) -> (..., C, 64, 64) mean of the frame in frames_to_input's scale."""
        lead = features.shape[:-1]
        x = self.linear(features.reshape(-1, features.shape[-1]))
        x = self.net(
            x.reshape(-1, 32 * self.depth, 1, 1).contiguous(memory_format=torch.channels_last)
        )
        return x.contiguous().reshape(*lead, *x.shape[1:])
