"""Aggregate scored agent runs (seeds of one setting) the way RESULTS.md's tables do.

    python benchmarks/aggregate_runs.py runs/ne4/lr5e5_s0 runs/ne4/lr5e5_s1 runs/ne4/lr5e5_s2

Each run's score is its eval.json (`ditto evaluate --save`, or benchmarks/overrides.py),
or else the last JSON line of RUN.log (what overrides.py printed before it saved eval.json).
Prints the per-seed returns, their mean +- the runs' standard errors combined,
and the IQM of the normalised scores with its 95% bootstrap interval
(ditto.evaluation.protocol.aggregate, as `ditto report` uses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ditto.evaluation.protocol import aggregate
from ditto.runs import EVAL


def run_score(run: Path) -> dict:
    if (run / EVAL).is_file():
        return json.loads((run / EVAL).read_text())
    log = run.with_name(run.name + ".log")
    if not log.is_file():
        raise SystemExit(
            f"{run}: no {EVAL} and no {log.name}; score it with `ditto evaluate {run} --save`"
        )
    lines = log.read_text().replace("\r", "\n").splitlines()
    return json.loads([line for line in lines if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    results = [run_score(run) for run in parser.parse_args().runs]
    summary = aggregate(results)
    stderr = np.sqrt(sum(r["return_stderr"] ** 2 for r in results)) / len(results)
    low, high = summary["iqm_ci95"]
    print(
        f"per seed {[round(r['return_mean'], 1) for r in results]}: "
        f"{summary['return_mean']:.1f} +- {stderr:.1f}, "
        f"IQM normalised {summary['iqm_normalized_score']:.3f} [{low:.3f}, {high:.3f}]"
    )


if __name__ == "__main__":
    main()
