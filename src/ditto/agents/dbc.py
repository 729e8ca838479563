"""D-BC: behaviour cloning on world-model features of the expert data (the action at t from the feature at t)."""

from __future__ import annotations

import torch

from ditto.agents.base import LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import Actor, grad_norm
from ditto.config import AgentConfig
from ditto.world_model.model import WorldModel


class DBC(LatentImitation):
    def __init__(self, model: WorldModel, expert: ExpertLatents, config: AgentConfig):
        super().__init__(model, expert, config)
        self.actor = Actor(model.feature_dim, model.spec.action, config.layers, config.units)
        self.actor.to(expert.features.device)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)

    def stateful(self):
        return {"actor": self.actor, "actor_optim": self.optimizer}

    def update(self, step, generator):
        frames = self.expert.sample_acted(self.config.batch, generator)
        dist = self.actor(self.expert.features[frames])
        log_prob = dist.log_prob(self.expert.actions[frames]).mean()
        entropy = dist.entropy().mean()
        loss = -log_prob - self.config.dbc_entropy * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm(self.actor)
        self.optimizer.step()
        return {
            "losses/actor": loss.item(),
            "charts/actor_grad_norm": norm.item(),
            "charts/log_prob": log_prob.item(),
            "charts/entropy": entropy.item(),
        }
