"""The imagination rollout, written once and shared by DITTO and D-GAIL."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ditto.agents.networks import Actor
from ditto.world_model.model import WorldModel


@dataclass
class Rollout:
    features: torch.Tensor  # (H+1, B, F): the start state, then the H imagined states
    actions: torch.Tensor  # (H, B, A) policy actions (one-hot or vectors)
    log_probs: torch.Tensor  # (H, B)
    entropies: torch.Tensor  # (H, B)


def imagine(model: WorldModel, actor: Actor, start_features: torch.Tensor, horizon: int) -> Rollout:
    """Roll the actor out for `horizon` steps in the world model's prior from `start_features` (B, F).

    Discrete actors learn by REINFORCE, so they see detached features and no
    gradient flows through the model; continuous actors learn by backprop
    through the dynamics, so the features keep their gradient to the actions.
    """
    state = model.state_from_features(start_features)
    features = [start_features]
    actions, log_probs, entropies = [], [], []
    for _ in range(horizon):
        dist = actor(features[-1].detach() if actor.discrete else features[-1])
        action = dist.sample()
        if actor.discrete:
            action = action.detach()
        log_probs.append(dist.log_prob(action.detach()))
        entropies.append(dist.entropy())
        actions.append(action)
        state = model.img_step(state, model.policy_action_input(action))
        features.append(model.features(state))
    return Rollout(
        torch.stack(features), torch.stack(actions), torch.stack(log_probs), torch.stack(entropies)
    )
