"""D-BC: behaviour cloning on world-model features of the expert data (the action at t from the feature at t)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ditto.agents.base import LatentConfig, LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import grad_norm
from ditto.agents.registry import Method, register_method
from ditto.world_model.model import WorldModel


@dataclass(frozen=True)
class DBCConfig(LatentConfig):
    algo: str = "dbc"
    dbc_entropy: float = 0.1  # D-BC's entropy bonus


class DBC(LatentImitation):
    uses_windows = False  # it learns from single expert frames

    def __init__(self, model: WorldModel, expert: ExpertLatents, config: DBCConfig):
        super().__init__(model, expert, config)
        self.actor = self.deployed_policy(config, model.spec, model.feature_dim)
        self.actor.to(expert.features.device)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)

    def stateful(self):
        return {"actor": self.actor, "actor_optim": self.optimizer}

    def update(self, step, generator):
        frames = self.expert.sample_acted(self.config.batch, generator)
        dist = self.actor(self.expert.actor_features[frames])
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


register_method(Method(DBCConfig, DBC, label="D-BC", color="tab:orange"))
