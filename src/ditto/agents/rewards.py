"""DITTO's intrinsic reward: how close the learner's latent is to the expert's.

    max_cosine(e, l) = (e . l) / max(|e|, |l|)^2   (1 only when identical; r(x, 2x) = 0.5; can be < 0)
    cosine(e, l)     = (e . l) / (|e| |l|)
    neg_l2(e, l)     = -|e - l|

`reward_match="nearest"` is the paper's theoretical form: the similarity to the
closest expert latent of the whole training set, not only the one at the same
time index (a batched nearest-neighbour search by the same similarity).
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def max_cosine(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    norm = torch.maximum(expert.norm(dim=-1), learner.norm(dim=-1))
    return (expert * learner).sum(-1) / (norm.square() + _EPS)


def cosine(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    return (expert * learner).sum(-1) / (expert.norm(dim=-1) * learner.norm(dim=-1) + _EPS)


def neg_l2(expert: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
    return -(expert - learner).norm(dim=-1)


SIMILARITIES = {"max_cosine": max_cosine, "cosine": cosine, "neg_l2": neg_l2}


def nearest_similarity(
    learner: torch.Tensor, bank: torch.Tensor, similarity: str, chunk: int = 4096
) -> torch.Tensor:
    """Best similarity of each learner latent (..., D) to any of the bank's latents (N, D).

    Computed from pairwise dot products and norms, `chunk` bank rows at a time,
    so that memory stays at (batch x chunk), never (batch x N x D); in fp32 even under bf16
    autocast, where |a|^2 + |b|^2 - 2 a.b of near neighbours would cancel to nothing.
    """
    with torch.autocast(learner.device.type, enabled=False):
        return _nearest_similarity(learner, bank, similarity, chunk)


def _nearest_similarity(
    learner: torch.Tensor, bank: torch.Tensor, similarity: str, chunk: int
) -> torch.Tensor:
    flat = learner.reshape(-1, learner.shape[-1]).float()
    flat_norm = flat.norm(dim=-1, keepdim=True)
    best = torch.full((flat.shape[0],), -torch.inf, device=flat.device)
    for start in range(0, bank.shape[0], chunk):
        part = bank[start : start + chunk].float()
        part_norm = part.norm(dim=-1)[None]
        dots = flat @ part.T
        if similarity == "max_cosine":
            scores = dots / (torch.maximum(flat_norm, part_norm).square() + _EPS)
        elif similarity == "cosine":
            scores = dots / (flat_norm * part_norm + _EPS)
        else:  # neg_l2 via |a - b|^2 = |a|^2 + |b|^2 - 2 a.b
            scores = -(flat_norm.square() + part_norm.square() - 2 * dots).clamp(min=0).sqrt()
        best = torch.maximum(best, scores.max(-1).values)
    return best.reshape(learner.shape[:-1])
