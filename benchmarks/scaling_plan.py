"""The paper's grid at full scale, on paper: tasks per stage, GPU-hours, wall time, storage.

    OMP_NUM_THREADS=1 python benchmarks/scaling_plan.py configs/paper.yaml --tflops 50

Counted here: the tasks (the grid loader, as `ditto sweep` expands it), the FLOPs of one
world-model step and of one update of each method (torch's FlopCounterMode, as `ditto bench`
counts them, on CPU: the world model at a batch of --count-batch, scaled to the preset's
batch, since every counted kernel is linear in the batch), parameter and optimizer bytes.
Assumed (flags): the achieved GPU rate, the latency-bound rates of filtering expert frames
and of scoring, the collection rate, and the experts' episode lengths (EPISODE_STEPS).
GPU-hours are FLOPs / rate for training; filtering and scoring are charged by time x the
GPU share their stage asks for. See docs/scaling.md ("The plan at full scale").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ditto.agents.bench import synthetic_latents
from ditto.agents.registry import get_method
from ditto.data import Episode
from ditto.envs import env_spec
from ditto.experiments.grid import _agent_config, _world_model_config, load_grid
from ditto.world_model.bench import bench_mode, count_flops
from ditto.world_model.model import WorldModel

# Mean agent steps per episode of the RL-Zoo PPO experts: eval_timesteps / eval_episodes in
# rl-baselines3-zoo's benchmark.md (BeamRider 598926/46, Breakout 600418/60, Qbert 600248/83,
# SpaceInvaders 603771/136, BipedalWalker 149826/233). MsPacman is not in that table: assumed.
EPISODE_STEPS = {
    "ALE/BeamRider-v5": 13020,
    "ALE/Breakout-v5": 10007,
    "ALE/MsPacman-v5": 1000,  # assumed
    "ALE/Qbert-v5": 7232,
    "ALE/SpaceInvaders-v5": 4440,
    "BipedalWalker-v3": 643,
}
FRAME_BYTES = 64 * 64  # one uint8 grayscale frame, as a dataset and pixel BC store it


def nbytes(obj) -> int:
    """Bytes of every tensor in a (nested) state dict."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    return 0


