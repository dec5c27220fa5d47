"""The reference network of "A Simple Neural Network Approach for 3D Human Mesh Keypoints
Estimation with a Novel Dataset": a plain 2D CNN over per-edge features of a triangle mesh.

Input: for every edge its feature vector and those of its four 1-ring neighbours (MeshCNN's
definition: the other two edges of each of the two faces adjacent to the edge), stacked into an
``(E, 5, C)`` array read as an image of height E (edges), width 5 and C channels, then moved to
torch's channel-first ``(C, E, 5)``. Only the first ``n_edges`` edges in MeshCNN order are used
(the reference: 750 of 2250); a mesh with fewer is zero-padded. The neighbours' features come
from the whole mesh, so a kept edge may see a neighbour whose own row was cut.

Network (:class:`SeedEdgeCNN`): three 3x3 convolutions (64, 128, 256 channels, padding 1, ReLU),
global max pooling over edges and columns, ``Linear(256, hidden) -> ReLU -> Linear(hidden, 36)``
giving 12 *unordered* 3D points. Loss (:func:`hungarian_distance_loss`): per sample the Hungarian
matching of predicted to ground-truth points on the detached distance matrix, then the
(differentiable) sum of matched Euclidean distances, averaged over the batch.

Coordinates are normalised per mesh (:func:`normalise_mesh`): centred on the mean vertex and
divided by the bounding-box diagonal, so every distance here is a fraction of that diagonal.
The keypoints take the same transform. The data's up axis is +y (neck above pelvis).

Per-edge features (:func:`edge_features`, ``kind`` is a ``+``-joined list of blocks):

* ``midpoint`` (6): the edge's midpoint (3) and its vector ``b - a`` flipped so that its y (up)
  component is >= 0 (a horizontal edge: x >= 0, then z >= 0). A line has no direction and
  MeshCNN's vertex order (smaller index first) is arbitrary across separately remeshed scans, so the flip makes the vector depend on the geometry
  only; flipping on the *up* component commutes with the training augmentation (turns about the
  up axis, uniform scaling), so augmented features equal features of the augmented mesh.
  This is the default: the network has to output absolute positions, and after global max
  pooling only the input channels can carry where things are.
* ``xyz`` (3): the midpoint alone.
* ``meshcnn`` (5): MeshCNN's geometric features: the dihedral angle (pi - angle between the two
  face normals; pi on a flat surface), the two inner angles opposite the edge (sorted) and the
  two height/length ratios (distance of each opposite vertex from the edge's line over the
  edge's length, sorted). Invariant to rotation, translation and scale, so on their own they
  carry no position; MeshCNN standardises them with dataset statistics, here they are used raw
  (all of order 1).
* e.g. ``midpoint+meshcnn`` (11).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = [
    "FEATURE_BLOCKS",
    "N_KEYPOINTS",
    "SeedEdgeCNN",
    "edge_features",
    "edge_inputs",
    "edge_neighbours",
    "edge_topology",
    "feature_channels",
    "hungarian_distance_loss",
    "normalise_mesh",
]

N_KEYPOINTS = 12
#: feature block -> channels.
FEATURE_BLOCKS = {"midpoint": 6, "xyz": 3, "meshcnn": 5}
UP_AXIS = 1  #: +y is up in the human_seg meshes


def _blocks(kind: str) -> list[str]:
    blocks = [b.strip() for b in kind.split("+") if b.strip()]
    bad = [b for b in blocks if b not in FEATURE_BLOCKS]
    if not blocks or bad:
        raise ValueError(f"unknown edge features {kind!r}; use {', '.join(FEATURE_BLOCKS)} or a '+'-joined list")
    return blocks


def feature_channels(kind: str) -> int:
    """Channels C of :func:`edge_features` for ``kind``."""
    return sum(FEATURE_BLOCKS[b] for b in _blocks(kind))


def edge_topology(faces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges, 1-ring and adjacent faces of a triangle mesh, edges in MeshCNN order.

    Args:
        faces: ``(F, 3)`` vertex indices.

    Returns:
        ``(edges, neighbours, edge_faces)``: ``(E, 2)`` int64 vertex pairs, smaller index first
        (same as :func:`meshpose.meshkp.segdata.meshcnn_edges`); ``(E, 4)`` int64 1-ring edge ids
        (see :func:`edge_neighbours`); ``(E, 2, 2)`` int64 ``[face id, local edge k]`` of the first
        and second face holding the edge in face order (-1 on a boundary), where local edge k of a
        face runs from ``face[k]`` to ``face[(k + 1) % 3]``.

    Raises:
        ValueError: an edge shared by more than two faces (non-manifold).
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n_faces = len(faces)
    pairs = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)  # occurrence f*3+k
    keys = pairs[:, 0] * (int(faces.max(initial=0)) + 1) + pairs[:, 1]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique edges by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    edge_of = rank[inverse.reshape(-1)]  # (3F,) MeshCNN edge id of each occurrence
    edges = pairs[first[order]]
    n_edges = len(edges)

    occurrences = np.argsort(edge_of, kind="stable")  # grouped by edge, in face order within
    counts = np.bincount(edge_of, minlength=n_edges)
    if n_edges and counts.max() > 2:
        raise ValueError(f"non-manifold mesh: an edge is shared by {counts.max()} faces")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(occurrences)) - np.repeat(start, counts)  # 0 first face, 1 second

    face_edges = edge_of.reshape(n_faces, 3)
    neighbours = np.full((n_edges, 4), -1, dtype=np.int64)
    edge_faces = np.full((n_edges, 2, 2), -1, dtype=np.int64)
    f, k = occurrences // 3, occurrences % 3
    e = edge_of[occurrences]
    neighbours[e, 2 * slot] = face_edges[f, (k + 1) % 3]
    neighbours[e, 2 * slot + 1] = face_edges[f, (k + 2) % 3]
    edge_faces[e, slot, 0] = f
    edge_faces[e, slot, 1] = k
    return edges, neighbours, edge_faces


def edge_neighbours(faces) -> np.ndarray:
    """MeshCNN's 1-ring of every edge.

    For the first face holding edge e (in face order) with e as its local edge k, the
    neighbours are that face's edges k+1 and k+2 (mod 3); then the same for the second face.

    Args:
        faces: ``(F, 3)`` vertex indices.

    Returns:
        ``(E, 4)`` int64 edge ids in MeshCNN order; ``-1`` where the edge has no second face.
    """
    return edge_topology(faces)[1]


def normalise_mesh(vertices) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre on the vertex mean and scale to a unit bounding-box diagonal.

    Args:
        vertices: ``(V, 3)`` positions, mesh units.

    Returns:
        ``(normalised, centre, scale)``: ``(V, 3)`` float64 ``(vertices - centre) / scale``, the
        ``(3,)`` centroid (mesh units) and the bounding-box diagonal ``scale`` (mesh units).
        Apply the same ``(x - centre) / scale`` to the mesh's keypoints.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    centre = vertices.mean(axis=0)
    scale = float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0)))
    if not scale > 0:
        raise ValueError("degenerate mesh: its bounding box has no extent")
    return (vertices - centre) / scale, centre, scale


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _meshcnn_block(vertices: np.ndarray, faces: np.ndarray, edges: np.ndarray,
                   edge_faces: np.ndarray) -> np.ndarray:
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    tri = vertices[faces]  # (F, 3, 3)
    normals = _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    fid, k = edge_faces[..., 0], edge_faces[..., 1]  # (E, 2)
    boundary = fid[:, 1] < 0
    fid = np.where(fid < 0, fid[:, :1], fid)  # a boundary edge reuses its one face
    k = np.where(edge_faces[..., 1] < 0, k[:, :1], k)
    opposite = vertices[faces[fid, (k + 2) % 3]]  # (E, 2, 3)
    cos = np.clip((normals[fid[:, 0]] * normals[fid[:, 1]]).sum(-1), -1.0, 1.0)
    dihedral = np.pi - np.arccos(cos)
    dihedral[boundary] = np.pi
    ca, cb = _unit(a[:, None] - opposite), _unit(b[:, None] - opposite)
    angles = np.sort(np.arccos(np.clip((ca * cb).sum(-1), -1.0, 1.0)), axis=1)
    length = np.maximum(np.linalg.norm(b - a, axis=-1), 1e-12)[:, None]  # (E, 1)
    direction = (b - a)[:, None] / length[..., None]
    along = ((opposite - a[:, None]) * direction).sum(-1, keepdims=True)
    height = np.linalg.norm(opposite - (a[:, None] + along * direction), axis=-1)
    ratios = np.sort(height / length, axis=1)
    return np.concatenate([dihedral[:, None], angles, ratios], axis=1)


def edge_features(vertices, faces, kind: str = "midpoint", topology=None) -> np.ndarray:
    """Per-edge input features (see the module docstring for the blocks).

    Args:
        vertices: ``(V, 3)`` positions (normalised units: fractions of the bounding-box diagonal).
        faces: ``(F, 3)`` vertex indices.
        kind: ``"midpoint"``, ``"xyz"``, ``"meshcnn"`` or a ``+``-joined list of them.
        topology: optional precomputed :func:`edge_topology` of ``faces``.

    Returns:
        ``(E, C)`` float32, edges in MeshCNN order, ``C = feature_channels(kind)``; positions and
        vectors in the vertices' units, angles in radians, ratios unitless.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    edges, _, edge_faces = topology if topology is not None else edge_topology(faces)
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    out = []
    for block in _blocks(kind):
        if block == "xyz":
            out.append((a + b) / 2)
        elif block == "midpoint":
            vector = b - a
            sign = np.sign(vector[:, UP_AXIS])  # up component >= 0; ties: x, then z
            for axis in (0, 2):
                sign = np.where(sign == 0, np.sign(vector[:, axis]), sign)
            vector = vector * np.where(sign < 0, -1.0, 1.0)[:, None]
            out += [(a + b) / 2, vector]
        else:
            out.append(_meshcnn_block(vertices, faces, edges, edge_faces))
    return np.concatenate(out, axis=1).astype(np.float32)


