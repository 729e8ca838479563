"""Does the held-out latent distance L_d predict real return, and does expert-action accuracy?

The paper (DITTO, section 5) finds on BeamRider that L_d = 1 - r on held-out expert windows
tracks the real return while expert-action accuracy does not. This checks that on scored
agent runs trained in ONE world model at ONE horizon on the same expert episodes (each world
model has its own latent space, L_d averages over H imagined steps, and it is measured on the
expert's held-out episodes, so it is comparable only within all three):

    python benchmarks/latent_distance.py runs/pendulum/agents/{ditto,ditto_nearest,dgail,dbc}-ne4-seed?

For every scored snapshot (eval.json's checkpoints) it takes the metrics the run logged at
that step: `val/latent_distance` and the expert-action metric (`val/action_accuracy` for
discrete actions, `val/action_mse` for continuous). Prints each run's means over its scored
snapshots beside its return, then Spearman rank correlations with return, across runs (with
p-values) and across all snapshots pooled (without: a run's snapshots are not independent).
Pixel BC runs have no world model, hence no L_d, and are skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ditto.runs import EVAL, METRICS, read_config, read_metrics

ACTION_METRICS = ("val/action_accuracy", "val/action_mse")


def snapshot_metrics(run: Path) -> tuple[dict, list[dict]]:
    """The run's eval.json, and per scored snapshot: step, return, L_d, action metric."""
    score = json.loads((run / EVAL).read_text())
    rows = [row for row in read_metrics(run / METRICS) if "val/latent_distance" in row]
    points = []
    for checkpoint in score["checkpoints"]:
        step = checkpoint["step"]
        # the validation row logged at the snapshot's step, else the last one before it
        earlier = [r for r in rows if r["step"] <= step]
        if not earlier:
            raise SystemExit(f"{run}: no val/latent_distance logged by step {step}")
        row = max(earlier, key=lambda r: r["step"])
        action = next(name for name in ACTION_METRICS if name in row)
        points.append(
            {
                "step": step,
                "return": checkpoint["return_mean"],
                "latent_distance": row["val/latent_distance"],
                "action_metric": action,
                "action": row[action],
            }
        )
    return score, points


def correlations(points: list[dict], p_values: bool) -> str:
    returns = [p["return"] for p in points]
    parts = []
    for key, label in (("latent_distance", "L_d"), ("action", points[0]["action_metric"])):
        rho, p_value = spearmanr([p[key] for p in points], returns)
        parts.append(f"{label}: rho {rho:+.2f}" + (f" (p {p_value:.2g})" if p_values else ""))
    return f"n = {len(points)}; " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    settings, per_run, pooled = set(), [], []
    for run in args.runs:
        config = read_config(run, "agent")
        if config["agent"]["algo"] == "bc":
            continue
        settings.add(
            (
                str(Path(config["world_model"]).resolve()),
                config["agent"]["horizon"],
                str(Path(config["expert_data"]).resolve()),
                config["agent"]["expert_episodes"],
            )
        )
        score, points = snapshot_metrics(run)
        pooled += points
        per_run.append(
            {
                "run": run.name,
                "return": score["return_mean"],
                "latent_distance": float(np.mean([p["latent_distance"] for p in points])),
                "action_metric": points[0]["action_metric"],
                "action": float(np.mean([p["action"] for p in points])),
            }
        )
    if len(settings) != 1:
        raise SystemExit(
            f"the runs differ in world model, horizon or expert episodes: {sorted(settings, key=str)}; "
            "L_d compares runs within one setting"
        )
    action = per_run[0]["action_metric"]
    print(f"| run | return | L_d | {action} |\n|---|---|---|---|")
    for r in sorted(per_run, key=lambda r: -r["return"]):
        print(
            f"| {r['run']} | {r['return']:.1f} | {r['latent_distance']:.3f} | {r['action']:.3f} |"
        )
    print(f"\nacross runs (Spearman with return): {correlations(per_run, p_values=True)}")
    print(f"across snapshots, pooled: {correlations(pooled, p_values=False)}")


if __name__ == "__main__":
    main()
