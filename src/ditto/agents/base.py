"""What every world-model imitation method shares: an actor on latents, and its diagnostics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ditto.agents.expert_data import ExpertLatents
from ditto.agents.networks import Actor
from ditto.agents.rewards import max_cosine
from ditto.agents.rollout import Rollout, imagine
from ditto.config import AgentConfig
from ditto.errors import DittoError
from ditto.specs import EnvSpec
from ditto.world_model.model import FEATURE_Z, WorldModel


@dataclass(frozen=True)
class LatentConfig(AgentConfig):
    """The settings of every method whose policy acts on world-model features."""

    horizon: int = 15  # H: imagination steps from each expert start state
    # what of z the actor sees: "sample" (the paper) or "probs" (z's probabilities)
    actor_z: str = "sample"

    CHOICES = {"actor_z": FEATURE_Z}
    PRESETS = {"debug": {"horizon": 4}}


class LatentImitation(ABC):
    """An imitation method whose policy acts on world-model features.

    Subclasses set self.actor and implement update(); stateful() names what a
    checkpoint must hold (networks and optimizers).
    """

    actor: Actor
    # Whether it learns from windows of `horizon` + 1 expert latents (rollouts from expert
    # states), so that it needs an expert episode longer than the horizon.
    uses_windows: ClassVar[bool] = True

    def __init__(self, model: WorldModel, expert: ExpertLatents, config: LatentConfig):
        if self.uses_windows and expert.num_windows == 0:
            raise DittoError(
                f"no expert episode is longer than the horizon {config.horizon}; use a shorter --horizon"
            )
        self.model, self.expert, self.config = model, expert, config

    @property
    def policy(self) -> Actor:
        """What acts: the snapshots and evaluation hold it."""
        return self.actor

    @classmethod
    def deployed_policy(cls, config: LatentConfig, spec: EnvSpec, feature_dim: int) -> Actor:
        """An untrained policy of the shape the snapshots hold, for evaluation to load them into."""
        actor = Actor(feature_dim, spec.action, config.layers, config.units)
        # What of z it acts on goes with it: evaluation builds the deployed agent from it alone.
        actor.actor_z = config.actor_z
        return actor

    @abstractmethod
    def stateful(self) -> dict[str, nn.Module | torch.optim.Optimizer]: ...

    @abstractmethod
    def update(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """Update number `step` (from 0); returns scalar metrics."""

    def h(self, features: torch.Tensor) -> torch.Tensor:
        return features[..., : self.model.deter_size]

    def imagine_windows(
        self, actor: Actor, expert: ExpertLatents, starts: torch.Tensor
    ) -> tuple[torch.Tensor, Rollout]:
        """The expert windows (H+1, B, F) beginning at `starts`, and `actor`'s rollout from their
        first states, acting on what of z config.actor_z says."""
        expert_features, _ = expert.windows(starts)
        rollout = imagine(
            self.model,
            actor,
            expert_features[0],
            expert.horizon,
            self.config.actor_z,
            expert.actor_features[starts],
        )
        return expert_features, rollout

    @torch.no_grad()
    def diagnostics(
        self, validation: ExpertLatents, policy: Actor, windows: int = 256
    ) -> dict[str, float]:
        """Held-out latent distance L_d = 1 - max-cosine(h) (the paper's predictor of real return)
        and how often the policy's mode is the expert's action, for `policy` (the deployed one)."""
        generator = torch.Generator().manual_seed(0)  # the same windows every time
        metrics = {}
        if validation.num_windows:
            starts = validation.sample(windows, generator)
            expert_features, rollout = self.imagine_windows(policy, validation, starts)
            similarity = max_cosine(self.h(expert_features[1:]), self.h(rollout.features[1:]))
            metrics["val/latent_distance"] = float(1 - similarity.mean())
        frames = validation.sample_acted(windows, generator)
        predicted = policy(validation.actor_features[frames]).mode()
        expert_actions = validation.actions[frames]
        if policy.discrete:
            metrics["val/action_accuracy"] = float(
                (predicted.argmax(-1) == expert_actions.argmax(-1)).float().mean()
            )
        else:
            metrics["val/action_mse"] = float((predicted - expert_actions).square().mean())
        return metrics
