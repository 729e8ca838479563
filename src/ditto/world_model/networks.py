"""Encoder and decoder of 64x64 frames (DreamerV2's convolutional stacks)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [-0.5, 0.5]: the one place pixels are scaled for the networks."""
    return frames.float() / 255.0 - 0.5


class Encoder(nn.Module):
    """4 convs (kernel 4, stride 2, ELU), channels depth x (1, 2, 4, 8): a 64x64 frame -> 32*depth.
    `kind` patch: the frame's 4x4 patches as channels of a 16x16 map (pixel unshuffle), then 3
    convs (kernel 4, stride 2, padding 1), channels depth x (2, 4, 8): the same output size
    without the convolution over the 64x64 frame's few channels, a CPU's slowest layer."""

    def __init__(self, channels: int, depth: int, kind: str = "conv"):
        super().__init__()
        patch = 4 if kind == "patch" else 1
        layers: list[nn.Module] = [nn.PixelUnshuffle(patch)] if patch > 1 else []
        in_channels = channels * patch * patch
        for i in range(0 if patch == 1 else 1, 4):
            padding = 0 if patch == 1 else 1
            layers += [nn.Conv2d(in_channels, depth * 2**i, 4, stride=2, padding=padding), nn.ELU()]
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


def _doubling(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """A layer that doubles a map's side: a transposed conv (kernel 4, stride 2, padding 1), or a
    3x3 conv to 4x the channels rearranged into 2x2 blocks (sub-pixel convolution)."""
    if kind == "grid":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
    return nn.Sequential(nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1), nn.PixelShuffle(2))


def _decoder_layers(kind: str, channels: int, depth: int, size: int) -> list[nn.Module]:
    """The Decoder's upsampling layers (see Decoder), from its start map to a size x size frame."""
    if kind == "transpose":
        kernels = (5, 5, 6, 6) if size == 64 else (5, 5, 8)
        widths = (32 * depth, 4 * depth, 2 * depth, depth)[: len(kernels)] + (channels,)
        return [
            nn.ConvTranspose2d(i, o, k, stride=2)
            for i, o, k in zip(widths, widths[1:], kernels, strict=False)
        ]
    if kind == "patch":
        widths = (8 * depth, 4 * depth, 2 * depth)
        layers = [_doubling("grid", i, o) for i, o in zip(widths, widths[1:], strict=False)]
        shuffle = size // 16
        patches = nn.Conv2d(2 * depth, channels * shuffle**2, 1)
        return [*layers, nn.Sequential(patches, nn.PixelShuffle(shuffle))]
    widths = (8 * depth, 4 * depth, 2 * depth, depth)[: 4 if size == 64 else 3] + (channels,)
    return [_doubling(kind, i, o) for i, o in zip(widths, widths[1:], strict=False)]


class Decoder(nn.Module):
    """Features -> 64x64 frame mean, ELU between layers. `kind` transpose: DreamerV2's linear to
    a 1x1 map, then 4 transposed convs (kernels 5, 5, 6, 6, stride 2). grid / subpixel: a linear
    to an 8*depth x 4x4 map, then layers that each double its side and halve its channels
    (_doubling). patch: grid's layers up to a 2*depth x 16x16 map, then each cell's features ->
    its 4x4 patch of pixels (a 1x1 conv and pixel shuffle), so no convolution runs at 64x64 or
    with few channels, the layers a CPU runs slowest. With `size` 32 the last doubling is left
    out (transpose: kernels 5, 5, 8) and the 32x32 mean is upsampled (nearest): the Gaussian NLL
    against the 64x64 frame then trains it on the frame's 2x2 averages."""

    def __init__(
        self, feature_dim: int, channels: int, depth: int, kind: str = "transpose", size: int = 64
    ):
        super().__init__()
        self.size = size
        self.start = (32 * depth, 1, 1) if kind == "transpose" else (8 * depth, 4, 4)
        # Made before the convs, in the order DreamerV2's decoder always made them, so that a
        # seed gives the default decoder the same weights as before the options existed.
        self.linear = nn.Linear(feature_dim, math.prod(self.start))
        layers = _decoder_layers(kind, channels, depth, size)
        with_elu = [part for layer in layers for part in (layer, nn.ELU())][:-1]
        self.net = nn.Sequential(*with_elu).to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., feature_dim) -> (..., C, 64, 64) mean of the frame in frames_to_input's scale."""
        lead = features.shape[:-1]
        x = self.linear(features.reshape(-1, features.shape[-1]))
        x = self.net(x.reshape(-1, *self.start).contiguous(memory_format=torch.channels_last))
        if self.size != 64:
            x = F.interpolate(x, scale_factor=64 // self.size, mode="nearest")
        return x.contiguous().reshape(*lead, *x.shape[1:])
