"""Deployed policies: what acts in the real environment, N envs at a time.

LatentAgent is the DITTO / D-BC / D-GAIL policy: each real frame is filtered
through the world model's encoder and RSSM posterior (with the previous action
as the pre-action, reset at every episode start), and the actor acts on the
resulting feature (with z as its sample or its probabilities, as it was trained:
actor_z). GoalAgent is a LatentAgent whose policy is goal-conditioned (lumos), each
env's goal its mission sentence. PixelAgent is pixel BC acting on (stacked) frames.
"""

from __future__ import annotations

import numpy as np
import torch

from ditto.agents.bc import PixelPolicy
from ditto.agents.networks import Actor
from ditto.specs import ActionSpec
from ditto.world_model.model import WorldModel
from ditto.world_model.rssm import State


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    # A copy, not torch.from_numpy: dataset frames are read-only memory maps, which from_numpy
    # warns about (and a shared CPU tensor would let a caller's later writes show through).
    return torch.tensor(array, device=device)


def _to_env(action: torch.Tensor, spec: ActionSpec) -> np.ndarray:
    if spec.is_discrete:
        return action.argmax(-1).cpu().numpy()
    return action.float().cpu().numpy()


class LatentAgent:
    def __init__(
        self, model: WorldModel, actor: Actor, greedy: bool = False, actor_z: str | None = None
    ):
        """`actor_z`: what of z the actor sees; by default what LatentImitation.deployed_policy
        recorded on it from the run's config (the paper's "sample" on an actor without it)."""
        self.model, self.actor, self.greedy = model, actor, greedy
        self.actor_z = actor_z or getattr(actor, "actor_z", "sample")
        self.device = next(actor.parameters()).device
        self.reset()

    def reset(self) -> None:
        """Forget the filter state (the next act() starts N fresh envs)."""
        self.state: State | None = None
        self.previous: torch.Tensor | None = None

    @torch.no_grad()
    def act(self, frames: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        """frames (N, C, H, W) uint8, is_first (N,) bool -> env actions (N,) or (N, A)."""
        count = len(frames)
        if self.state is None:
            self.state = self.model.initial(count)
            self.previous = torch.zeros(count, self.model.spec.action.n, device=self.device)
        first = _tensor(is_first, self.device)
        pre_action = self.model.policy_action_input(self.previous)
        self.state = self.model.obs_step(
            self.state, pre_action, _tensor(frames, self.device), first
        )
        dist = self.actor(self.model.features(self.state, self.actor_z))
        action = dist.mode() if self.greedy else dist.sample()
        self.previous = action.float()
        return _to_env(action, self.model.spec.action)


class GoalAgent:
    """A LatentAgent whose actor is a goal-conditioned policy (ditto.agents.lumos.GoalPolicy):
    env i acts toward the sentence `set_missions` last gave it, embedded by the policy's own
    sentence encoder. The filter state runs on across a change of mission (a chain's next
    one), as the episode does."""

    def __init__(self, agent: LatentAgent):
        self.agent, self.policy = agent, agent.actor
        self.reset()

    def reset(self) -> None:
        """Forget the filter state, and the embeddings (a new snapshot's encoder differs)."""
        self.agent.reset()
        self.embedded: dict[str, torch.Tensor] = {}
        self.goals: torch.Tensor | None = None

    @torch.no_grad()
    def set_missions(self, missions: list[str]) -> None:
        """Each env's mission (N sentences), for the next act()."""
        # Missions repeat for a whole episode: each is embedded once per snapshot.
        new = [m for m in dict.fromkeys(missions) if m not in self.embedded]
        if new:
            self.embedded.update(zip(new, self.policy.goals.of_missions(new), strict=True))
        self.goals = torch.stack([self.embedded[m] for m in missions])

    def act(self, frames: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        if self.goals is None:
            raise RuntimeError("GoalAgent.act before set_missions: the policy has no goal")
        self.agent.actor = self.policy.toward(self.goals)
        return self.agent.act(frames, is_first)


class PixelAgent:
    def __init__(self, policy: PixelPolicy, spec: ActionSpec, greedy: bool = False):
        self.policy, self.spec, self.greedy = policy, spec, greedy
        self.device = next(policy.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.stack: torch.Tensor | None = None  # (N, k, C, H, W)

    @torch.no_grad()
    def act(self, frames: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        frames_t = _tensor(frames, self.device)
        k = self.policy.frame_stack
        if self.stack is None:
            self.stack = frames_t[:, None].repeat(1, k, 1, 1, 1)
        first = _tensor(is_first, self.device)
        # A new episode fills its stack with its first frame, as training does.
        self.stack[first] = frames_t[first][:, None].expand(-1, k, -1, -1, -1)
        self.stack = torch.cat([self.stack[:, 1:], frames_t[:, None]], 1)
        dist = self.policy(self.stack.flatten(1, 2))
        return _to_env(dist.mode() if self.greedy else dist.sample(), self.spec)


class RandomAgent:
    """Uniformly random actions: the floor of the expert-normalised score."""

    def __init__(self, spec: ActionSpec, seed: int):
        self.spec, self.rng = spec, np.random.default_rng(seed)

    def act(self, frames: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        if self.spec.is_discrete:
            return self.rng.integers(self.spec.n, size=len(frames))
        return self.rng.uniform(
            self.spec.low, self.spec.high, size=(len(frames), self.spec.n)
        ).astype(np.float32)
