"""Would a weight-averaged policy score better than the snapshots it averages?

Averages the policy weights of an agent run's kept snapshots (uniformly) and
writes a run directory whose only snapshot is that average, for `ditto evaluate`:

    python benchmarks/snapshot_average.py runs/ne4/ent01_s3 --out runs/avg/ent01_s3
    ditto evaluate runs/avg/ent01_s3 --checkpoints 1 --episodes 200 --json
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ditto.agents.trainer import SNAPSHOTS
from ditto.evaluation.protocol import policy_snapshots
from ditto.runs import CONFIG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    snapshots = policy_snapshots(Path(args.run))
    out = Path(args.out)
    if out.exists():  # evaluation would score whatever newer snapshot it already holds
        raise SystemExit(f"{out} exists; choose a new --out")
    total: dict[str, torch.Tensor] = {}
    for path in snapshots:
        for key, value in load_file(path).items():
            total[key] = total.get(key, 0) + value.double()
    with safe_open(str(snapshots[-1]), "pt") as f:
        metadata = f.metadata()  # every snapshot has the same layout
    (out / SNAPSHOTS).mkdir(parents=True)
    shutil.copy(Path(args.run) / CONFIG, out / CONFIG)
    averaged = {key: (value / len(snapshots)).float().contiguous() for key, value in total.items()}
    save_file(averaged, str(out / SNAPSHOTS / snapshots[-1].name), metadata=metadata)
    print(f"averaged {len(snapshots)} snapshots of {args.run} into {out}")


if __name__ == "__main__":
    main()
