"""Chebyshev spectral graph convolution (Defferrard et al. 2016), batched, sparse Laplacian."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ChebConv", "chebyshev_basis"]


def _lmul(lap: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``L~ @ x`` for ``x`` of shape ``(N, M)``; ``lap`` sparse or dense ``(N, N)``."""
    if lap.is_sparse:
        return torch.sparse.mm(lap, x)
    return lap @ x


def chebyshev_basis(x: torch.Tensor, lap: torch.Tensor, k: int) -> torch.Tensor:
    """``[T_0(L~) x, ..., T_{k-1}(L~) x]`` stacked as ``(B, N, k, C)``, for ``x`` of ``(B, N, C)``.

    Recurrence: ``T_0 x = x``, ``T_1 x = L~ x``, ``T_k x = 2 L~ T_{k-1} x - T_{k-2} x``. The batch
    is folded into the feature axis so each step is one sparse ``(N, N) @ (N, B*C)`` product.
    """
    b, n, c = x.shape
    x0 = x.permute(1, 0, 2).reshape(n, b * c)
    terms = [x0]
    if k > 1:
        x1 = _lmul(lap, x0)
        terms.append(x1)
        for _ in range(2, k):
            x2 = 2.0 * _lmul(lap, x1) - x0
            terms.append(x2)
            x0, x1 = x1, x2
    t = torch.stack(terms, dim=1)  # (N, k, B*C)
    return t.reshape(n, k, b, c).permute(2, 0, 1, 3)  # (B, N, k, C)


class ChebConv(nn.Module):
    """``y = sum_{k<K} T_k(L~) x W_k + b`` on inputs ``(B, N, C_in)`` -> ``(B, N, C_out)``.

    The scaled Laplacian ``L~`` (sparse COO or dense ``(N, N)``, see
    :func:`meshpose.pose2mesh.graph.scaled_laplacian`) is passed to :meth:`forward`, so one
    module instance works on a single graph while the graph itself lives with the caller.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 3, bias: bool = True):
        super().__init__()
        if K < 1:
            raise ValueError("K must be >= 1")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Glorot-uniform over the stacked (K * C_in) -> C_out map.
        bound = math.sqrt(6.0 / (self.K * self.in_channels + self.out_channels))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.forward(x.unsqueeze(0), lap).squeeze(0)
        b, n, c = x.shape
        # Sparse products in float32 (float64 for float64 input): CUDA's sparse kernels do not
        # all take bfloat16, and the Laplacian stays in its stored precision under autocast.
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        lap, x = lap.to(work), x.to(work)
        # Node-major layout (N, B*C): each recurrence step is one sparse (N, N) @ (N, B*C) product;
        # the K terms are accumulated into the output (no stacked (N, K, B, C) copy).
        t0 = x.transpose(0, 1).reshape(n, b * c)
        y = t0.reshape(n * b, c) @ self.weight[0]
        if self.K > 1:
            t1 = _lmul(lap, t0)
            y = torch.addmm(y, t1.reshape(n * b, c), self.weight[1])
            for k in range(2, self.K):
                t2 = 2.0 * _lmul(lap, t1) - t0
                y = torch.addmm(y, t2.reshape(n * b, c), self.weight[k])
                t0, t1 = t1, t2
        y = y.reshape(n, b, self.out_channels).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}"
