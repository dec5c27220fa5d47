"""Mesh graphs for Pose2Mesh: adjacency, heavy-edge coarsening, scaled Laplacians, hierarchy.

Conventions
-----------
* Graphs are ``scipy.sparse.csr_matrix`` adjacency matrices, symmetric, non-negative, with an
  empty diagonal. The mesh graph from :func:`mesh_adjacency` is 0/1; coarse graphs carry the
  summed weights of the fine edges between two clusters.
* Level 0 is the full mesh; level ``l + 1`` is obtained from level ``l`` by one round of
  heavy-edge matching (:func:`heavy_edge_matching`). ``cluster_l`` maps each vertex of level
  ``l`` to its vertex of level ``l + 1``; each coarse vertex has one or two fine vertices.
* Upsampling from level ``l + 1`` to level ``l`` is nearest (copy): ``x_fine = x_coarse[:,
  upsample_index(cluster_l)]``.
* Scaled Laplacian: ``L = I - D^-1/2 A D^-1/2`` (isolated vertices get ``L_ii = 1``), rescaled
  to ``L~ = 2 L / lambda_max - I`` so that its spectrum lies in ``[-1, 1]``, the domain of the
  Chebyshev polynomials. ``lambda_max`` is by default the largest eigenvalue computed with
  ``scipy.sparse.linalg.eigsh`` (dense ``eigvalsh`` for small graphs); ``lambda_max=2.0`` uses
  the analytic upper bound of the normalised Laplacian instead (no eigen-solve, the spectrum of
  ``L~`` then lies in ``[-1, lambda_max_true - 1]``).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = [
    "MeshHierarchy",
    "coarsen",
    "edges_adjacency",
    "heavy_edge_matching",
    "lambda_max",
    "mesh_adjacency",
    "scaled_laplacian",
    "to_torch_sparse",
    "upsample_index",
]


def edges_adjacency(edges, n_vertices: int) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency (no self loops) from an ``(E, 2)`` list of undirected edges."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if e.size and (e.min() < 0 or e.max() >= n_vertices):
        raise ValueError(f"edge index out of range for {n_vertices} vertices")
    e = e[e[:, 0] != e[:, 1]]
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    a = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, n_vertices)).tocsr()
    a.sum_duplicates()
    a.data[:] = 1.0  # duplicate edges (shared by two faces) count once
    a.eliminate_zeros()
    a.sort_indices()
    return a


def mesh_adjacency(faces, n_vertices: int) -> sp.csr_matrix:
    """Vertex adjacency of a triangle mesh: symmetric 0/1 CSR, no self loops.

    ``faces`` is an ``(F, 3)`` integer array or tensor; vertices not used by any face are
    isolated (empty rows).
    """
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {f.shape}")
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    return edges_adjacency(edges, n_vertices)


def _renumber_by_first_vertex(cluster: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel cluster ids so that they increase with the smallest fine vertex of each cluster."""
    ids, first = np.unique(cluster, return_index=True)
    order = np.argsort(first, kind="stable")  # cluster ids sorted by first fine vertex
    new_id = np.empty(ids.size, dtype=np.int64)
    new_id[order] = np.arange(ids.size)
    lookup = np.empty(int(ids.max()) + 1 if ids.size else 0, dtype=np.int64)
    lookup[ids] = new_id
    return lookup[cluster], int(ids.size)


