"""CartPole drawn for a 64x64 camera.

gymnasium's render is a 600x400 picture for people: its 1-m pole is 10 px wide
on a 600-px track, so resized to 64x64 the pole is one pixel wide and the
expert's typical tilt (0.007 rad) moves its tip by a tenth of a pixel. A world
model trained for the demo's budget then reconstructs the pole upright whatever
its angle (benchmarks/RESULTS.md). This drawing keeps gymnasium's layout and
colours (black cart on a track, tan pole, white background) and the exact state,
with the pole drawn longer and thicker relative to the track: the whole track
(|x| <= 2.4) spans the width, the pole is 60% of the frame tall and 3 px wide.
"""

from __future__ import annotations

import cv2
import numpy as np

from ditto.envs.pixels import draw_polygon

CARTPOLE_PIXELS = "ditto-cartpole-1"  # EnvSpec.pixels: bump it when the drawing changes
X_THRESHOLD = 2.4  # CartPole-v1 ends an episode beyond this cart position


def render_cartpole(state: np.ndarray, size: int = 64) -> np.ndarray:
    """An RGB (size, size, 3) uint8 picture of CartPole's state (x, x_dot, theta, theta_dot)."""
    x, _, theta, _ = (float(v) for v in state)
    image = np.full((size, size, 3), 255, np.uint8)
    track_y = 0.82 * size
    cart_x = size / 2 + x * (0.44 * size / X_THRESHOLD)
    cv2.line(image, (0, round(track_y)), (size, round(track_y)), (0, 0, 0), 1)
    for end in (-X_THRESHOLD, X_THRESHOLD):  # the track's ends, where episodes stop
        column = round(size / 2 + end * 0.44 * size / X_THRESHOLD)
        cv2.line(
            image, (column, round(track_y - 0.06 * size)), (column, round(track_y)), (0, 0, 0), 1
        )
    half_w, half_h = 0.08 * size, 0.045 * size
    cart = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    draw_polygon(image, cart + [cart_x, track_y], (0, 0, 0))
    # The pole: a rectangle from the axle (the cart's top) along the pole's angle.
    length, half_width = 0.6 * size, 0.025 * size
    along = np.array([np.sin(theta), -np.cos(theta)])  # image y points down
    across = np.array([np.cos(theta), np.sin(theta)])
    axle = np.array([cart_x, track_y - half_h])
    pole = [axle - half_width * across, axle + half_width * across]
    pole += [pole[1] + length * along, pole[0] + length * along]
    draw_polygon(image, np.array(pole), (202, 152, 101))
    return image
