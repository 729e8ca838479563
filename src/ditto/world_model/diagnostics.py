"""Pictures of what the world model sees and dreams: a PNG grid and a GIF.

Each validation sequence shows three rows: the real frames; the model's frames
(reconstructions over the context, then open-loop imagination from the prior
with the real actions); and the absolute error. A vertical line marks where
imagination begins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ditto.io import atomic_write_bytes

_GAP = 2


def _rgb(frames: np.ndarray) -> np.ndarray:
    """(..., C, H, W) uint8 -> (..., H, W, 3)."""
    frames = np.moveaxis(frames, -3, -1)
    return np.repeat(frames, 3, -1) if frames.shape[-1] == 1 else frames


def comparison_rows(real: np.ndarray, model: np.ndarray, context: int) -> np.ndarray:
    """real, model: (T, C, H, W) uint8 -> an (3H + gaps, T W + gaps, 3) image strip."""
    real_rgb, model_rgb = _rgb(real), _rgb(model)
    error = np.abs(real_rgb.astype(np.int16) - model_rgb.astype(np.int16)).astype(np.uint8)
    steps, height, width, _ = real_rgb.shape
    strip = np.full((3 * height + 2 * _GAP, steps * (width + _GAP), 3), 255, np.uint8)
    for row, images in enumerate((real_rgb, model_rgb, error)):
        for t in range(steps):
            y, x = row * (height + _GAP), t * (width + _GAP)
            strip[y : y + height, x : x + width] = images[t]
    line_x = context * (width + _GAP) - 1
    strip[:, max(line_x, 0)] = (255, 0, 0)  # imagination starts right of the red line
    return strip


def save_grid(path: Path, reals: np.ndarray, models: np.ndarray, context: int) -> None:
    """reals, models: (N, T, C, H, W) uint8 -> one PNG with a strip per sequence."""
    strips = [comparison_rows(r, m, context) for r, m in zip(reals, models, strict=True)]
    gap = np.full((4 * _GAP, strips[0].shape[1], 3), 255, np.uint8)
    image = np.concatenate([part for s in strips for part in (s, gap)][:-1])
    _save(path, [Image.fromarray(image)], "PNG")


def save_gif(
    path: Path, reals: np.ndarray, models: np.ndarray, context: int, scale: int = 2
) -> None:
    """An animation: real (left) beside model (right), one row per sequence; red border while dreaming."""
    n, steps = reals.shape[:2]
    frames = []
    for t in range(steps):
        rows = []
        for i in range(n):
            model = _rgb(models[i, t]).copy()
            if t >= context:
                model[[0, -1], :] = (255, 0, 0)
                model[:, [0, -1]] = (255, 0, 0)
            rows.append(
                np.concatenate(
                    [_rgb(reals[i, t]), np.full((model.shape[0], _GAP, 3), 255, np.uint8), model], 1
                )
            )
        image = Image.fromarray(np.concatenate(rows, 0))
        frames.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
    _save(path, frames, "GIF")


def _save(path: Path, images: list[Image.Image], fmt: str) -> None:
    import io

    buffer = io.BytesIO()
    if fmt == "GIF":
        images[0].save(
            buffer, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0
        )
    else:
        images[0].save(buffer, format=fmt)
    atomic_write_bytes(path, buffer.getvalue())
