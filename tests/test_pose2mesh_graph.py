"""Pose2Mesh mesh graphs: adjacency, heavy-edge matching, coarsening, scaled Laplacian,
upsampling, hierarchy save/load. Hand-made graphs and small icospheres."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import trimesh
from scipy.sparse.csgraph import connected_components
from scipy.sparse.csgraph import laplacian as csgraph_laplacian

from meshpose.pose2mesh.graph import (
    MeshHierarchy,
    coarsen,
    edges_adjacency,
    heavy_edge_matching,
    lambda_max,
    mesh_adjacency,
    scaled_laplacian,
    upsample_index,
)

TETRA_FACES = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
# Octahedron: 0 +x, 1 -x, 2 +y, 3 -y, 4 +z, 5 -z; one face per octant.
OCTA_FACES = np.array([[x, y, z] for x in (0, 1) for y in (2, 3) for z in (4, 5)])


def cycle(n: int) -> sp.csr_matrix:
    return edges_adjacency([(i, (i + 1) % n) for i in range(n)], n)


def path(n: int) -> sp.csr_matrix:
    return edges_adjacency([(i, i + 1) for i in range(n - 1)], n)


def icosphere(subdivisions: int = 2):
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(m.faces), len(m.vertices)


def check_matching(adj, cluster, n_coarse):
    """Clusters have 1 or 2 vertices, pairs are adjacent, and no two singletons are adjacent."""
    a = sp.csr_matrix(adj).toarray()
    assert cluster.shape == (a.shape[0],)
    assert set(np.unique(cluster)) == set(range(n_coarse))
    sizes = np.bincount(cluster, minlength=n_coarse)
    assert sizes.min() >= 1 and sizes.max() <= 2
    for c in np.flatnonzero(sizes == 2):
        i, j = np.flatnonzero(cluster == c)
        assert a[i, j] > 0, f"matched pair {i},{j} not adjacent"
    single = np.flatnonzero(sizes[cluster] == 1)
    assert not a[np.ix_(single, single)].any(), "greedy matching left two adjacent vertices unmatched"


# ------------------------------------------------------------------------------- adjacency
def test_tetrahedron_adjacency_is_complete_graph():
    a = mesh_adjacency(torch.as_tensor(TETRA_FACES), 4)
    assert isinstance(a, sp.csr_matrix)
    np.testing.assert_array_equal(a.toarray(), np.ones((4, 4)) - np.eye(4))


def test_octahedron_adjacency_by_hand():
    a = mesh_adjacency(OCTA_FACES, 6).toarray()
    expected = np.ones((6, 6)) - np.eye(6)
    for i, j in [(0, 1), (2, 3), (4, 5)]:  # opposite vertices are not connected
        expected[i, j] = expected[j, i] = 0
    np.testing.assert_array_equal(a, expected)
    assert a.sum() == 2 * 12  # 12 edges, each shared by two faces, counted once


def test_unused_vertex_is_isolated():
    a = mesh_adjacency(TETRA_FACES, 5).toarray()
    assert a.shape == (5, 5) and not a[4].any() and not a[:, 4].any()


# ------------------------------------------------------------------------------- matching
@pytest.mark.parametrize("n", [10, 11, 30])
def test_matching_on_cycle(n):
    adj = cycle(n)
    for seed in range(5):
        cluster, nc = heavy_edge_matching(adj, np.random.default_rng(seed))
        check_matching(adj, cluster, nc)
        # a maximal matching of C_n has at least n/3 edges
        assert np.ceil(n / 2) <= nc <= np.floor(2 * n / 3)
    cluster, nc = heavy_edge_matching(adj, None)  # degree order: all equal, so by index
    check_matching(adj, cluster, nc)
    assert nc == (n + 1) // 2


def test_matching_on_path():
    adj = path(9)
    for seed in range(5):
        cluster, nc = heavy_edge_matching(adj, np.random.default_rng(seed))
        check_matching(adj, cluster, nc)
    cluster, nc = heavy_edge_matching(adj, None)  # ends (degree 1) first
    check_matching(adj, cluster, nc)
    assert cluster[0] == cluster[1] and cluster[7] == cluster[8]


def test_matching_prefers_heavy_edges_and_sums_weights():
    # 4-cycle 0-1-2-3-0 with heavy edges 0-1 and 2-3: every visit order merges {0,1} and {2,3}.
    adj = sp.csr_matrix(np.array([[0, 10, 0, 1], [10, 0, 1, 0], [0, 1, 0, 10], [1, 0, 10, 0]], float))
    for seed in range(10):
        cluster, nc = heavy_edge_matching(adj, np.random.default_rng(seed))
        assert nc == 2 and cluster[0] == cluster[1] and cluster[2] == cluster[3]
        np.testing.assert_array_equal(cluster, [0, 0, 1, 1])  # numbered by first fine vertex
    (a1, c1), = coarsen(adj, 1, seed=3)
    np.testing.assert_allclose(a1.toarray(), [[0, 2], [2, 0]])  # summed light edges, no self loop


def test_isolated_vertex_stays_single():
    adj = edges_adjacency([(0, 1), (1, 2)], 4)
    cluster, nc = heavy_edge_matching(adj, np.random.default_rng(0))
    check_matching(adj, cluster, nc)
    assert np.sum(cluster == cluster[3]) == 1


# ------------------------------------------------------------------------------- coarsening
@pytest.mark.parametrize("seed", [0, 1, None])
def test_coarsening_keeps_icosphere_connected(seed):
    faces, n = icosphere(3)  # 642 vertices
    adj = mesh_adjacency(faces, n)
    assert connected_components(adj)[0] == 1
    levels = coarsen(adj, 5, seed)
    assert len(levels) == 5
    prev, prev_n = adj, n
    for a, cluster in levels:
        nc = a.shape[0]
        check_matching(prev, cluster, nc)
        assert prev_n / 2 <= nc < prev_n
        assert connected_components(a)[0] == 1
        assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0 and a.data.min() > 0
        prev, prev_n = a, nc
    # total edge weight is conserved except for the edges merged inside clusters
    a0, (a1, c0) = adj, levels[0]
    inside = sum(a0[i, j] for i, j in zip(*a0.nonzero()) if c0[i] == c0[j])
    assert a1.sum() == pytest.approx(a0.sum() - inside)


def test_coarsening_keeps_components_separate():
    f1, n1 = icosphere(1)
    faces = np.concatenate([f1, f1 + n1])  # two disjoint spheres
    adj = mesh_adjacency(faces, 2 * n1)
    for a, _ in coarsen(adj, 4, 0):
        assert connected_components(a)[0] == 2


# ------------------------------------------------------------------------------- Laplacian
def test_normalised_laplacian_matches_scipy_csgraph():
    faces, n = icosphere(1)
    adj = mesh_adjacency(faces, n)
    a2 = coarsen(adj, 1, 0)[0][0]  # weighted graph
    for a in (adj, a2):
        lt = scaled_laplacian(a, lmax=2.0).to_dense().numpy()
        lap = csgraph_laplacian(a.toarray(), normed=True)
        np.testing.assert_allclose(lt, lap - np.eye(a.shape[0]), atol=1e-6)


@pytest.mark.parametrize("subdivisions", [1, 2])
def test_scaled_laplacian_spectrum_in_unit_interval(subdivisions):
    faces, n = icosphere(subdivisions)
    adj = mesh_adjacency(faces, n)
    for a in [adj] + [a for a, _ in coarsen(adj, 3, 0)]:
        lap = csgraph_laplacian(a.toarray(), normed=True)
        true_max = np.linalg.eigvalsh(lap)[-1]
        assert lambda_max(a) == pytest.approx(true_max, abs=1e-5)
        for lm in (None, 2.0):
            ev = np.linalg.eigvalsh(scaled_laplacian(a, lm).to_dense().double().numpy())
            assert ev.min() >= -1 - 1e-5 and ev.max() <= 1 + 1e-5
            assert ev.min() == pytest.approx(-1, abs=1e-5)  # L has eigenvalue 0
        ev = np.linalg.eigvalsh(scaled_laplacian(a).to_dense().double().numpy())
        assert ev.max() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("n", [301, 400])  # > 256 vertices: the eigsh branch
def test_lambda_max_eigsh_on_cycle(n):
    # normalised Laplacian of C_n: eigenvalues 1 - cos(2 pi k / n)
    expected = 1 - np.cos(2 * np.pi * (n // 2) / n)
    assert lambda_max(cycle(n)) == pytest.approx(expected, abs=1e-6)


def test_scaled_laplacian_is_sparse_torch():
    lap = scaled_laplacian(cycle(6))
    assert lap.is_sparse and lap.dtype == torch.float32 and lap.shape == (6, 6)


# ------------------------------------------------------------------------------- upsampling
def test_upsample_then_average_gives_coarse_signal():
    faces, n = icosphere(2)
    (a1, cluster), = coarsen(mesh_adjacency(faces, n), 1, 0)
    nc = a1.shape[0]
    up = upsample_index(cluster)
    assert up.dtype == torch.long and up.shape == (n,)
    coarse = torch.randn(2, nc, 5)
    fine = coarse[:, up]
    assert fine.shape == (2, n, 5)
    # average the fine signal back over each cluster (numpy, independently of the module)
    fine_np = fine.numpy()
    counts = np.bincount(cluster, minlength=nc)
    back = np.zeros((2, nc, 5))
    np.add.at(back, (slice(None), cluster), fine_np)
    np.testing.assert_allclose(back / counts[None, :, None], coarse.numpy(), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------- hierarchy
def test_hierarchy_save_load_roundtrip(tmp_path):
    faces, n = icosphere(2)
    h = MeshHierarchy.from_faces(faces, n, levels=3, seed=1)
    assert h.n_levels == 4 and h.sizes[0] == n and len(h.clusters) == 3
    assert all(a.shape[0] == b for a, b in zip(h.adjacencies, h.sizes))
    assert [int(c.max()) + 1 for c in h.clusters] == h.sizes[1:]
    assert len(h.laplacians) == 4 and len(h.up_indices) == 3
    path = tmp_path / "hier.npz"
    h.save(path)
    g = MeshHierarchy.load(path)
    assert g.sizes == h.sizes and g.seed == 1 and g.digest == h.digest
    assert g.lambda_max == pytest.approx(h.lambda_max)
    for a, b in zip(g.adjacencies, h.adjacencies):
        assert (a != b).nnz == 0
    for a, b in zip(g.clusters, h.clusters):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(g.laplacians, h.laplacians):
        torch.testing.assert_close(a.to_dense(), b.to_dense())


def test_hierarchy_cache(tmp_path):
    faces, n = icosphere(1)
    path = tmp_path / "cache.npz"
    h = MeshHierarchy.cached(faces, path, n, levels=2, seed=0)
    assert path.exists()
    mtime = path.stat().st_mtime_ns
    g = MeshHierarchy.cached(faces, path, n, levels=2, seed=0)  # loaded, not rebuilt
    assert path.stat().st_mtime_ns == mtime and g.sizes == h.sizes
    g = MeshHierarchy.cached(faces, path, n, levels=3, seed=0)  # different request: rebuilt
    assert g.n_levels == 4
