"""The mesh-keypoint model: labelled joints from points on a body surface, any topology.

Input: N surface points with their normals (:func:`meshpose.meshkp.surface.sample_surface`),
centred and scaled by :func:`~meshpose.meshkp.surface.normalise_points`, y up. Three
neighbourhood layers (a light DGCNN edge convolution) describe each point's local geometry, a global max-pool describes
the whole body, and per point the network predicts, for every output joint, a vote weight and
an offset from the point to the joint. A joint is the weighted mean of its votes ``p_i +
offset_ij``, which keeps it on the scale of the input and makes it independent of the point
count. A confidence per joint comes from the global feature (trained to say whether the joint
is within 5 % of the body's bounding-box diagonal).
"""
from __future__ import annotations

import torch
from torch import nn

from meshpose.joints import get_joint_set

__all__ = ["OUTPUT_SETS", "MeshKeypointNet", "output_names"]

#: Joint sets the model predicts: the dataset's seed12 (boundary rings, human_seg definition)
#: and joint centres of the Anny body.
OUTPUT_SETS = ("seed12", "smpl24", "h36m17")


def output_names() -> tuple[str, ...]:
    """``"<set>:<joint>"`` for every output of the model, in order."""
    return tuple(f"{s}:{j}" for s in OUTPUT_SETS for j in get_joint_set(s).names)


def _mlp(*widths: int) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


def knn(points: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, k) indices of each point's k nearest points (itself included)."""
    return torch.cdist(points, points).topk(k, dim=-1, largest=False).indices


class NeighbourMax(nn.Module):
    """A point's feature from itself and the max over its neighbours: ``act(LN(A f_i + max_j B f_j))``.

    The single-layer form of DGCNN's edge convolution (``max_j act(A' f_i + B f_j)`` equals
    ``act(A' f_i + max_j B f_j)`` for a monotonic activation), which gathers only the projected
    features, (B, N, k, C_out), instead of running an MLP on every edge.
    """

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.own, self.other = nn.Linear(inputs, outputs), nn.Linear(inputs, outputs, bias=False)
        self.norm = nn.LayerNorm(outputs)

    def forward(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """features (B, N, C_in), neighbours (B, N, k) -> (B, N, C_out)."""
        other = self.other(features)
        batch = torch.arange(features.shape[0], device=features.device)[:, None, None]
        return nn.functional.gelu(self.norm(self.own(features) + other[batch, neighbours].amax(2)))


class MeshKeypointNet(nn.Module):
    """Points and normals -> labelled joints.

    Args:
        neighbours: k of the neighbour graph.
        width: feature width of the neighbourhood layers (global feature 4x, vote head 4x).

    ``forward(points, normals)``: (B, N, 3) normalised points and (B, N, 3) unit normals ->
    ``joints`` (B, J, 3) in the same normalised frame, ``confidence`` (B, J) in [0, 1] and its
    ``confidence_logit``; J = ``len(output_names())``.
    """

    def __init__(self, neighbours: int = 16, width: int = 64):
        super().__init__()
        self.neighbours = neighbours
        self.n_joints = len(output_names())
        self.layers = nn.ModuleList([NeighbourMax(6, width), NeighbourMax(width, width),
                                     NeighbourMax(width, 2 * width)])
        local = 4 * width
        self.lift = nn.Linear(local, 4 * width)
        self.from_local = nn.Linear(local, 4 * width)
        self.from_whole = nn.Linear(4 * width, 4 * width, bias=False)
        self.vote = nn.Sequential(nn.LayerNorm(4 * width), nn.GELU(), nn.Linear(4 * width, 4 * self.n_joints))
        self.confidence_head = _mlp(4 * width, 2 * width, self.n_joints)

    def forward(self, points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
        neighbours = knn(points, self.neighbours)
        features, outputs = torch.cat([points, normals], -1), []
        for layer in self.layers:
            features = layer(features, neighbours)
            outputs.append(features)
        local = torch.cat(outputs, -1)  # (B, N, 4w)
        whole = self.lift(local).amax(1)  # (B, 4w)
        per_point = self.vote(self.from_local(local) + self.from_whole(whole)[:, None])
        batch, n = points.shape[:2]
        per_point = per_point.view(batch, n, self.n_joints, 4)
        weights = per_point[..., 0].softmax(dim=1)  # over the points
        joints = torch.einsum("bnj,bnjc->bjc", weights, points[:, :, None] + per_point[..., 1:])
        logit = self.confidence_head(whole)
        return {"joints": joints, "confidence": torch.sigmoid(logit), "confidence_logit": logit}
