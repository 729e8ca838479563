"""DITTO: RL in the world model, rewarded for staying close to the expert's latent trajectory.

Each update samples expert windows, starts the learner at the expert state of
the window's first step, rolls it out H steps in imagination, rewards each step
by its similarity to the expert latent at the same time index (or to the
nearest expert latent, reward_match="nearest"), and takes an actor-critic step.

With learner_starts = f > 0 (nearest reward only), a fraction f of each batch
starts instead where the previous update's rollouts ended. Chains of rollouts
then follow the learner's own drift for 1 / (1 - f) horizons on average, so
the actor also learns in the states its mistakes lead to, which rollouts of H
steps from expert states rarely reach.
"""

from __future__ import annotations

import torch
from torch import nn

from ditto.agents.actor_critic import ActorCritic
from ditto.agents.base import LatentImitation
from ditto.agents.expert_data import ExpertLatents
from ditto.agents.rewards import SIMILARITIES, nearest_similarity
from ditto.agents.rollout import imagine
from ditto.config import AgentConfig
from ditto.world_model.model import WorldModel


class Ditto(LatentImitation):
    def __init__(self, model: WorldModel, expert: ExpertLatents, config: AgentConfig):
        super().__init__(model, expert, config)
        self.learner = ActorCritic(model.feature_dim, model.spec.action, config).to(
            expert.features.device
        )
        self.actor = self.learner.actor
        self.bank = self._latent(expert.features) if config.reward_match == "nearest" else None
        self.ends = (
            RolloutEnds(config.batch, model.feature_dim).to(expert.features.device)
            if config.learner_starts
            else None
        )

    def stateful(self):
        ends = {"rollout_ends": self.ends} if self.ends is not None else {}
        return {"learner": self.learner, **ends, **self.learner.optimizers()}

    def _latent(self, features: torch.Tensor) -> torch.Tensor:
        """The part of the feature the reward compares: h (default) or all of (h, z)."""
        return self.h(features) if self.config.reward_on == "h" else features

    def reward(self, expert_features: torch.Tensor, learner_features: torch.Tensor) -> torch.Tensor:
        """(H+1, B, F) each -> (H, B): the reward of reaching each imagined state."""
        learner = self._latent(learner_features[1:]).float()
        if self.bank is not None:
            return nearest_similarity(learner, self.bank, self.config.reward)
        return SIMILARITIES[self.config.reward](self._latent(expert_features[1:]).float(), learner)

    def update(self, step, generator):
        starts = self.expert.sample(self.config.batch, generator)
        expert_features, _ = self.expert.windows(starts)
        start_features = expert_features[0]
        if self.ends is not None and step > 0:
            start_features = self.ends.mix_into(
                start_features, self.config.learner_starts, generator
            )
        rollout = imagine(self.model, self.actor, start_features, self.config.horizon)
        if self.ends is not None:
            self.ends.features.copy_(rollout.features[-1].detach())
        with torch.set_grad_enabled(
            not self.actor.discrete
        ):  # continuous: backprop through the reward
            rewards = self.reward(expert_features, rollout.features)
        return self.learner.update(rollout, rewards, step)


class RolloutEnds(nn.Module):
    """The last imagined state of each rollout of the previous update (a buffer, so checkpoints keep it)."""

    def __init__(self, batch: int, feature_dim: int):
        super().__init__()
        self.register_buffer("features", torch.zeros(batch, feature_dim))

    def mix_into(
        self, starts: torch.Tensor, fraction: float, generator: torch.Generator
    ) -> torch.Tensor:
        """`starts` (B, F) with its first round(fraction * B) rows replaced by randomly chosen ends."""
        count = round(fraction * len(starts))
        pick = torch.randint(len(self.features), (count,), generator=generator)
        return torch.cat([self.features[pick.to(starts.device)].to(starts.dtype), starts[count:]])
