"""Does a world model know how actions act? DITTO's reward for different action sequences.

From 512 expert start states, roll the model's prior 15 steps with (a) the
expert's own actions, (b) random actions, (c) one action held throughout, and
print max-cosine(h) to the expert's latent trajectory (mean over the steps,
and at steps 1, 5 and 15). If holding one action scores like the expert's own
actions, imagination ignores the actions and DITTO's reward cannot teach.

    python benchmarks/reward_contrast.py runs/cp3/wm --expert-data runs/cp3/expert --episodes 4
"""

from __future__ import annotations

import argparse

import torch

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.rewards import max_cosine
from ditto.data import Dataset
from ditto.world_model.trainer import load_world_model


def rollout_similarity(model, features, actions_at, horizon):
    """max-cosine(h) per imagined step, (horizon, batch), for actions_at(t) -> (batch, A)."""
    state, imagined = model.state_from_features(features[0]), []
    for t in range(horizon):
        state = model.img_step(state, model.policy_action_input(actions_at(t)))
        imagined.append(model.features(state))
    h = slice(0, model.deter_size)
    return max_cosine(features[1:, :, h], torch.stack(imagined)[..., h])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("world_model")
    parser.add_argument("--expert-data", required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--starts", type=int, default=512)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = load_world_model(args.world_model, "cpu").model
    episodes = list(Dataset(args.expert_data)[: args.episodes])
    expert = ExpertLatents.from_episodes(model, episodes, args.horizon, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    features, actions = expert.windows(
        expert.sample(args.starts, generator)
    )  # actions[t]: taken at t
    n = actions.shape[-1]

    def one_hot(index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(index, n).float()

    policies = {
        "expert's actions": lambda t: actions[t],
        "random": lambda t: one_hot(torch.randint(0, n, (args.starts,), generator=generator)),
        **{
            f"always action {a}": (lambda t, a=a: one_hot(torch.full((args.starts,), a)))
            for a in range(n)
        },
    }
    with torch.no_grad():
        for name, policy in policies.items():
            r = rollout_similarity(model, features, policy, args.horizon)
            print(
                f"{name:>18}: mean {r.mean():.4f}  step 1 {r[0].mean():.4f}  step 5 {r[4].mean():.4f}  "
                f"step {args.horizon} {r[-1].mean():.4f}"
            )


if __name__ == "__main__":
    main()
