"""The one place where an image becomes a frame the project stores and models see, and
the drawing helper of the envs that ditto draws itself (cartpole.py, pendulum.py).

A frame is uint8 with shape (C, H, W): C = 1 (grayscale) or 3 (RGB), H = W = 64
by default.
"""

from __future__ import annotations

import cv2
import numpy as np

FRAME_SIZE = 64


def to_frame(image: np.ndarray, size: int = FRAME_SIZE, grayscale: bool = True) -> np.ndarray:
    """Resize an (H, W, 3) RGB or (H, W) grayscale uint8 image to a (C, size, size) frame.

    INTER_AREA averages the source pixels each output pixel covers, which keeps
    thin objects (a ball, a pole) visible; ALE's vector env resizes the same way.
    """
    if image.ndim == 3 and grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 2 and not grayscale:
        raise ValueError("cannot make an RGB frame from a grayscale image")
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if image.ndim == 2:
        return image[None]
    return np.ascontiguousarray(image.transpose(2, 0, 1))


SUBPIXEL = 4  # cv2 fixed-point bits: draw with 1/16-px precision, anti-aliased


def draw_polygon(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int]) -> None:
    """Fill the convex polygon `points` (x, y in pixels, sub-pixel precise) on an RGB image."""
    fixed = np.round(points * (1 << SUBPIXEL)).astype(np.int32)
    cv2.fillConvexPoly(image, fixed, color, lineType=cv2.LINE_AA, shift=SUBPIXEL)
