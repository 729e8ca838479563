"""D-GAIL: GAIL inside the world model (V-MAIL with a DreamerV2 model).

A discriminator on consecutive pairs (h_t, h_t+1) learns expert = 1, learner = 0,
one update per agent update; the learner's reward is sigmoid(D) on its own
imagined pairs, optimised with the same rollout and actor-critic as DITTO.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ditto.agents.actor_critic import ActorCritic, ActorCriticConfig
from ditto.agents.base import LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import mlp
from ditto.agents.registry import Method, register_method
from ditto.world_model.model import WorldModel


@dataclass(frozen=True)
class DGailConfig(ActorCriticConfig):
    algo: str = "dgail"
    disc_layers: int = 4  # the discriminator: MLP layers
    disc_units: int = 128  # the discriminator: units per layer
    disc_lr: float = 3e-4  # the discriminator's learning rate

    PRESETS = {"debug": {"disc_layers": 2, "disc_units": 16}}


class DGail(LatentImitation):
    def __init__(self, model: WorldModel, expert: ExpertLatents, config: DGailConfig):
        super().__init__(model, expert, config)
        device = expert.features.device
        self.learner = ActorCritic(model.feature_dim, model.spec.action, config).to(device)
        self.actor = self.learner.actor
        self.discriminator = mlp(2 * model.deter_size, 1, config.disc_layers, config.disc_units).to(
            device
        )
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.disc_lr)

    def stateful(self):
        return {
            "learner": self.learner,
            "discriminator": self.discriminator,
            "disc_optim": self.disc_optimizer,
            **self.learner.optimizers(),
        }

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        """(H+1, B, F) -> (H, B) discriminator logits of the consecutive (h_t, h_t+1) pairs."""
        h = self.h(features).float()
        return self.discriminator(torch.cat([h[:-1], h[1:]], -1)).squeeze(-1)

    def update(self, step, generator):
        starts = self.expert.sample(self.config.batch, generator)
        expert_features, rollout = self.imagine_windows(self.actor, self.expert, starts)

        expert_logits = self._logits(expert_features)
        learner_logits = self._logits(rollout.features.detach())
        disc_loss = F.binary_cross_entropy_with_logits(
            expert_logits, torch.ones_like(expert_logits)
        ) + F.binary_cross_entropy_with_logits(learner_logits, torch.zeros_like(learner_logits))
        self.disc_optimizer.zero_grad(set_to_none=True)
        disc_loss.backward()
        self.disc_optimizer.step()

        with torch.set_grad_enabled(not self.actor.discrete):
            rewards = torch.sigmoid(self._logits(rollout.features))
        metrics = self.learner.update(rollout, rewards, step)
        self.discriminator.zero_grad(
            set_to_none=True
        )  # the actor's backprop touched it; D learns only above
        metrics["losses/discriminator"] = disc_loss.item()
        metrics["charts/disc_expert_prob"] = torch.sigmoid(expert_logits).mean().item()
        return metrics


register_method(Method(DGailConfig, DGail, label="D-GAIL", color="tab:green"))
