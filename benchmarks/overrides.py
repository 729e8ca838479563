"""Train a world model or an agent with any config overrides, then score the agent.

Written before `ditto train --set KEY=VALUE` could set any config field; kept
because RESULTS.md's commands use it. `ditto train ... --set ...` followed by
`ditto evaluate RUN --num-envs 10 --save` does the same.

What the CartPole studies in RESULTS.md ran:

    python benchmarks/overrides.py world-model small '{"lr": 1e-3, "batch": 8, "steps": 1600}' \
        --data runs/cp3/expert runs/cp3/noisy runs/cp3/random --out runs/cp3/wmB
    python benchmarks/overrides.py agent small '{"algo": "ditto", "expert_episodes": 15, "steps": 1500,
        "batch": 128, "layers": 3, "units": 128, "checkpoint_every": 100, "reward_match": "nearest", "seed": 1}' \
        --world-model runs/long/CartPole-v1/small/world_model --expert-data runs/long/CartPole-v1/data/expert \
        --out runs/nearest/s1 --checkpoints 5 --episodes 10

Both resume a stopped run; the agent is then scored with `evaluate_run`, the
score printed as JSON and saved as the run's eval.json (the same as `ditto
evaluate RUN --checkpoints C --episodes E --num-envs 10 --json --save`: the env
count sets which env seeds the episodes get), so `ditto report DIR`
aggregates these runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ditto.agents.registry import agent_config
from ditto.config import world_model_config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["world-model", "agent"])
    parser.add_argument("preset")
    parser.add_argument("overrides", help="JSON object of config fields")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", nargs="+", help="world-model: datasets")
    parser.add_argument("--world-model", help="agent: world-model run (not for bc)")
    parser.add_argument("--expert-data", help="agent: expert dataset")
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)

    if args.kind == "world-model":
        from ditto.world_model.trainer import train_world_model

        config = world_model_config(args.preset, **overrides)
        train_world_model(args.data, args.out, config, device=args.device, resume=True)
        return
    from ditto.agents.trainer import train_agent
    from ditto.evaluation.protocol import evaluate_run
    from ditto.io import atomic_write_json
    from ditto.runs import EVAL

    config = agent_config(args.preset, **overrides)
    world_model = None if config.algo == "bc" else args.world_model
    train_agent(config, args.expert_data, args.out, world_model, device=args.device, resume=True)
    result = evaluate_run(
        args.out, checkpoints=args.checkpoints, episodes=args.episodes, num_envs=10
    )
    atomic_write_json(Path(args.out) / EVAL, result)
    print(json.dumps({k: v for k, v in result.items() if k != "returns"}))


if __name__ == "__main__":
    main()
