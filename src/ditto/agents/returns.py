"""Lambda-returns over an imagined trajectory (DreamerV2)."""

from __future__ import annotations

import torch


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """Targets R_0..R_{H-1} for the states s_0..s_{H-1} of an H-step rollout.

    rewards: (H, B), rewards[k] is earned by the step from s_k to s_{k+1}.
    values:  (H + 1, B), the (target) critic's values of s_0..s_H.

        R_H = v(s_H)
        R_k = r_k + gamma * ((1 - lam) * v(s_{k+1}) + lam * R_{k+1})
    """
    horizon = rewards.shape[0]
    targets = [values[-1]]
    for k in reversed(range(horizon)):
        targets.append(rewards[k] + gamma * ((1 - lam) * values[k + 1] + lam * targets[-1]))
    return torch.stack(targets[::-1][:-1])