def count_agent(grid, plan, preset: str, algo: str) -> dict:
    """FLOPs of one update, checkpoint and snapshot bytes of one cell of `algo` on plan's env."""
    torch.manual_seed(0)
    spec = env_spec(plan.env)
    config = _agent_config(grid, plan, preset, algo, grid.expert_episodes[0], grid.seeds[0])
    method = get_method(algo)
    if method.world_model:
        model = WorldModel(spec, _world_model_config(grid, plan, preset)).requires_grad_(False)
        algo_ = method.algorithm(
            model, synthetic_latents(model, 4, 200, config.horizon, "cpu"), config
        )
    else:  # pixel BC: synthetic episodes
        rng = np.random.default_rng(0)
        obs = rng.integers(0, 256, (201, *spec.obs_shape), dtype=np.uint8)
        act = (
            rng.integers(0, spec.action.n, 200)
            if spec.action.is_discrete
            else rng.uniform(-1, 1, (200, spec.action.n)).astype(np.float32)
        )
        episode = Episode(obs, act, np.zeros(200, np.float32), False, True)
        algo_ = method.algorithm([episode] * 4, spec, config, torch.device("cpu"))
    flops = count_flops(lambda: algo_.update(0, torch.Generator().manual_seed(0)))
    states = {k: v.state_dict() for k, v in algo_.stateful().items()}
    return {
        "gflop": flops / 1e9,
        "steps": config.steps,
        "checkpoint": nbytes(states),
        "snapshot": nbytes(algo_.policy.state_dict()),
        "keep": config.keep_checkpoints,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("grid", nargs="?", default="configs/paper.yaml")
    p.add_argument("--tflops", type=float, default=50.0, help="achieved TFLOP/s per GPU")
    p.add_argument("--filter-fps", type=float, default=3000, help="expert frames filtered per s")
    p.add_argument("--score-sps", type=float, default=2000, help="agent steps per s, one scorer")
    p.add_argument("--collect-sps", type=float, default=1000, help="agent steps per s, collection")
    p.add_argument("--wm-steps", type=int, default=1_100_000, help="also priced (the paper's most)")
    p.add_argument("--gpus", type=int, nargs="*", default=[8, 32, 64, 128])
    p.add_argument("--count-batch", type=int, default=5, help="world-model FLOPs counted at")
    args = p.parse_args()

    grid = load_grid(args.grid)
    scored = (grid.evaluation.checkpoints or 10) * (grid.evaluation.episodes or 20)
    share = {"world_model": 1.0, "agent": 1.0, "score": 0.25}  # the Ray stages' GPU defaults
    share |= {k: v["gpus"] for k, v in grid.resources.items() if "gpus" in v}
    hour, rate, top = 3600.0, args.tflops * 1e12, max(grid.expert_episodes)
    gpu_h = dict.fromkeys(["world_model", "agent: updates", "agent: filter expert", "score"], 0.0)
    tasks = {"data": len(grid.envs), "world_model": 0, "agent": 0}
    data_b = wm_b = agent_b = collect_h = score_task_h = path = 0.0
    benched, counted = {}, {}
    atari = next(e.env for e in grid.envs if env_spec(e.env).action.is_discrete)
    print(f"# {args.grid}; torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    for plan in grid.envs:
        length = EPISODE_STEPS[plan.env]
        frames = (plan.expert_episodes + plan.noisy_episodes + plan.random_episodes) * length
        data_b += frames * (FRAME_BYTES + 8 + 4)  # frame, action (int64 or 2 x f32), reward
        collect_h += frames / args.collect_sps / hour
        for preset in grid.presets:
            wm = _world_model_config(grid, plan, preset)
            if preset not in benched:  # actions are padded to 18: one count serves every env
                b = benched[preset] = bench_mode(
                    preset, "fp32", torch.device("cpu"), atari, 1, 0, args.count_batch, None
                )
                print(
                    f"# world model {preset}: {b['params'] / 1e6:.1f}M params, "
                    f"{b['gflop_per_step'] * wm.batch / args.count_batch / 1e3:.2f} TFLOP/step at "
                    f"{wm.batch}x{wm.length} (counted); this CPU: {b['step_s']:.1f} s/step at "
                    f"{args.count_batch}x{wm.length} (measured)"
                )
            b = benched[preset]
            wm_h = wm.steps * b["gflop_per_step"] * 1e9 * wm.batch / args.count_batch / rate / hour
            gpu_h["world_model"] += wm_h * share["world_model"]
            wm_b += 12 * b["params"]  # fp32 weights and AdamW's two moments
            tasks["world_model"] += 1
            longest = 0.0
            for algo in grid.algos:
                key = (preset, algo, env_spec(plan.env).action.is_discrete)
                if key not in counted:  # FLOPs differ by the action count alone
                    c = counted[key] = count_agent(grid, plan, preset, algo)
                    print(
                        f"# {algo} ({'discrete' if key[2] else 'continuous'}): {c['gflop']:.1f} "
                        f"GFLOP/update (counted), {c['steps']:,} updates, checkpoint "
                        f"{c['checkpoint'] / 1e6:.1f} MB, snapshot {c['snapshot'] / 1e6:.2f} MB"
                    )
                c = counted[key]
                world = get_method(algo).world_model
                for n_e in grid.expert_episodes:
                    k = len(grid.seeds)
                    train = c["steps"] * c["gflop"] * 1e9 / rate / hour
                    filt = n_e * length / args.filter_fps / hour if world else 0.0
                    score = scored * length / args.score_sps / hour
                    gpu_h["agent: updates"] += k * train * share["agent"]
                    gpu_h["agent: filter expert"] += k * filt * share["agent"]
                    gpu_h["score"] += k * score * share["score"]
                    score_task_h += k * score
                    agent_b += k * (c["checkpoint"] + c["keep"] * c["snapshot"])
                    tasks["agent"] += k
                    longest = max(longest, train + filt + score)
            latent = (wm.deter + wm.stoch * wm.classes + 18) * 4 + 16  # features, actions, indices
            print(
                f"# {plan.env}: {length:,} steps/episode (assumed), data {frames * 4108 / 1e9:.1f} GB; "
                f"on the device at N_E={top}: latents {top * length * latent / 1e9:.1f} GB, "
                f"pixel BC's frames {top * length * (FRAME_BYTES + 80) / 1e9:.1f} GB"
            )
            # The critical path: an env's collection, its world model on 8 GPUs (one node under
            # torchrun, assumed to scale linearly), its longest cell; the longest over the envs.
            path = max(path, frames / args.collect_sps / hour + wm_h / 8 + longest)
    if "ditto" in grid.algos:  # the nearest-latent reward's search at the largest N_E
        ditto = _agent_config(grid, grid.envs[0], grid.presets[0], "ditto", top, 0)
        n = top * max(EPISODE_STEPS[e.env] for e in grid.envs)
        flop = 2 * ditto.batch * ditto.horizon * n * wm.deter
        print(
            f"# reward_match=nearest at N_E={top} on the longest game: {n / 1e6:.1f}M latents "
            f"({n * wm.deter * 4 / 1e9:.0f} GB of h), +{flop / 1e12:.0f} TFLOP per update "
            f"(2 x {ditto.batch} x {ditto.horizon} x N x {wm.deter}): "
            f"{flop * ditto.steps / rate / hour:.0f} GPU-h per cell"
        )
    total = sum(gpu_h.values())
    longer = total + gpu_h["world_model"] * (args.wm_steps / wm.steps - 1)
    print(
        f"\nassumed: {args.tflops:g} TFLOP/s per GPU, {args.filter_fps:g} expert frames/s filtered, "
        f"{args.score_sps:g} agent steps/s per scorer, {args.collect_sps:g} steps/s collected\n"
    )
    print(
        "| stage | tasks | GPU-hours | per task | CPU-hours | storage |\n|---|---|---|---|---|---|"
    )
    rows = [
        ("data", tasks["data"], 0.0, collect_h, data_b),
        ("world_model", tasks["world_model"], gpu_h["world_model"], 0, wm_b),
        ("agent: updates", tasks["agent"], gpu_h["agent: updates"], 0, agent_b),
        ("agent: filter expert", tasks["agent"], gpu_h["agent: filter expert"], 0, 0),
        ("score", tasks["agent"], gpu_h["score"], score_task_h, 0),
    ]
    for stage, n, g, cpu, size in rows:
        print(f"| {stage} | {n} | {g:.1f} | {g / n:.3f} | {cpu:.0f} | {size / 1e9:.1f} GB |")
    print(f"| **total** | | **{total:.1f}** | | | **{(data_b + wm_b + agent_b) / 1e9:.0f} GB** |")
    print(
        f"\nworld models at {args.wm_steps:,} steps instead of {wm.steps:,}: "
        f"{gpu_h['world_model'] * args.wm_steps / wm.steps:.1f} GPU-h; total {longer:.1f} GPU-h"
    )
    ratio = args.wm_steps / wm.steps
    print(f"\n| GPUs | wall time, grid as configured | world models at {args.wm_steps:,} steps |")
    print("|---|---|---|")
    for g in args.gpus:
        long_path = path + (ratio - 1) * gpu_h["world_model"] / tasks["world_model"] / 8
        print(f"| {g} | {max(total / g, path):.1f} h | {max(longer / g, long_path):.1f} h |")
    print(
        f"(critical path, one env's collection + world model on 8 GPUs + longest cell: {path:.1f} h)"
    )


if __name__ == "__main__":
    main()
