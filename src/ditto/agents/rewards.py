"""DITTO's intrinsic reward: how close the learner's latent is to the expert's, by a similarity
chosen by name (`--reward NAME`) from a registry.

    max_cosine(e, l) = (e . l) / max(|e|, |l|)^2   (1 only when identical; r(x, 2x) = 0.5; can be < 0)
    cosine(e, l)     = (e . l) / (|e| |l|)
    neg_l2(e, l)     = -|e - l|

A similarity is a function of the pairs (e, l) it scores, reading what it needs of them: their
dot products, norms or distances (`Pairs`). Written so, one function serves both of DITTO's
matches: the expert latent at the same time index (`matched_similarity`), and the nearest
expert latent of the whole training set (`nearest_similarity`, reward_match="nearest": the
paper's theoretical form), whose search takes all dot products with a chunk of expert latents
from one matrix product and so never builds a batch x N x D tensor.

A new reward is one such function and one line: `register_reward("name", function)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Protocol

import torch

from ditto.errors import ConfigError

_EPS = 1e-8


class Pairs(Protocol):
    """(expert, learner) latent pairs, as a similarity reads them: one entry per pair, each
    computed when first read."""

    dot: torch.Tensor  # e . l
    expert_norm: torch.Tensor  # |e|
    learner_norm: torch.Tensor  # |l|
    distance: torch.Tensor  # |e - l|


Similarity = Callable[[Pairs], torch.Tensor]

REWARDS: dict[str, Similarity] = {}


def register_reward(name: str, similarity: Similarity) -> Similarity:
    """Make `similarity` DITTO's reward `name` (`--reward name`)."""
    if REWARDS.get(name, similarity) is not similarity:
        raise ConfigError(f"another reward is registered as {name!r} already")
    REWARDS[name] = similarity
    return similarity


def reward_function(name: str) -> Similarity:
    if name not in REWARDS:
        raise ConfigError(f"reward must be one of {', '.join(REWARDS)}, got {name!r}")
    return REWARDS[name]


def _max_cosine(pairs: Pairs) -> torch.Tensor:
    return pairs.dot / (torch.maximum(pairs.expert_norm, pairs.learner_norm).square() + _EPS)


def _cosine(pairs: Pairs) -> torch.Tensor:
    return pairs.dot / (pairs.expert_norm * pairs.learner_norm + _EPS)


def _neg_l2(pairs: Pairs) -> torch.Tensor:
    return -pairs.distance


register_reward("max_cosine", _max_cosine)
register_reward("cosine", _cosine)
register_reward("neg_l2", _neg_l2)


class MatchedPairs:
    """expert[i] with learner[i], latents (..., D): the reward at the same time index."""

    def __init__(self, expert: torch.Tensor, learner: torch.Tensor):
        self.expert, self.learner = expert, learner

    @cached_property
    def dot(self) -> torch.Tensor:
        return (self.expert * self.learner).sum(-1)

    @cached_property
    def expert_norm(self) -> torch.Tensor:
        return self.expert.norm(dim=-1)

    @cached_property
    def learner_norm(self) -> torch.Tensor:
        return self.learner.norm(dim=-1)

    @cached_property
    def distance(self) -> torch.Tensor:
        return (self.expert - self.learner).norm(dim=-1)


class _AllPairs:
    """Every learner latent (M, D) with every expert latent of a chunk (N, D): (M, N) entries,
    from one matrix product (the distance from |a|^2 + |b|^2 - 2 a.b)."""

    def __init__(self, learner: torch.Tensor, learner_norm: torch.Tensor, expert: torch.Tensor):
        self.learner, self.learner_norm, self.expert = learner, learner_norm, expert

    @cached_property
    def dot(self) -> torch.Tensor:
        return self.learner @ self.expert.T

    @cached_property
    def expert_norm(self) -> torch.Tensor:
        return self.expert.norm(dim=-1)[None]

    @cached_property
    def distance(self) -> torch.Tensor:
        # clamp: rounding can take the squared distance of near neighbours below 0
        squared = self.learner_norm.square() + self.expert_norm.square() - 2 * self.dot
        return squared.clamp(min=0).sqrt()


def matched_similarity(
    similarity: Similarity, expert: torch.Tensor, learner: torch.Tensor
) -> torch.Tensor:
    """`similarity` of each pair of latents (..., D), expert[i] with learner[i]."""
    return similarity(MatchedPairs(expert, learner))


def max_cosine(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    return matched_similarity(_max_cosine, expert, learner)


def cosine(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    return matched_similarity(_cosine, expert, learner)


def neg_l2(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    return matched_similarity(_neg_l2, expert, learner)


def nearest_similarity(
    learner: torch.Tensor, bank: torch.Tensor, similarity: Similarity, chunk: int = 4096
) -> torch.Tensor:
    """Best `similarity` of each learner latent (..., D) to any of the bank's latents (N, D).

    Computed from pairwise dot products and norms, `chunk` bank rows at a time,
    so that memory stays at (batch x chunk), never (batch x N x D); in fp32 even under bf16
    autocast, where |a|^2 + |b|^2 - 2 a.b of near neighbours would cancel to nothing.
    """
    with torch.autocast(learner.device.type, enabled=False):
        flat = learner.reshape(-1, learner.shape[-1]).float()
        flat_norm = flat.norm(dim=-1, keepdim=True)
        best = torch.full((flat.shape[0],), -torch.inf, device=flat.device)
        for start in range(0, bank.shape[0], chunk):
            pairs = _AllPairs(flat, flat_norm, bank[start : start + chunk].float())
            best = torch.maximum(best, similarity(pairs).max(-1).values)
        return best.reshape(learner.shape[:-1])
