"""One side of `ditto bench world-model --against REV`: a process that times training steps.

Not imported: the benchmark runs this file's text with `python -c` in a process whose
PYTHONPATH starts with one commit's `src`, so `ditto` below is that commit's code. So
it may use only what every commit it is pointed at has: `ditto.world_model.bench.train_step`
where it exists, else a copy of it made from the APIs older commits have (`world_model_config`,
`env_spec`, `WorldModel.loss`, `bench.MODES`, `bench._batch`, `bench.compiled`; commit 77aa8b7
has them all).

Protocol: argv[1] is a JSON object of the settings. After the warm-up the worker writes one
JSON line (the side's `ditto` path, batch, length, params, warm-up seconds); then for each
`run` line on stdin it times `steps` steps and writes {"times": [seconds, ...]}; at end of
input it exits. Whatever the code prints goes to stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _train_step(preset, mode, device, env_id, batch, length, overrides=None):
    """(eager step, timed step, shape) from this side's code: its own train_step, or a copy of it.
    `overrides` (settings replacing the preset's) only reach a train_step that takes them."""
    from ditto.world_model import bench

    if overrides:
        return bench.train_step(preset, mode, device, env_id, batch, length, overrides)
    if hasattr(bench, "train_step"):
        return bench.train_step(preset, mode, device, env_id, batch, length)
    from dataclasses import replace

    import torch

    from ditto.config import world_model_config
    from ditto.envs import env_spec
    from ditto.world_model.model import WorldModel

    bf16, compile_mode = bench.MODES[mode]
    config = world_model_config(preset, batch=batch, length=length)
    config = replace(config, precision="bf16" if bf16 else "fp32", compile=compile_mode is not None)
    torch.manual_seed(0)
    model = WorldModel(env_spec(env_id), config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, eps=config.eps)
    frames, actions, is_first = bench._batch(model, config.batch, config.length, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = model.loss(frames, actions, is_first)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    timed = bench.compiled(step, compile_mode) if compile_mode else step
    shape = {
        "batch": config.batch,
        "length": config.length,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return step, timed, shape


def main() -> None:
    settings = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints from the code under test go to stderr
    import torch

    torch.set_num_threads(settings["threads"])
    import ditto

    device = torch.device(settings["device"])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    _, step, shape = _train_step(
        settings["preset"],
        settings["mode"],
        device,
        settings["env_id"],
        settings["batch"],
        settings["length"],
        settings.get("overrides"),
    )
    start = time.perf_counter()
    for _ in range(settings["warmup"]):
        step()
    sync()
    ready = {
        "ditto": os.path.dirname(os.path.abspath(ditto.__file__)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "warmup_s": time.perf_counter() - start,
        **shape,
    }
    protocol.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if line.strip() != "run":
            break
        times = []
        for _ in range(settings["steps"]):
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        protocol.write(json.dumps({"times": times}) + "\n")


if __name__ == "__main__":
    main()
