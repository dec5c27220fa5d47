"""The mesh-keypoint model: labelled joints from points on a body surface, any topology.

Input: N surface points with their normals (:func:`meshpose.meshkp.surface.sample_surface`),
centred and scaled by :func:`~meshpose.meshkp.surface.normalise_points`, y up. Three
neighbourhood layers (a light DGCNN edge convolution) describe each point's local geometry, a global max-pool describes
the whole body, and per point the network predicts, for every output joint, a vote weight and
an offset from the point to the joint. A joint is the weighted mean of its votes ``p_i +
offset_ij``, which keeps it on the scale of the input and makes it independent of the point
count. A confidence per joint comes from the global feature (trained to say whether the joint
is within 5 % of the body's bounding-box diagonal). Optionally (``up_head``) the global feature
also gives the body's up direction in the input's frame, for a model trained on bodies in any
rotation: a mesh is turned upright by it before its joints are read.
"""
from __future__ import annotations

import torch
from torch import nn

from meshpose.joints import get_joint_set

__all__ = ["OUTPUT_SETS", "MeshKeypointNet", "knn", "neighbour_max", "output_names"]

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
    """(B, N, k) indices of each point's k nearest points (itself included).

    On the CPU one cloud at a time: its (N, N) distances stay in the cache (a batch of 8 clouds
    of 1024 points is ~1.5x faster so).
    """
    if points.device.type == "cpu" and len(points) > 1:
        return torch.stack([knn(cloud[None], k)[0] for cloud in points])
    return torch.cdist(points, points).topk(k, dim=-1, largest=False).indices


def neighbour_max(features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """``features[b, neighbours[b, i, :]].amax(over the neighbours)``: (B, N, C), (B, N, k) -> (B, N, C).

    A running maximum over the k neighbours, one (B * N, C) gather at a time, instead of
    gathering the whole (B, N, k, C) block: the same numbers, several times faster on the CPU
    for a batch (the block of 8 clouds of 1024 points by 16 neighbours is 64 MB at C = 128).
    """
    batch, n, channels = features.shape
    flat = features.reshape(batch * n, channels)
    offset = torch.arange(batch, device=neighbours.device)[:, None, None] * n
    columns = (neighbours + offset).reshape(batch * n, -1).t()  # (k, B * N)
    out = flat.index_select(0, columns[0])
    for column in columns[1:]:
        out = torch.maximum(out, flat.index_select(0, column))
    return out.view(batch, n, channels)


class NeighbourMax(nn.Module):
    """A point's feature from itself and the max over its neighbours: ``act(LN(A f_i + max_j B f_j))``.

    The single-layer form of DGCNN's edge convolution (``max_j act(A' f_i + B f_j)`` equals
    ``act(A' f_i + max_j B f_j)`` for a monotonic activation), which gathers only the projected
    features (see :func:`neighbour_max`) instead of running an MLP on every edge.
    """

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.own, self.other = nn.Linear(inputs, outputs), nn.Linear(inputs, outputs, bias=False)
        self.norm = nn.LayerNorm(outputs)

    def forward(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """features (B, N, C_in), neighbours (B, N, k) -> (B, N, C_out)."""
        return nn.functional.gelu(self.norm(self.own(features) + neighbour_max(self.other(features), neighbours)))


class MeshKeypointNet(nn.Module):
    """Points and normals -> labelled joints.

    Args:
        neighbours: k of the neighbour graph.
        width: feature width of the neighbourhood layers (global feature 4x, vote head 4x).
        up_head: also predict the body's up direction.

    ``forward(points, normals)``: (B, N, 3) normalised points and (B, N, 3) unit normals ->
    ``joints`` (B, J, 3) in the same normalised frame, ``confidence`` (B, J) in [0, 1] and its
    ``confidence_logit``; J = ``len(output_names())``; with ``up_head`` also ``up`` (B, 3), a
    unit vector in the input's frame.
    """

    def __init__(self, neighbours: int = 16, width: int = 64, up_head: bool = False):
        super().__init__()
        self.neighbours = neighbours
        self.up_head = _mlp(4 * width, 2 * width, 3) if up_head else None
        self.n_joints = len(output_names())
        self.layers = nn.ModuleList([NeighbourMax(6, width), NeighbourMax(width, width),
                                     NeighbourMax(width, 2 * width)])
        local = 4 * width
        self.lift = nn.Linear(local, 4 * width)
        self.from_local = nn.Linear(local, 4 * width)
        self.from_whole = nn.Linear(4 * width, 4 * width, bias=False)
        self.vote = nn.Sequential(nn.LayerNorm(4 * width), nn.GELU(), nn.Linear(4 * width, 4 * self.n_joints))
        self.confidence_head = _mlp(4 * width, 2 * width, self.n_joints)

    def features(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point features (B, N, 4w) and the global feature (B, 4w) of normalised points and normals."""
        neighbours = knn(points, self.neighbours)
        features, outputs = torch.cat([points, normals], -1), []
        for layer in self.layers:
            features = layer(features, neighbours)
            outputs.append(features)
        local = torch.cat(outputs, -1)
        return local, self.lift(local).amax(1)

    def forward(self, points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
        local, whole = self.features(points, normals)
        per_point = self.vote(self.from_local(local) + self.from_whole(whole)[:, None])
        batch, n = points.shape[:2]
        per_point = per_point.view(batch, n, self.n_joints, 4)
        weights = per_point[..., 0].softmax(dim=1)  # over the points
        joints = torch.einsum("bnj,bnjc->bjc", weights, points[:, :, None] + per_point[..., 1:])
        logit = self.confidence_head(whole)
        out = {"joints": joints, "confidence": torch.sigmoid(logit), "confidence_logit": logit}
        if self.up_head is not None:
            out["up"] = nn.functional.normalize(self.up_head(whole).float(), dim=-1)
        return out
