"""Pendulum drawn for a 64x64 camera.

gymnasium's render of Pendulum-v1 is a 500x500 picture whose rod covers about 25
of the 4096 pixels once resized to 64x64, next to a torque arrow (the last
action, drawn into the frame). This drawing shows the state alone: a dark rod 5 px
wide from the frame's centre, with gymnasium's orientation (angle 0 points up,
positive angles turn counter-clockwise), on a white background.
"""

from __future__ import annotations

import numpy as np

from ditto.envs.pixels import draw_polygon

PENDULUM_PIXELS = "ditto-pendulum-1"  # EnvSpec.pixels: bump it when the drawing changes


def render_pendulum(state: np.ndarray, size: int = 64) -> np.ndarray:
    """An RGB (size, size, 3) uint8 picture of Pendulum's observation (cos, sin, angular velocity)."""
    cos, sin = float(state[0]), float(state[1])
    image = np.full((size, size, 3), 255, np.uint8)
    length, half_width = 0.42 * size, 0.04 * size
    along = np.array([-sin, -cos])  # image y points down; angle 0 is up
    across = np.array([cos, -sin])
    pivot = np.array([size / 2, size / 2])
    rod = [pivot - half_width * across, pivot + half_width * across]
    rod += [rod[1] + length * along, rod[0] + length * along]
    draw_polygon(image, np.array(rod), (60, 60, 60))
    return image
