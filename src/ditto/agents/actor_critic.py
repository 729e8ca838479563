"""Actor-critic in imagination (DreamerV2 style), shared by DITTO and D-GAIL.

Given an imagined rollout and its rewards:
    targets  = lambda-returns bootstrapped from a target critic (refreshed every `target_every` updates)
    critic   = squared error to the targets
    actor    = discrete:   REINFORCE with the advantage (target - baseline), normalised per batch,
                           plus an entropy bonus; no gradient through the model
               continuous: maximise the targets by backprop through the model dynamics,
                           plus a small entropy bonus
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ditto.agents.base import LatentConfig
from ditto.agents.networks import Actor, Critic
from ditto.agents.returns import lambda_returns
from ditto.agents.rollout import Rollout
from ditto.specs import ActionSpec


@dataclass(frozen=True)
class ActorCriticConfig(LatentConfig):
    """The settings of the methods that learn from rewards in imagination (DITTO, D-GAIL)."""

    critic_lr: float = 3e-4  # critic learning rate
    gamma: float = 0.95  # discount of the lambda-returns
    lam: float = 0.95  # lambda of the lambda-returns
    target_every: int = 100  # refresh the target critic every this many updates (the code: 200)
    entropy: float = 0.05  # actor entropy bonus, discrete actions (REINFORCE)
    entropy_continuous: float = 1e-4  # actor entropy bonus, continuous actions (dynamics backprop)

    _FRACTIONS = ("gamma", "lam")
    PRESETS = {"debug": {"target_every": 5}}


class ActorCritic(nn.Module):
    def __init__(self, feature_dim: int, action: ActionSpec, config: ActorCriticConfig):
        super().__init__()
        self.config = config
        self.actor = Actor(feature_dim, action, config.layers, config.units)
        self.critic = Critic(feature_dim, config.layers, config.units)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optim": self.actor_optimizer, "critic_optim": self.critic_optimizer}

    def update(self, rollout: Rollout, rewards: torch.Tensor, step: int) -> dict[str, float]:
        """Update number `step` (from 0): one actor and one critic step; rewards (H, B) for the H imagined steps."""
        cfg = self.config
        if step % cfg.target_every == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())

        values = self.target_critic(rollout.features)  # (H+1, B)
        targets = lambda_returns(rewards.float(), values, cfg.gamma, cfg.lam)  # (H, B)
        if self.actor.discrete:
            advantage = (targets - values[:-1]).detach()
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
            objective = rollout.log_probs * advantage
            entropy_scale = cfg.entropy
        else:
            objective = targets
            entropy_scale = cfg.entropy_continuous
        actor_loss = -(objective + entropy_scale * rollout.entropies).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_grad_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), 100.0)
        self.actor_optimizer.step()

        critic_loss = (
            0.5 * (self.critic(rollout.features[:-1].detach()) - targets.detach()).square().mean()
        )
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_grad_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), 100.0)
        self.critic_optimizer.step()
        return {
            "losses/actor": actor_loss.item(),
            "losses/critic": critic_loss.item(),
            "charts/entropy": rollout.entropies.mean().item(),
            "charts/reward": rewards.detach().mean().item(),  # continuous: they carry gradients
            "charts/value": values.detach().mean().item(),
            "charts/actor_grad_norm": actor_grad_norm.item(),  # why: networks.grad_norm
            "charts/critic_grad_norm": critic_grad_norm.item(),
        }