def heavy_edge_matching(adjacency, rng: np.random.Generator | None = None):
    """One round of Graclus-style heavy-edge matching.

    Vertices are visited in a random order (``rng`` given) or, with ``rng=None``, by increasing
    degree (ties by index; deterministic). Each still-unmatched vertex ``i`` is matched with its
    unmatched neighbour ``j`` maximising the normalised-cut weight ``w_ij = a_ij (1/d_i + 1/d_j)``
    (``d`` = weighted degree); a vertex without an unmatched neighbour stays single.

    Returns ``(cluster, n_coarse)``: ``cluster[i]`` is the coarse vertex of fine vertex ``i``,
    numbered in the order of the clusters' smallest fine vertex.
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    a.sort_indices()
    n = a.shape[0]
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_deg = np.zeros(n)
    nz = deg > 0
    inv_deg[nz] = 1.0 / deg[nz]
    if rng is None:
        order = np.lexsort((np.arange(n), deg))
    else:
        order = rng.permutation(n)
    indptr, indices, data = a.indptr, a.indices, a.data
    cluster = np.full(n, -1, dtype=np.int64)
    next_id = 0
    for i in order.tolist():
        if cluster[i] >= 0:
            continue
        lo, hi = indptr[i], indptr[i + 1]
        nbr = indices[lo:hi]
        free = cluster[nbr] < 0
        free &= nbr != i
        cluster[i] = next_id
        if free.any():
            cand = nbr[free]
            w = data[lo:hi][free] * (inv_deg[i] + inv_deg[cand])
            cluster[cand[int(np.argmax(w))]] = next_id
        next_id += 1
    return _renumber_by_first_vertex(cluster)


def coarse_adjacency(adjacency, cluster: np.ndarray, n_coarse: int) -> sp.csr_matrix:
    """``P^T A P`` with the 0/1 assignment ``P`` (fine x coarse), diagonal removed (summed weights)."""
    n = adjacency.shape[0]
    p = sp.csr_matrix((np.ones(n), (np.arange(n), cluster)), shape=(n, n_coarse))
    ac = (p.T @ sp.csr_matrix(adjacency, dtype=np.float64) @ p).tocsr()
    ac.setdiag(0.0)
    ac.eliminate_zeros()
    ac.sort_indices()
    return ac


def coarsen(adjacency, levels: int, seed: int | None = 0) -> list[tuple[sp.csr_matrix, np.ndarray]]:
    """Coarsen a graph ``levels`` times by heavy-edge matching.

    Returns a list of ``levels`` pairs ``(adjacency_{l+1}, cluster_l)``: the adjacency of the
    coarse level ``l + 1`` and the map from level-``l`` vertices to it (level 0 = the input).
    ``seed`` seeds the random visiting order; ``seed=None`` visits by increasing degree.
    """
    rng = None if seed is None else np.random.default_rng(seed)
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    out = []
    for _ in range(levels):
        cluster, nc = heavy_edge_matching(a, rng)
        a = coarse_adjacency(a, cluster, nc)
        out.append((a, cluster))
    return out


def upsample_index(cluster) -> torch.Tensor:
    """``(n_fine,)`` long tensor: the coarse vertex of each fine vertex (nearest upsampling)."""
    return torch.as_tensor(np.asarray(cluster), dtype=torch.long).clone()


def normalized_laplacian(adjacency) -> sp.csr_matrix:
    """``L = I - D^-1/2 A D^-1/2`` (CSR); isolated vertices get ``L_ii = 1``."""
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    d = np.zeros_like(deg)
    d[deg > 0] = deg[deg > 0] ** -0.5
    dm = sp.diags(d)
    return (sp.identity(a.shape[0], format="csr") - dm @ a @ dm).tocsr()


def lambda_max(adjacency) -> float:
    """Largest eigenvalue of the normalised Laplacian (<= 2)."""
    lap = normalized_laplacian(adjacency)
    n = lap.shape[0]
    if n <= 256:
        return float(np.linalg.eigvalsh(lap.toarray())[-1])
    val = spla.eigsh(lap, k=1, which="LA", return_eigenvectors=False, tol=1e-8,
                     v0=np.ones(n) / np.sqrt(n) + np.linspace(0, 1e-3, n))
    return float(val[0])


def to_torch_sparse(m, dtype=torch.float32) -> torch.Tensor:
    """scipy sparse -> coalesced torch sparse COO tensor."""
    c = sp.coo_matrix(m)
    idx = torch.as_tensor(np.vstack([c.row, c.col]).astype(np.int64))
    val = torch.as_tensor(c.data, dtype=dtype)
    return torch.sparse_coo_tensor(idx, val, c.shape, check_invariants=False).coalesce()


def scaled_laplacian_scipy(adjacency, lmax: float | None = None) -> sp.csr_matrix:
    """``L~ = 2 L / lambda_max - I`` as scipy CSR (see :func:`scaled_laplacian`)."""
    lap = normalized_laplacian(adjacency)
    if lmax is None:
        lmax = lambda_max(adjacency)
    if lmax <= 0:  # edgeless graph: L = I
        lmax = 2.0
    return (lap * (2.0 / lmax) - sp.identity(lap.shape[0], format="csr")).tocsr()


def scaled_laplacian(adjacency, lmax: float | None = None, dtype=torch.float32) -> torch.Tensor:
    """Scaled normalised Laplacian ``L~ = 2 L / lambda_max - I`` as a torch sparse COO tensor.

    ``lmax=None`` computes ``lambda_max`` (eigsh); pass ``2.0`` to use the upper bound.
    """
    return to_torch_sparse(scaled_laplacian_scipy(adjacency, lmax), dtype)


def faces_digest(faces) -> str:
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    return hashlib.sha1(np.ascontiguousarray(np.asarray(faces, dtype=np.int64)).tobytes()).hexdigest()


@dataclass
class MeshHierarchy:
    """Coarse-to-fine hierarchy of a mesh graph.

    ``adjacencies[l]`` is the graph of level ``l`` (0 = full mesh), ``clusters[l]`` maps level
    ``l`` to level ``l + 1`` (``len(clusters) == len(adjacencies) - 1``), ``lambda_max[l]`` is
    the value used to scale level ``l``'s Laplacian.
    """

    adjacencies: list
    clusters: list
    lambda_max: list
    seed: int | None = 0
    digest: str = ""
    build_seconds: float = 0.0
    _lap_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_adjacency(cls, adjacency, levels: int = 7, seed: int | None = 0,
                       lmax: str | float = "eigsh", digest: str = "") -> MeshHierarchy:
        """Coarsen ``adjacency`` ``levels`` times. ``lmax="eigsh"`` computes each level's
        ``lambda_max``; a number (e.g. ``2.0``) uses it for every level."""
        t0 = time.perf_counter()
        a0 = sp.csr_matrix(adjacency, dtype=np.float64)
        pairs = coarsen(a0, levels, seed)
        adjs = [a0] + [a for a, _ in pairs]
        clusters = [c for _, c in pairs]
        lms = [lambda_max(a) if lmax == "eigsh" else float(lmax) for a in adjs]
        return cls(adjs, clusters, lms, seed, digest, time.perf_counter() - t0)

    @classmethod
    def from_faces(cls, faces, n_vertices: int | None = None, levels: int = 7,
                   seed: int | None = 0, lmax: str | float = "eigsh") -> MeshHierarchy:
        if n_vertices is None:
            n_vertices = int(np.asarray(faces).max()) + 1
        t0 = time.perf_counter()
        a = mesh_adjacency(faces, n_vertices)
        h = cls.from_adjacency(a, levels, seed, lmax, faces_digest(faces))
        h.build_seconds = time.perf_counter() - t0
        return h

    @classmethod
    def cached(cls, faces, path, n_vertices: int | None = None, levels: int = 7,
               seed: int | None = 0, lmax: str | float = "eigsh") -> MeshHierarchy:
        """Load ``path`` if it holds a hierarchy of these faces with ``levels`` and ``seed``;
        otherwise build it and save it there."""
        path = Path(path)
        if path.exists():
            h = cls.load(path)
            if h.digest == faces_digest(faces) and h.n_levels == levels + 1 and h.seed == seed:
                return h
        h = cls.from_faces(faces, n_vertices, levels, seed, lmax)
        h.save(path)
        return h

    # ---------------------------------------------------------------- accessors
    @property
    def n_levels(self) -> int:
        return len(self.adjacencies)

    @property
    def sizes(self) -> list[int]:
        return [a.shape[0] for a in self.adjacencies]

    def laplacian(self, level: int, dtype=torch.float32) -> torch.Tensor:
        """Scaled Laplacian of ``level`` (torch sparse COO, cached)."""
        key = (level, dtype)
        if key not in self._lap_cache:
            self._lap_cache[key] = scaled_laplacian(self.adjacencies[level], self.lambda_max[level], dtype)
        return self._lap_cache[key]

    @property
    def laplacians(self) -> list[torch.Tensor]:
        return [self.laplacian(l) for l in range(self.n_levels)]

    @property
    def up_indices(self) -> list[torch.Tensor]:
        """``up_indices[l]``: for each vertex of level ``l``, its vertex of level ``l + 1``."""
        return [upsample_index(c) for c in self.clusters]

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write everything to one compressed ``.npz``."""
        arrays = {
            "n_levels": np.array(self.n_levels),
            "lambda_max": np.asarray(self.lambda_max, dtype=np.float64),
            "seed": np.array(-1 if self.seed is None else self.seed),
            "digest": np.array(self.digest),
            "build_seconds": np.array(self.build_seconds),
        }
        for l, a in enumerate(self.adjacencies):
            c = sp.coo_matrix(a)
            arrays[f"adj{l}_row"] = c.row.astype(np.int32)
            arrays[f"adj{l}_col"] = c.col.astype(np.int32)
            arrays[f"adj{l}_data"] = c.data.astype(np.float64)
            arrays[f"adj{l}_n"] = np.array(a.shape[0])
        for l, cl in enumerate(self.clusters):
            arrays[f"cluster{l}"] = np.asarray(cl, dtype=np.int32)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # keep the exact file name (np.savez adds .npz otherwise)
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path) -> MeshHierarchy:
        with np.load(Path(path)) as z:
            n_levels = int(z["n_levels"])
            adjs = []
            for l in range(n_levels):
                n = int(z[f"adj{l}_n"])
                adjs.append(sp.csr_matrix((z[f"adj{l}_data"], (z[f"adj{l}_row"], z[f"adj{l}_col"])),
                                          shape=(n, n)))
            clusters = [z[f"cluster{l}"].astype(np.int64) for l in range(n_levels - 1)]
            seed = int(z["seed"])
            return cls(adjs, clusters, [float(v) for v in z["lambda_max"]],
                       None if seed < 0 else seed, str(z["digest"]), float(z["build_seconds"]))
