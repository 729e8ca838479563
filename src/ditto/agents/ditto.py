"""DITTO: RL in the world model, rewarded for staying close to the expert's latent trajectory.

Each update samples expert windows, starts the learner at the expert state of
the window's first step, rolls it out H steps in imagination, rewards each step
by its similarity to the expert latent at the same time index (or to the
nearest expert latent, reward_match="nearest"), and takes an actor-critic step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ditto.agents.actor_critic import ActorCritic, ActorCriticConfig
from ditto.agents.base import LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.registry import Method, register_method
from ditto.agents.rewards import REWARDS, matched_similarity, nearest_similarity, reward_function
from ditto.world_model.model import WorldModel


@dataclass(frozen=True)
class DittoConfig(ActorCriticConfig):
    algo: str = "ditto"
    # DITTO's reward: r = sim(expert latent, learner latent)
    reward: str = "max_cosine"  # sim: a similarity registered in ditto.agents.rewards
    reward_on: str = "h"  # h (the reference code) | feature (h and z, the paper's text)
    # time: the expert latent at the same index | nearest: any expert latent
    reward_match: str = "time"

    CHOICES = {
        "reward": REWARDS,
        "reward_on": ("h", "feature"),
        "reward_match": ("time", "nearest"),
    }


class Ditto(LatentImitation):
    def __init__(self, model: WorldModel, expert: ExpertLatents, config: DittoConfig):
        super().__init__(model, expert, config)
        self.learner = ActorCritic(model.feature_dim, model.spec.action, config).to(
            expert.features.device
        )
        self.actor = self.learner.actor
        self.similarity = reward_function(config.reward)
        self.bank = self._latent(expert.features) if config.reward_match == "nearest" else None

    def stateful(self):
        return {"learner": self.learner, **self.learner.optimizers()}

    def _latent(self, features: torch.Tensor) -> torch.Tensor:
        """The part of the feature the reward compares: h (default) or all of (h, z)."""
        return self.h(features) if self.config.reward_on == "h" else features

    def reward(self, expert_features: torch.Tensor, learner_features: torch.Tensor) -> torch.Tensor:
        """(H+1, B, F) each -> (H, B): the reward of reaching each imagined state."""
        learner = self._latent(learner_features[1:]).float()
        if self.bank is not None:
            return nearest_similarity(learner, self.bank, self.similarity)
        expert = self._latent(expert_features[1:]).float()
        return matched_similarity(self.similarity, expert, learner)

    def update(self, step, generator):
        starts = self.expert.sample(self.config.batch, generator)
        expert_features, rollout = self.imagine_windows(self.actor, self.expert, starts)
        with torch.set_grad_enabled(
            not self.actor.discrete
        ):  # continuous: backprop through the reward
            rewards = self.reward(expert_features, rollout.features)
        return self.learner.update(rollout, rewards, step)


register_method(Method(DittoConfig, Ditto, label="DITTO", color="tab:blue"))
