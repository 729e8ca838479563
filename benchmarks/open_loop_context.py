"""Held-out world-model errors as a function of how many real frames the filter saw first.

The trainer's validation filters `open_loop_context` frames from a zero state (5 before
2026-11-21, 50 since), while training carries the state across chunks, so slow facts (Pong's
score) can live in h. This scores a run's held-out episodes after C frames of filtering, for
several C:

    python benchmarks/open_loop_context.py runs/pong/wm3x --contexts 5 50 200

Per C: reconstruction error over the last 5 context frames, open-loop error 1-15 steps
ahead, and the copy-last-frame baseline (MSE per pixel in [0, 1] units); with --pictures DIR,
also DIR/open_loop_C.png (real, model, error rows for 4 windows: last 5 context frames, then
the open-loop predictions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

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
    args = parser.parse_args()

    saved = read_config(Path(args.run), "world_model")
    config = saved["world_model"]
    episodes = [ep for dataset in open_datasets(saved["data"]) for ep in dataset]
    _, val_ids = split_episodes(len(episodes), config["val_episodes"], config["seed"])
    val = [episodes[i] for i in val_ids]
    model = load_world_model(args.run).model
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
                }
            )
        )


if __name__ == "__main__":
    main()
