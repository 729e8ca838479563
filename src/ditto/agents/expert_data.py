"""Expert episodes as world-model latents: filtered once through the posterior, then cached.

Windows of H+1 consecutive latents (a start state and the H expert states that
follow it) never cross an episode boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ditto.data import Episode
from ditto.world_model.model import WorldModel
from ditto.world_model.rssm import State, index_state


@torch.no_grad()
def posterior_states(
    model: WorldModel, episode: Episode, device: torch.device, chunk: int = 256
) -> State:
    """Posterior states (T+1, ...) of every frame of an episode, filtered chunk by chunk."""
    spec = model.spec
    steps = len(episode.observations)
    pre_actions = np.zeros((steps, *episode.actions.shape[1:]), dtype=episode.actions.dtype)
    pre_actions[1:] = episode.actions
    is_first = np.zeros(steps, dtype=bool)
    is_first[0] = True
    actions = spec.action.encode(pre_actions, valid=~is_first)
    state, chunks = None, []
    for start in range(0, steps, chunk):
        end = min(start + chunk, steps)
        frames = torch.from_numpy(np.array(episode.observations[start:end]))[None].to(device)
        posts, state = model.observe(
            frames,
            torch.from_numpy(actions[start:end])[None].to(device),
            torch.from_numpy(is_first[start:end])[None].to(device),
            state,
        )
        chunks.append(index_state(posts, 0))
    return State(*(torch.cat(parts) for parts in zip(*chunks, strict=True)))


def encode_episode(
    model: WorldModel, episode: Episode, device: torch.device, chunk: int = 256
) -> torch.Tensor:
    """Posterior features (T+1, F) of every frame of an episode."""
    return model.features(posterior_states(model, episode, device, chunk)).float()


def policy_actions(episode: Episode, action_n: int, discrete: bool) -> np.ndarray:
    """The expert's action at each of the T+1 frames as the actor outputs it (one-hot or vector).

    The final frame has no action; its row is zeros and no window uses it as a target.
    """
    steps = len(episode.observations)
    out = np.zeros((steps, action_n), dtype=np.float32)
    if discrete:
        out[np.arange(steps - 1), episode.actions] = 1.0
    else:
        out[:-1] = episode.actions
    return out


@dataclass
class ExpertLatents:
    """Latents and actions of a set of expert episodes, concatenated on the device.

    features: (N, F) every frame's latent; actions: (N, A) the action taken there;
    starts: indices t whose window t..t+H stays inside one episode;
    acted: indices of the frames where the expert acted (all but each episode's last);
    probs: (N, F) every frame's (h, z's probabilities), cached for an actor that sees them
    (actor_z="probs"): state_from_features cannot rebuild them from `features`;
    segments: (start, end, mission) frame indices of play data's segments (Episode.segments),
    an episode without segments as one (start, last frame, None): what goal-conditioned
    methods relabel (ditto.agents.lumos).
    """

    features: torch.Tensor
    actions: torch.Tensor
    starts: torch.Tensor
    acted: torch.Tensor
    horizon: int
    episodes: int
    probs: torch.Tensor | None = None
    segments: tuple[tuple[int, int, str | None], ...] = ()

    @classmethod
    def from_episodes(
        cls,
        model: WorldModel,
        episodes: Sequence[Episode],
        horizon: int,
        device: torch.device,
        actor_z: str = "sample",
    ) -> ExpertLatents:
        """`actor_z`: what of z the actor sees ("probs" caches `probs` too)."""
        action = model.spec.action
        features, probs, actions, starts, acted, offset = [], [], [], [], [], 0
        segments: list[tuple[int, int, str | None]] = []
        for episode in episodes:
            states = posterior_states(model, episode, device)
            feats = model.features(states).float()
            features.append(feats)
            if actor_z != "sample":
                probs.append(model.features(states, actor_z).float())
            actions.append(torch.from_numpy(policy_actions(episode, action.n, action.is_discrete)))
            length = len(feats)
            starts.append(torch.arange(offset, offset + max(length - horizon, 0)))
            acted.append(torch.arange(offset, offset + length - 1))
            if episode.segments:
                segments += [
                    (offset + s.start, offset + s.end, s.mission) for s in episode.segments
                ]
            else:  # the whole episode, unannotated
                segments.append((offset, offset + length - 1, None))
            offset += length
        return cls(
            features=torch.cat(features),
            actions=torch.cat(actions).to(device),
            starts=torch.cat(starts).to(device),
            acted=torch.cat(acted).to(device),
            horizon=horizon,
            episodes=len(episodes),
            probs=torch.cat(probs) if probs else None,
            segments=tuple(segments),
        )

    @property
    def actor_features(self) -> torch.Tensor:
        """(N, F) what the actor sees at each frame: `features`, or `probs` where cached."""
        return self.features if self.probs is None else self.probs

    @property
    def num_windows(self) -> int:
        return int(self.starts.numel())

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) random window start indices (uniform over all windows)."""
        return _choose(self.starts, batch, generator)

    def sample_acted(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) random indices of frames where the expert acted."""
        return _choose(self.acted, batch, generator)

    def windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert latents (H+1, B, F) and actions (H+1, B, A) of the windows beginning at `starts`."""
        index = starts[None] + torch.arange(self.horizon + 1, device=starts.device)[:, None]
        return self.features[index], self.actions[index]


def _choose(indices: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    choice = torch.randint(len(indices), (batch,), generator=generator)
    return indices[choice.to(indices.device)]
