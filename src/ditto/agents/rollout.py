"""The imagination rollout, written once and shared by DITTO and D-GAIL."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ditto.agents.networks import Actor
from ditto.errors import SpecError
from ditto.world_model.model import WorldModel


@dataclass
class Rollout:
    features: torch.Tensor  # (H+1, B, F): the start state, then the H imagined states
    actions: torch.Tensor  # (H, B, A) policy actions (one-hot or vectors)
    log_probs: torch.Tensor  # (H, B)
    entropies: torch.Tensor  # (H, B)


def imagine(
    model: WorldModel,
    actor: Actor,
    start_features: torch.Tensor,
    horizon: int,
    actor_z: str = "sample",
    actor_start: torch.Tensor | None = None,
) -> Rollout:
    """Roll the actor out for `horizon` steps in the world model's prior from `start_features` (B, F).

    The actor sees model.features(state, actor_z) of each imagined state; of the start state,
    `actor_start` (needed with "probs": the start state, rebuilt from its features, has no
    probabilities), else `start_features`. The rollout's features, which the rewards and the
    critic read, are the sampled ones either way.

    Discrete actors learn by REINFORCE, so they see detached features and no
    gradient flows through the model; continuous actors learn by backprop
    through the dynamics, so the features keep their gradient to the actions.
    """
    if actor_z != "sample" and actor_start is None:
        raise SpecError(
            f"imagine with actor_z={actor_z!r} needs actor_start: what the actor sees of the start "
            "states (ExpertLatents.actor_features)"
        )
    state = model.state_from_features(start_features)
    features = [start_features]
    seen = start_features if actor_start is None else actor_start
    actions, log_probs, entropies = [], [], []
    for _ in range(horizon):
        dist = actor(seen.detach() if actor.discrete else seen)
        action = dist.sample()
        if actor.discrete:
            action = action.detach()
        log_probs.append(dist.log_prob(action.detach()))
        entropies.append(dist.entropy())
        actions.append(action)
        state = model.img_step(state, model.policy_action_input(action))
        features.append(model.features(state))
        seen = features[-1] if actor_z == "sample" else model.features(state, actor_z)
    return Rollout(
        torch.stack(features), torch.stack(actions), torch.stack(log_probs), torch.stack(entropies)
    )
