"""Wasserstein domain critic with gradient penalty (Gulrajani et al., 2017).

The critic ``D`` scores features; its loss ``D(target) - D(source)`` (means over the batch) plus
``weight * gradient_penalty`` estimates the negated Wasserstein-1 distance between the source and
target feature distributions, and the extractor lowers that distance by raising ``D(target)``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["WassersteinCritic", "gradient_penalty"]


class WassersteinCritic(nn.Module):
    """MLP ``(B, F)`` features -> ``(B,)`` scores: ``layers`` x [linear, LeakyReLU(0.2)], linear.

    No normalisation layers: the gradient penalty is per sample, which batch norm would break.
    """

    def __init__(self, features: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        mods, width = [], features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def gradient_penalty(critic: nn.Module, source: torch.Tensor, target: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``mean((||grad D(x)|| - 1)^2)`` at ``x = u source + (1 - u) target``, ``u ~ U(0, 1)`` per
    sample (``source``, ``target``: ``(B, F)``, paired row by row). Differentiable with respect to
    the critic's parameters (``create_graph``); the inputs are detached."""
    u = torch.rand(source.shape[0], 1, generator=generator, device=generator.device if generator else None)
    u = u.to(source)
    mixed = (u * source.detach() + (1 - u) * target.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.norm(dim=-1) - 1).square().mean()
