"""A world-model preset against another: training-step speed (alternating, against a commit) and
held-out quality at equal training time. Behind docs/notes/speed.md's small-fast section.

    # speed: today's small-fast step against commit 77aa8b7's small step, alternating rounds
    python benchmarks/world_model_tiers.py speed --preset small-fast --against 77aa8b7 \\
        --against-preset small --rounds 5 --steps 5
    # one option on today's small preset against 77aa8b7's small
    python benchmarks/world_model_tiers.py speed --preset small --set decoder=grid recon_size=32

    # quality: train each preset for the same seconds of training steps, at once (so both see
    # the machine's load), validating at marks: one JSON line per mark
    for p in small small-fast; do
        OMP_NUM_THREADS=1 python benchmarks/world_model_tiers.py quality --preset $p \\
            --data DATA_DIR... --seconds 3600 --marks 6 --out /tmp/tiers/$p > /tmp/tiers/$p.jsonl &
    done; wait

Speed compares each side's ms per training step (and per frame, where the presets' batch x
length differ). Quality is the trainer's validation (world_model/trainer.py: held-out
reconstruction and open-loop MSE against copying the last frame) on more sequences than a
run's periodic one; validation time is not counted in the budget.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ditto.config import world_model_config
from ditto.world_model.bench_against import bench_against, describe
from ditto.world_model.trainer import WorldModelTrainer


def speed(args: argparse.Namespace) -> None:
    result = bench_against(
        args.against,
        preset=args.preset,
        against_preset=args.against_preset,
        rounds=args.rounds,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        overrides=dict(_setting(text) for text in args.set),
    )
    print(json.dumps(result) if args.json else describe(result))


def _setting(text: str) -> tuple[str, object]:
    """'recon_size=32' -> ('recon_size', 32): a number where the value reads as one."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def quality(args: argparse.Namespace) -> None:
    """Train `args.preset` for `args.seconds` of training steps; validate at `args.marks` even
    marks of that time, each printed as one JSON line."""
    torch.set_num_threads(args.threads)
    never = 10**9  # the trainer's own logging, validation and checkpoints stay out of the timing
    config = world_model_config(
        args.preset, steps=never, log_every=never, eval_every=never, checkpoint_every=never
    )
    trainer = WorldModelTrainer(args.data, args.out, config, device="cpu", progress=False)
    trainer.model.train()
    trained, mark = 0.0, 1
    while mark <= args.marks:
        start = time.perf_counter()
        metrics = trainer.train_step()
        trainer.step += 1
        trained += time.perf_counter() - start
        if trained >= mark * args.seconds / args.marks:
            row = {
                "preset": args.preset,
                "train_s": round(trained, 1),
                "step": trainer.step,
                "frames": trainer.step * config.batch * config.length,
                "loss": metrics["loss"],
                **trainer.validate(sequences=args.sequences),
            }
            print(json.dumps(row), flush=True)
            mark += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("speed", help="alternating step timing against a commit")
    s.add_argument("--preset", default="small-fast")
    s.add_argument("--against", default="77aa8b7", help="the commit to time against")
    s.add_argument("--against-preset", default="small", help="the preset that commit builds")
    s.add_argument("--rounds", type=int, default=5)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="today's overrides")
    s.add_argument("--json", action="store_true")
    q = commands.add_parser("quality", help="train for a time budget, validating at marks")
    q.add_argument("--preset", default="small-fast")
    q.add_argument("--data", nargs="+", required=True, help="episode dataset folders")
    q.add_argument("--seconds", type=float, default=600.0, help="seconds of training steps")
    q.add_argument("--marks", type=int, default=5, help="validations, evenly over the seconds")
    q.add_argument("--sequences", type=int, default=48, help="held-out windows per validation")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--out", required=True, help="a scratch run directory")
    args = parser.parse_args()
    (speed if args.command == "speed" else quality)(args)


if __name__ == "__main__":
    main()
