"""Actor and critic networks: MLPs on world-model features (or on CNN embeddings for pixel BC).

Two small policy heads, one per action kind, with the same interface:

    dist = actor(features)
    action = dist.sample()            # discrete: one-hot (..., n); continuous: (..., n) in [low, high]
    dist.log_prob(action), dist.entropy(), dist.mode()
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ditto.specs import ActionSpec


class OutputLinear(nn.Linear):
    """A head's last layer, computed in fp32 even under bf16 autocast. A bf16 output keeps 8
    bits of mantissa: a value near 20 would move in steps of 0.125, as large as the rewards
    it sums, and logits and discriminator scores would be as coarse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def grad_norm(module: nn.Module) -> torch.Tensor:
    """The total norm of a module's gradients. Every method logs it for its policy, so that a
    non-finite gradient stops training at its update, before the NaN weights it leaves are
    saved (or sampled from, which torch.multinomial refuses with a raw error)."""
    return nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None])


def mlp(in_dim: int, out_dim: int, layers: int, units: int) -> nn.Sequential:
    """`layers` hidden layers of `units` with ReLU, then a linear output in fp32."""
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(in_dim if i == 0 else units, units), nn.ReLU()]
    parts.append(OutputLinear(units if layers else in_dim, out_dim))
    return nn.Sequential(*parts)


class OneHotCategorical:
    """A categorical over n actions whose samples are one-hot vectors (the world model's input)."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits.float().log_softmax(-1)

    def sample(self) -> torch.Tensor:
        index = torch.multinomial(self.logits.exp().reshape(-1, self.logits.shape[-1]), 1)
        return F.one_hot(index.reshape(self.logits.shape[:-1]), self.logits.shape[-1]).float()

    def mode(self) -> torch.Tensor:
        return F.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).float()

    def log_prob(self, one_hot: torch.Tensor) -> torch.Tensor:
        return (self.logits * one_hot).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)


class TanhNormal:
    """A Gaussian squashed by tanh and scaled to [low, high]; rsample keeps gradients (dynamics backprop)."""

    def __init__(
        self, mean: torch.Tensor, std: torch.Tensor, low: torch.Tensor, high: torch.Tensor
    ):
        self.mean, self.std = mean.float(), std.float()
        self.scale, self.shift = (high - low) / 2, (high + low) / 2

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u) * self.scale + self.shift

    def sample(self) -> torch.Tensor:
        """Reparameterised: gradients flow to the mean and std."""
        return self._squash(self.mean + self.std * torch.randn_like(self.mean))

    def mode(self) -> torch.Tensor:
        return self._squash(self.mean)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        y = ((action - self.shift) / self.scale).clamp(-0.999999, 0.999999)
        u = torch.atanh(y)
        normal = (
            -0.5 * ((u - self.mean) / self.std).square()
            - self.std.log()
            - 0.5 * math.log(2 * math.pi)
        )
        return (normal - torch.log(self.scale * (1 - y.square()) + 1e-6)).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the Gaussian before the squash (the usual stand-in; the squashed one has no closed form)."""
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.std.log()).sum(-1)


class Actor(nn.Module):
    def __init__(self, in_dim: int, action: ActionSpec, layers: int, units: int):
        super().__init__()
        self.discrete = action.is_discrete
        self.net = mlp(in_dim, action.n if self.discrete else 2 * action.n, layers, units)
        if not self.discrete:
            self.register_buffer("low", torch.tensor(action.low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(action.high, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> OneHotCategorical | TanhNormal:
        out = self.net(features)
        if self.discrete:
            return OneHotCategorical(out)
        mean, std = out.float().chunk(2, -1)
        std = 0.1 + 0.9 * torch.sigmoid(
            std + 2.0
        )  # DreamerV2's bounded std: in (0.1, 1), starts near 1
        return TanhNormal(mean, std, self.low, self.high)


class Critic(nn.Module):
    def __init__(self, in_dim: int, layers: int, units: int):
        super().__init__()
        self.net = mlp(in_dim, 1, layers, units)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1).float()