def edge_inputs(features, neighbours, n_edges: int) -> np.ndarray:
    """The network input of one mesh: each edge's features with its 1-ring's, first ``n_edges``.

    Args:
        features: ``(E, C)`` per-edge features.
        neighbours: ``(E, 4)`` 1-ring edge ids (:func:`edge_neighbours`), -1 = none (zeros).
        n_edges: rows kept; fewer edges are zero-padded at the end.

    Returns:
        ``(C, n_edges, 5)`` float32: column 0 the edge itself, columns 1-4 its neighbours in
        MeshCNN's order.
    """
    features = np.asarray(features, dtype=np.float32)
    neighbours = np.asarray(neighbours, dtype=np.int64)[:n_edges]
    kept = len(neighbours)
    padded = np.concatenate([features, np.zeros((1, features.shape[1]), np.float32)])  # row -1 = 0
    index = np.concatenate([np.arange(kept)[:, None], neighbours], axis=1)  # (kept, 5)
    stacked = padded[index]  # (kept, 5, C)
    out = np.zeros((n_edges, 5, features.shape[1]), np.float32)
    out[:kept] = stacked
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class SeedEdgeCNN(nn.Module):
    """The reference edge CNN: ``(B, C, E, 5)`` edge images -> ``(B, 12, 3)`` unordered points.

    Args:
        n_edges: edges per input (rows E); checked in :meth:`forward`.
        in_channels: feature channels C (:func:`feature_channels`).
        hidden: width of the hidden linear layer.
        features: the feature kind the inputs are made with (recorded for evaluation).
    """

    def __init__(self, n_edges: int = 750, in_channels: int = 6, hidden: int = 512,
                 features: str = "midpoint"):
        super().__init__()
        self.n_edges, self.in_channels, self.features = n_edges, in_channels, features
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, N_KEYPOINTS * 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, n_edges, 5)`` -> ``(B, 12, 3)`` points, normalised mesh units."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.n_edges or x.shape[3] != 5:
            raise ValueError(f"expected input (B, {self.in_channels}, {self.n_edges}, 5), got {tuple(x.shape)}")
        pooled = self.convs(x).amax(dim=(2, 3))  # global max pooling, (B, 256)
        return self.head(pooled).view(-1, N_KEYPOINTS, 3)


