"""Held-out world-model errors as a function of how many real frames the filter saw first.

The trainer's validation filters `open_loop_context` frames from a zero state (5 before
2026-11-21, 50 since), while training carries the state across chunks, so slow facts (Pong's
score) can live in h. This scores a run's held-out episodes after C frames of filtering, for
several C:

    python benchmarks/open_loop_context.py runs/pong/wm3x --contexts 5 50 200
    python benchmarks/open_loop_context.py runs/pong/wm --contexts 50 200 --ball   # Pong: is the ball drawn

Per C: reconstruction error over the last 5 context frames, open-loop error 1-15 steps
ahead, and the copy-last-frame baseline (MSE per pixel in [0, 1] units); with --pictures DIR,
also DIR/open_loop_C.png (real, model, error rows for 4 windows: last 5 context frames, then
the open-loop predictions).

With --ball (Pong only), also whether the model draws the ball where it is, since a per-pixel
error hardly notices a missing ball (a few of 4096 pixels). A frame's ball is "hit" when the
model's most off-background pixel in the field (between the walls and the paddles' columns)
lies within one pixel of a real ball pixel. Reported over frames that show a ball, for the
reconstructions of the last 5 context frames, the open-loop predictions and copying the last
context frame; plus how often the model draws a ball that is not there (phantom rate), and
how much of the ball's contrast it draws (the real ball's pixels projected on the model's: 1
when drawn exactly, 0 when absent, between when faint or off by a pixel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ditto.data import WindowSampler, open_datasets
from ditto.runs import read_config
from ditto.world_model.diagnostics import save_grid
from ditto.world_model.networks import frames_to_input
from ditto.world_model.trainer import (
    batch_to_torch,
    load_world_model,
    open_loop_curves,
    open_loop_strips,
    split_episodes,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--contexts", type=int, nargs="+", default=[5, 50, 200])
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--ball", action="store_true", help="Pong: score the ball (see above)")
    args = parser.parse_args()

    saved = read_config(Path(args.run), "world_model")
    config = saved["world_model"]
    episodes = [ep for dataset in open_datasets(saved["data"]) for ep in dataset]
    _, val_ids = split_episodes(len(episodes), config["val_episodes"], config["seed"])
    val = [episodes[i] for i in val_ids]
    model = load_world_model(args.run).model
    if args.ball and saved["env"]["env_id"] != "ALE/Pong-v5":
        raise SystemExit(f"--ball scores Pong's ball; {args.run} models {saved['env']['env_id']}")
    for context in args.contexts:
        torch.manual_seed(0)  # the same latent samples whichever contexts are asked for
        sampler = WindowSampler(val, model.spec, context + args.horizon, seed=0)
        frames, actions, is_first = batch_to_torch(
            sampler.sample(args.windows), torch.device("cpu")
        )
        with torch.no_grad():
            recon, predictions = model.open_loop(frames, actions, is_first, context)
        target = frames_to_input(frames)
        if args.pictures:
            real, drawn, shown = open_loop_strips(frames[:4], recon[:4], predictions[:4], context)
            save_grid(args.pictures / f"open_loop_{context}.png", real, drawn, shown)
        open_loop, copy_last = open_loop_curves(predictions, frames, context)
        recon_last5 = (recon[:, -5:] - target[:, context - 5 : context]).square().mean()
        ball = {}
        if args.ball:
            copied = target[:, context - 1 : context].expand_as(predictions)
            ball = {
                **ball_scores("recon", target[:, context - 5 : context], recon[:, -5:], ks=()),
                **ball_scores("open_loop", target[:, context:], predictions),
                **ball_scores("copy_last", target[:, context:], copied),
            }
        print(
            json.dumps(
                {
                    "context": context,
                    "recon_mse_last5": float(recon_last5),
                    "open_loop_mse": float(open_loop.mean()),
                    "copy_last_mse": float(copy_last.mean()),
                    "open_loop_mse_k1": float(open_loop[0]),
                    "copy_last_mse_k1": float(copy_last[0]),
                    "open_loop_mse_k15": float(open_loop[-1]),
                    "copy_last_mse_k15": float(copy_last[-1]),
                    **ball,
                }
            )
        )


# Pong's field in a 64x64 frame: below the top wall (rows 7-10), above the bottom one (59-),
# right of the left paddle's columns (6-7) and left of the right one's (56-57).
FIELD_ROWS, FIELD_COLUMNS = slice(11, 59), slice(8, 56)
BALL_CONTRAST = 20 / 255  # the ball is 25-100 grey levels off the background, by pixel


def ball_scores(
    name: str, real: torch.Tensor, drawn: torch.Tensor, ks: tuple[int, ...] = (1, 5, 15)
) -> dict[str, float]:
    """Ball hit rate (overall, and k = 1, 5, 15 steps ahead), drawn contrast and phantom rate of
    `drawn` against `real`, both (B, T, 1, 64, 64) in [-0.5, 0.5] (see the module doc)."""
    field = (..., 0, FIELD_ROWS, FIELD_COLUMNS)
    real, drawn = real[field], drawn.float()[field]
    background = real.flatten(-2).median(-1).values[..., None, None]  # the field is mostly that
    real_ball = (real - background).abs() > BALL_CONTRAST
    has_ball = real_ball.flatten(-2).any(-1)
    peak, where = (drawn - background).abs().flatten(-2).max(-1)
    draws_ball = peak > BALL_CONTRAST
    near_ball = F.max_pool2d(real_ball.flatten(0, 1)[:, None].float(), 3, stride=1, padding=1)
    near_ball = near_ball.reshape(real_ball.shape).flatten(-2).gather(-1, where[..., None])
    hit = (draws_ball & near_ball[..., 0].bool()).float()
    has = has_ball.float()
    real_contrast = (real - background) * real_ball
    scores = {
        f"ball_hit_{name}": float((hit * has).sum() / has.sum()),
        f"ball_contrast_{name}": float(
            ((drawn - background) * real_contrast).sum() / real_contrast.square().sum()
        ),
        f"ball_phantom_{name}": float((draws_ball.float() * (1 - has)).sum() / (1 - has).sum()),
    }
    for k in ks:
        if k <= hit.shape[1]:
            scores[f"ball_hit_{name}_k{k}"] = float(
                (hit[:, k - 1] * has[:, k - 1]).sum() / has[:, k - 1].sum()
            )
    return scores


if __name__ == "__main__":
    main()
