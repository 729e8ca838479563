"""The recurrent state-space model (DreamerV2): deterministic GRU state h, categorical state z.

    h_t = GRU(h_{t-1}, in(z_{t-1}, a_t))     a_t: pre-action, the action that led to frame t
    prior      p(z_t | h_t)       = img_out(h_t)
    posterior  q(z_t | h_t, e_t)  = obs_out(h_t, e_t)   e_t: the encoder's embedding of frame t

Feature layout (the one definition, used by the decoder and every agent):
    features(state) = concat(h, z)  with h of size `deter` first, then z as
    `stoch` one-hot vectors of `classes` entries, flattened: size deter + stoch * classes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class State(NamedTuple):
    """An RSSM state. Leading dims (B,) for one step, (B, T) for a sequence."""

    deter: torch.Tensor  # (..., deter) h
    stoch: torch.Tensor  # (..., stoch * classes) one-hot samples of z, flattened
    logits: torch.Tensor  # (..., stoch, classes) of the distribution z was sampled from


def stack_states(states: list[State], dim: int = 1) -> State:
    return State(*(torch.stack(parts, dim) for parts in zip(*states, strict=True)))


def index_state(state: State, index) -> State:
    return State(*(part[index] for part in state))


def detach_state(state: State) -> State:
    return State(*(part.detach() for part in state))


class NormGRUCell(nn.Module):
    """DreamerV2's GRU cell: one linear layer with LayerNorm; update gate biased towards keeping h."""

    def __init__(self, input_size: int, size: int):
        super().__init__()
        self.linear = nn.Linear(input_size + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, candidate, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        candidate = torch.tanh(reset * candidate)
        update = torch.sigmoid(update - 1.0)
        return update * candidate + (1.0 - update) * h


def _mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ELU(), nn.Linear(hidden, out_dim)
    )


class RSSM(nn.Module):
    def __init__(
        self, action_dim: int, embed_dim: int, deter: int, hidden: int, stoch: int, classes: int
    ):
        super().__init__()
        self.deter_size, self.stoch_size, self.classes = deter, stoch, classes
        self.img_in = nn.Sequential(
            nn.Linear(stoch * classes + action_dim, hidden), nn.LayerNorm(hidden), nn.ELU()
        )
        self.gru = NormGRUCell(hidden, deter)
        self.img_out = _mlp_head(deter, hidden, stoch * classes)
        self.obs_out = _mlp_head(deter + embed_dim, hidden, stoch * classes)

    @property
    def feature_dim(self) -> int:
        return self.deter_size + self.stoch_size * self.classes

    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        """The all-zero state every episode starts from."""
        device = device or self.img_in[0].weight.device
        zeros = torch.zeros
        return State(
            zeros(batch, self.deter_size, device=device),
            zeros(batch, self.stoch_size * self.classes, device=device),
            zeros(batch, self.stoch_size, self.classes, device=device),
        )

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state.deter, state.stoch], -1)

    def state_from_features(self, features: torch.Tensor) -> State:
        """The inverse of features(); logits are not part of the features and come back as zeros."""
        deter, stoch = features.split([self.deter_size, self.stoch_size * self.classes], -1)
        logits = torch.zeros(
            *features.shape[:-1], self.stoch_size, self.classes, device=features.device
        )
        return State(deter, stoch, logits)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One-hot sample per variable with straight-through gradients, flattened.

        Gumbel-max draws the sample in one vectorised op; the straight-through
        estimator passes the gradient of the probabilities.
        """
        logits = logits.float()
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        sample = F.one_hot((logits + gumbel).argmax(-1), self.classes).to(logits.dtype)
        probs = logits.softmax(-1)
        sample = sample + probs - probs.detach()
        return sample.flatten(-2)

    def _next_deter(self, state: State, action: torch.Tensor) -> torch.Tensor:
        """h' = GRU(h, in(z, a)): the step shared by the prior and the posterior."""
        return self.gru(self.img_in(torch.cat([state.stoch, action], -1)), state.deter)

    def _prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        return self.img_out(deter).reshape(*deter.shape[:-1], self.stoch_size, self.classes)

    def img_step(self, state: State, action: torch.Tensor) -> State:
        """Prior step: h' = GRU(h, in(z, a)), z' ~ p(z' | h')."""
        deter = self._next_deter(state, action)
        logits = self._prior_logits(deter)
        return State(deter, self._sample(logits).to(deter.dtype), logits)

    def obs_step(
        self, state: State, action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor
    ) -> State:
        """Posterior step: h' as in img_step, z' ~ q(z' | h', e); the state is reset to initial where is_first."""
        keep = (~is_first).to(state.deter.dtype)[:, None]
        state = State(state.deter * keep, state.stoch * keep, state.logits * keep[..., None])
        deter = self._next_deter(state, action * keep)
        logits = self.obs_out(torch.cat([deter, embed], -1))
        logits = logits.reshape(*logits.shape[:-1], self.stoch_size, self.classes)
        return State(deter, self._sample(logits).to(deter.dtype), logits)

    def observe(
        self,
        embeds: torch.Tensor,
        actions: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
    ) -> State:
        """Filter a sequence: embeds (B, T, E), actions (B, T, A), is_first (B, T) -> posteriors (B, T, ...).

        The prior is not computed here: it depends only on each step's h, so
        kl_loss applies its head to all steps at once, outside the sequential loop.
        """
        if state is None:
            state = self.initial(embeds.shape[0], embeds.device)
        posts = []
        for t in range(embeds.shape[1]):
            state = self.obs_step(state, actions[:, t], embeds[:, t], is_first[:, t])
            posts.append(state)
        return stack_states(posts)

    def kl_loss(
        self, post: State, balance: float, free_nats: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """KL balancing between the posteriors and their priors p(z_t | h_t), mean over batch:
        balance * KL(sg(q) || p) + (1 - balance) * KL(q || sg(p)).

        Returns (loss, KL(q || p) value for logging).
        """
        q, p = post.logits.float(), self._prior_logits(post.deter).float()
        kl_value = _categorical_kl(q, p)
        kl_prior = _categorical_kl(q.detach(), p)  # trains the prior towards the posterior
        kl_post = _categorical_kl(q, p.detach())  # regularises the posterior
        if free_nats > 0:
            kl_prior, kl_post = kl_prior.clamp(min=free_nats), kl_post.clamp(min=free_nats)
        loss = balance * kl_prior.mean() + (1.0 - balance) * kl_post.mean()
        return loss, kl_value.mean()


def _categorical_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """KL(q || p) of independent categoricals, summed over the variables: (..., stoch, classes) -> (...)."""
    q_log = q_logits.log_softmax(-1)
    p_log = p_logits.log_softmax(-1)
    return (q_log.exp() * (q_log - p_log)).sum((-2, -1))
