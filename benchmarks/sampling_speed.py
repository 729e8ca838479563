"""Window-sampling throughput from a dataset on disk, cold (not in the page cache) and warm.

    python benchmarks/sampling_speed.py --gb 8 --dir /tmp/ditto-sampling-bench --batch 50 --length 50

Writes a synthetic Atari-shaped dataset of about GB gigabytes once (reused on
later runs), evicts its files from the page cache with posix_fadvise(DONTNEED)
so the first pass reads from disk as a dataset larger than RAM would, then
samples B x L windows and reports frames/s and batches/s for the cold pass and
a warm pass, and the process's peak resident memory (the dataset is never
loaded whole).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from ditto.data import Dataset, DatasetWriter, Episode, WindowSampler
from ditto.envs import env_spec

EPISODE_STEPS = 2000


def build(root: Path, gigabytes: float, seed: int) -> Dataset:
    spec = env_spec("ALE/Pong-v5")
    frame_bytes = int(np.prod(spec.obs_shape))
    episodes = max(1, int(gigabytes * 1e9 / (frame_bytes * (EPISODE_STEPS + 1))))
    if (root / "metadata.json").exists() and len(Dataset(root)) >= episodes:
        return Dataset(root)
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, spec, {"expert": "synthetic", "epsilon": 0.0, "seed": seed})
    base = rng.integers(0, 256, size=(EPISODE_STEPS + 1, *spec.obs_shape), dtype=np.uint8)
    for i in range(writer.num_episodes, episodes):
        frames = np.roll(base, i, axis=0)  # distinct files, cheap to make
        actions = rng.integers(0, spec.action.n, size=EPISODE_STEPS)
        writer.add(Episode(frames, actions, np.zeros(EPISODE_STEPS, np.float32), True, False))
    return Dataset(root)


def evict(root: Path) -> None:
    for path in (root / "episodes").glob("*.observations.npy"):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def measure(sampler: WindowSampler, batch: int, batches: int) -> dict:
    start = time.perf_counter()
    for _ in range(batches):
        sampler.sample(batch)
    elapsed = time.perf_counter() - start
    return {
        "batches_per_s": batches / elapsed,
        "frames_per_s": batches * batch * sampler.length / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=8.0)
    parser.add_argument("--dir", default="/tmp/ditto-sampling-bench")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    root = Path(args.dir)
    start = time.perf_counter()
    dataset = build(root, args.gb, seed=0)
    build_s = time.perf_counter() - start
    evict(root)
    start = time.perf_counter()
    dataset = Dataset(root)  # opening reads headers, actions and rewards, never frames
    open_s = time.perf_counter() - start
    sampler = WindowSampler(dataset, dataset.spec, args.length, seed=0)
    cold = measure(sampler, args.batch, args.batches)
    warm = measure(sampler, args.batch, args.batches)
    size_gb = sum(p.stat().st_size for p in (root / "episodes").iterdir()) / 1e9
    print(
        json.dumps(
            {
                "dataset_gb": round(size_gb, 2),
                "episodes": len(dataset),
                "steps": int(dataset.lengths.sum()),
                "build_s": round(build_s, 1),
                "open_s": round(open_s, 3),
                "batch": [args.batch, args.length],
                "cold": cold,
                "warm": warm,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