def hungarian_distance_loss(pred: torch.Tensor, gt: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sum of Euclidean distances between Hungarian-matched predicted and true points.

    The assignment (``scipy.optimize.linear_sum_assignment`` per sample, on the detached cost)
    minimises the sum of distances; the gradient flows through the matched distances only.

    Args:
        pred: ``(B, N, 3)`` unordered predicted points.
        gt: ``(B, N, 3)`` ground-truth points, same units.
        reduction: ``"mean"``: the batch mean of the per-sample sums (a scalar); ``"none"``: ``(B,)``.

    Returns:
        The loss in the points' units (summed over the N points).
    """
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be (B, N, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    cost = torch.cdist(pred.detach().double(), gt.detach().double()).cpu().numpy()
    perm = np.stack([linear_sum_assignment(c)[1] for c in cost]) if len(cost) else np.zeros((0, pred.shape[1]), int)
    # row i of pred goes with column perm[i] of gt (rows are 0..N-1 in order)
    matched_gt = torch.gather(gt, 1, torch.as_tensor(perm, device=gt.device)[..., None].expand(-1, -1, gt.shape[2]))
    distance = ((pred - matched_gt).square().sum(-1) + 1e-12).sqrt().sum(-1)
    return distance.mean() if reduction == "mean" else distance
