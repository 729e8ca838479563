"""fp32 vs bf16 kernel speed on this machine's CPU: why `--precision auto` picks fp32 here.

    python benchmarks/cpu_precision.py --threads 1

Times a world-model-sized matmul and a paper-encoder convolution in both
dtypes (median of 5 after 2 warm-ups) and prints one JSON line with the ratios,
whether ditto detected native bf16 on this CPU, and the fp32 matmul's GFLOP/s
(the most these cores sustain: the roofline for the speed goals).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ditto.device import cpu_has_native_bf16


def median_seconds(fn, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "threads": args.threads,
        "native_bf16": cpu_has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    for dtype in (torch.float32, torch.bfloat16):
        name = "fp32" if dtype == torch.float32 else "bf16"
        a, b = torch.randn(800, 1280, dtype=dtype), torch.randn(1280, 3072, dtype=dtype)
        x, w = torch.randn(16, 48, 64, 64, dtype=dtype), torch.randn(96, 48, 4, 4, dtype=dtype)
        result[f"matmul_{name}_s"] = median_seconds(lambda a=a, b=b: a @ b)
        result[f"conv_{name}_s"] = median_seconds(lambda x=x, w=w: F.conv2d(x, w, stride=2))
    # The roofline for the speed goals: what this CPU sustains on a large fp32 matmul.
    result["matmul_fp32_gflops"] = 2 * 800 * 1280 * 3072 / result["matmul_fp32_s"] / 1e9
    result["matmul_bf16_slowdown"] = result["matmul_bf16_s"] / result["matmul_fp32_s"]
    result["conv_bf16_slowdown"] = result["conv_bf16_s"] / result["conv_fp32_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
