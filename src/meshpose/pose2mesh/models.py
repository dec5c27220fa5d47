"""Pose2Mesh networks: PoseNet (2D -> 3D joints) and MeshNet (joints -> mesh vertices)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from meshpose.models.regressor import normalise
from meshpose.pose2mesh.chebconv import ChebConv
from meshpose.pose2mesh.graph import MeshHierarchy, edges_adjacency, scaled_laplacian

__all__ = ["MeshNet", "Pose2Mesh", "PoseNet", "default_widths"]


# --------------------------------------------------------------------------- PoseNet
class _ResidualMLPBlock(nn.Module):
    """Two [linear, batch norm, ReLU, dropout] layers with an identity skip."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        layers = []
        for _ in range(2):
            layers += [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                       nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class PoseNet(nn.Module):
    """Martinez et al. (2017)-style lifting network: ``(B, J_in, in_channels)`` normalised 2D
    joints (optionally with a confidence channel) -> ``(B, J_out, out_channels)``.

    linear(in_channels J_in -> width) + BN + ReLU + dropout, ``blocks`` residual blocks,
    linear(width -> out_channels J_out). The last three output channels are root-relative 3D
    joints (metres); with ``out_channels=5`` the first two are the output joints' 2D positions in
    the input's normalised box units (meshpose reads any detector's joint set, whose points need
    not be MeshNet's skeleton joints). With ``root_index`` set, that joint's 3D output is
    subtracted so the root is exactly 0; by default the network regresses root-relative targets
    directly, as in the original.
    """

    def __init__(self, n_joints_in: int, n_joints_out: int, width: int = 4096, blocks: int = 2,
                 dropout: float = 0.5, root_index: int | None = None, in_channels: int = 2,
                 out_channels: int = 3):
        super().__init__()
        if out_channels < 3:
            raise ValueError("out_channels must be >= 3 (the last three are 3D joints)")
        self.n_joints_in, self.n_joints_out, self.root_index = n_joints_in, n_joints_out, root_index
        self.out_channels = out_channels
        self.inp = nn.Sequential(nn.Linear(in_channels * n_joints_in, width), nn.BatchNorm1d(width),
                                 nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[_ResidualMLPBlock(width, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, out_channels * n_joints_out)

    def forward(self, joints2d: torch.Tensor) -> torch.Tensor:
        b = joints2d.shape[0]
        y = self.out(self.blocks(self.inp(joints2d.reshape(b, -1))))
        y = y.reshape(b, self.n_joints_out, self.out_channels)
        if self.root_index is not None:
            root = y[:, self.root_index : self.root_index + 1, -3:]
            y = torch.cat([y[..., :-3], y[..., -3:] - root], dim=-1)
        return y


# --------------------------------------------------------------------------- MeshNet
def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class _GraphNorm(nn.Module):
    """Group normalisation of a node-major ``(N, B, C)`` graph signal: statistics per sample and
    channel group over all nodes (as ``nn.GroupNorm`` on ``(B, C, N)``), without a transpose."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = _groups(c), eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        n, b, c = x.shape
        grouped = x.reshape(n, b, self.groups, c // self.groups)
        var, mean = torch.var_mean(grouped, dim=(0, 3), correction=0, keepdim=True)
        normalised = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(n, b, c)
        return torch.addcmul(self.bias, normalised, self.weight)


class ChebResBlock(nn.Module):
    """[ChebConv, GroupNorm, ReLU, ChebConv, GroupNorm] + skip (linear when widths differ), ReLU,
    on node-major ``(N, B, C)`` signals."""

    def __init__(self, c_in: int, c_out: int, K: int = 3):
        super().__init__()
        self.conv1, self.norm1 = ChebConv(c_in, c_out, K), _GraphNorm(c_out)
        self.conv2, self.norm2 = ChebConv(c_out, c_out, K), _GraphNorm(c_out)
        self.skip = nn.Linear(c_in, c_out, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x, lap):
        h = torch.relu(self.norm1(self.conv1.forward_node_major(x, lap)))
        h = self.norm2(self.conv2.forward_node_major(h, lap))
        return torch.relu(h + self.skip(x))


def default_widths(n_levels: int) -> list[int]:
    """Feature width per mesh level, finest first: 64 on the three finest levels, 128 coarser."""
    return [64 if level < 3 else 128 for level in range(n_levels)]


class MeshNet(nn.Module):
    """Chebyshev graph-conv mesh regressor: ``(B, J, 5)`` joint signal ``(x, y, X, Y, Z)`` ->
    ``(B, V, 3)`` vertices.

    Joint graph: ChebConv(in -> joint_width) + norm + ReLU and ``blocks`` residual blocks on the
    skeleton's scaled Laplacian. A learned linear map over the node axis (J -> vertices of the
    coarsest used mesh level) moves to the mesh hierarchy; then for each level from coarse to fine:
    ``blocks`` residual Chebyshev blocks at that level, nearest upsampling to the next finer level.
    A final ChebConv on the full mesh outputs xyz.

    ``widths[l]`` is the width at mesh level ``l`` (0 = full mesh); ``n_levels`` limits how many
    hierarchy levels are used (default all; the coarsest used level replaces the rest).
    """

    def __init__(self, skeleton_edges, n_joints: int, hierarchy: MeshHierarchy,
                 widths: Sequence[int] | None = None, joint_width: int = 128, K: int = 3,
                 blocks: int = 1, in_features: int = 5, n_levels: int | None = None):
        super().__init__()
        n_levels = hierarchy.n_levels if n_levels is None else n_levels
        if not 1 <= n_levels <= hierarchy.n_levels:
            raise ValueError(f"n_levels must be in [1, {hierarchy.n_levels}]")
        widths = list(default_widths(n_levels) if widths is None else widths)
        if len(widths) != n_levels:
            raise ValueError(f"need {n_levels} widths (finest first), got {len(widths)}")
        self.n_joints, self.n_levels, self.widths = n_joints, n_levels, widths
        self.sizes = hierarchy.sizes[:n_levels]

        lap = scaled_laplacian(edges_adjacency(skeleton_edges, n_joints)).to_sparse_csr()
        self.register_buffer("joint_lap", lap, persistent=False)
        for level in range(n_levels):
            self.register_buffer(f"lap{level}", hierarchy.laplacian(level).to_sparse_csr(), persistent=False)
        for level in range(n_levels - 1):
            self.register_buffer(f"up{level}", hierarchy.up_indices[level], persistent=False)

        self.joint_in = ChebConv(in_features, joint_width, K)
        self.joint_norm = _GraphNorm(joint_width)
        self.joint_blocks = nn.ModuleList(ChebResBlock(joint_width, joint_width, K) for _ in range(blocks))
        self.to_mesh = nn.Linear(n_joints, self.sizes[-1])
        self.level_blocks = nn.ModuleDict()
        c = joint_width
        for level in reversed(range(n_levels)):
            mods = []
            for _ in range(blocks):
                mods.append(ChebResBlock(c, widths[level], K))
                c = widths[level]
            self.level_blocks[str(level)] = nn.ModuleList(mods)
        self.head = ChebConv(widths[0], 3, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Float32 throughout: the sparse products need it, and converting every layer's input
        # back and forth under autocast would cost more than bfloat16 saves here.
        with torch.autocast(x.device.type, enabled=False):
            h = (x if x.dtype == torch.float64 else x.float()).transpose(0, 1)  # node-major (J, B, C)
            h = torch.relu(self.joint_norm(self.joint_in.forward_node_major(h, self.joint_lap)))
            for blk in self.joint_blocks:
                h = blk(h, self.joint_lap)
            h = self.to_mesh(h.permute(1, 2, 0)).permute(2, 0, 1)  # (V_coarsest, B, C)
            for level in reversed(range(self.n_levels)):
                lap = getattr(self, f"lap{level}")
                for blk in self.level_blocks[str(level)]:
                    h = blk(h, lap)
                if level > 0:
                    h = h.index_select(0, getattr(self, f"up{level - 1}"))  # nearest upsampling
            return self.head.forward_node_major(h, self.lap0).transpose(0, 1)


class Pose2Mesh(nn.Module):
    """PoseNet then MeshNet, reading the regressor's keypoint slots (any supported joint set).

    ``posenet`` must read ``(B, S, 3)`` normalised slot coordinates and confidences and output
    ``(B, J, 5)`` (2D box units, root-relative 3D metres) for MeshNet's ``J`` skeleton joints.
    ``meshnet=None`` gives the first training stage (PoseNet alone). With ``freeze_posenet`` the
    PoseNet stays in eval mode and gets no gradients (the second stage).

    ``forward(slots)``: ``(B, S, 3)`` pixels and confidence -> dict with ``joints2d`` (B, J, 2)
    in normalised box units, ``joints3d`` (B, J, 3) root-relative metres (PoseNet), ``vertices``
    (B, V, 3) root-relative metres (MeshNet, when present), ``centre`` (B, 2) and ``size`` (B,)
    of the input box in pixels.
    """

    def __init__(self, posenet: PoseNet, meshnet: MeshNet | None = None, freeze_posenet: bool = False):
        super().__init__()
        self.posenet, self.meshnet, self.freeze_posenet = posenet, meshnet, freeze_posenet
        if freeze_posenet:
            self.posenet.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_posenet:
            self.posenet.eval()
        return self

    def forward(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        normalised, confidence, centre, size = normalise(slots)
        lifted = self.posenet(torch.cat([normalised, confidence[..., None]], dim=-1))
        out = {"joints2d": lifted[..., :2], "joints3d": lifted[..., 2:], "centre": centre, "size": size}
        if self.meshnet is not None:
            out["vertices"] = self.meshnet(lifted)
        return out
