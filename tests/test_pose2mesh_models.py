"""Pose2Mesh networks: ChebConv against a dense brute force, PoseNet/MeshNet shapes and
gradients. Small icosphere hierarchies; the Anny mesh only in the last test (~3 s)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import trimesh

from meshpose.joints import get_joint_set
from meshpose.models.regressor import SLOTS, slot_index
from meshpose.pose2mesh.chebconv import ChebConv
from meshpose.pose2mesh.graph import (
    MeshHierarchy,
    scaled_laplacian,
    scaled_laplacian_scipy,
)
from meshpose.pose2mesh.models import MeshNet, Pose2Mesh, PoseNet

H36M = get_joint_set("h36m17")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small graphs: one thread avoids oversubscription when the machine is busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sphere_hierarchy():
    m = trimesh.creation.icosphere(subdivisions=3)  # 642 vertices
    return MeshHierarchy.from_faces(np.asarray(m.faces), len(m.vertices), levels=4, seed=0)


def random_graph(n: int, p: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, (n, n)) * (rng.random((n, n)) < p)
    w = np.triu(w, 1)
    w = w + w.T
    for i in range(n - 1):  # make sure it is connected
        w[i, i + 1] = w[i + 1, i] = max(w[i, i + 1], 1.0)
    return sp.csr_matrix(w)


def chebyshev_dense(m: np.ndarray, k: int) -> np.ndarray:
    """T_k(M) for symmetric M with spectrum in [-1, 1], via T_k(cos t) = cos(k t)."""
    lam, u = np.linalg.eigh(m)
    return (u * np.cos(k * np.arccos(np.clip(lam, -1, 1)))) @ u.T


# ------------------------------------------------------------------------------- ChebConv
@pytest.mark.parametrize("K", [1, 2, 3, 4])
@pytest.mark.parametrize("layout", ["coo", "csr", "dense"])
@pytest.mark.parametrize("c_out", [5, 2])  # 2 < C_in: the weights are applied before the recurrence
def test_chebconv_matches_dense_brute_force(K, layout, c_out):
    torch.manual_seed(K)
    adj = random_graph(12, 0.3, seed=K)
    lt = scaled_laplacian_scipy(adj).toarray()
    lap = scaled_laplacian(adj, dtype=torch.float64)
    conv = ChebConv(4, c_out, K=K).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, 12, 4, dtype=torch.float64)
    lap = {"coo": lap, "csr": lap.to_sparse_csr(), "dense": lap.to_dense()}[layout]
    y = conv(x, lap)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    expected = sum(np.einsum("nm,bmc,co->bno", chebyshev_dense(lt, k), x.numpy(), w[k]) for k in range(K)) + b
    assert y.shape == (3, 12, c_out)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    # unbatched input
    np.testing.assert_allclose(conv(x[1], lap).detach().numpy(), expected[1], rtol=1e-9, atol=1e-9)


def test_chebconv_gradcheck():
    adj = random_graph(7, 0.4, seed=0)
    lap = scaled_laplacian(adj, dtype=torch.float64)
    conv = ChebConv(2, 3, K=3).double()
    x = torch.randn(2, 7, 2, dtype=torch.float64, requires_grad=True)
    narrow = ChebConv(3, 2, K=3).double()  # the Clenshaw path
    assert torch.autograd.gradcheck(lambda x: narrow(x, lap), (torch.randn(2, 7, 3, dtype=torch.float64,
                                                                           requires_grad=True),))
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return torch.func.functional_call(conv, {"weight": w, "bias": b}, (x, lap))

    assert torch.autograd.gradcheck(f, (x, w, b))
    csr = lap.to_sparse_csr()  # the symmetric CSR product's own backward
    assert torch.autograd.gradcheck(lambda x: conv(x, csr), (x,))


def test_chebconv_float32_with_sparse_laplacian():
    lap = scaled_laplacian(random_graph(9, 0.3, 1))
    y = ChebConv(3, 2)(torch.randn(2, 9, 3), lap)
    assert y.dtype == torch.float32 and y.shape == (2, 9, 2)


# ------------------------------------------------------------------------------- PoseNet
def test_posenet_shapes_and_structure():
    net = PoseNet(16, 17, width=256, blocks=2, dropout=0.5)
    assert len(net.blocks) == 2
    for blk in net.blocks:
        kinds = [type(m) for m in blk.body]
        assert kinds == [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Dropout] * 2
    y = net(torch.randn(4, 16, 2))
    assert y.shape == (4, 17, 3)
    net.eval()
    assert net(torch.randn(1, 16, 2)).shape == (1, 17, 3)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_posenet_root_index():
    net = PoseNet(17, 17, width=64, root_index=0).eval()
    y = net(torch.randn(3, 17, 2))
    assert torch.all(y[:, 0] == 0)


# ------------------------------------------------------------------------------- MeshNet
def test_graph_norm_matches_torch_group_norm_on_the_transposed_signal():
    from meshpose.pose2mesh.models import _GraphNorm

    norm = _GraphNorm(16)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(30, 4, 16, dtype=torch.float64) * 3 + 1
    expected = torch.nn.functional.group_norm(x.permute(1, 2, 0), 8, norm.weight.double(), norm.bias.double())
    torch.testing.assert_close(norm.double()(x), expected.permute(2, 0, 1))


def test_meshnet_shapes(sphere_hierarchy):
    h = sphere_hierarchy
    net = MeshNet(H36M.edges, 17, h, widths=[16, 16, 32, 32, 32], joint_width=32)
    x = torch.randn(2, 17, 5)
    assert net(x).shape == (2, h.sizes[0], 3)
    assert net.to_mesh.out_features == h.sizes[-1]
    net2 = MeshNet(H36M.edges, 17, h, widths=[16, 16, 32], joint_width=32, n_levels=3)
    assert net2.to_mesh.out_features == h.sizes[2]
    assert net2(x).shape == (2, h.sizes[0], 3)
    with pytest.raises(ValueError):
        MeshNet(H36M.edges, 17, h, widths=[16, 16])


def test_meshnet_gradients_reach_all_parameters(sphere_hierarchy):
    torch.manual_seed(0)
    net = MeshNet(H36M.edges, 17, sphere_hierarchy, widths=[16, 16, 16, 32, 32], joint_width=32, blocks=2)
    x = torch.randn(2, 17, 5, requires_grad=True)
    out = net(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_meshnet_state_dict_excludes_graph(sphere_hierarchy):
    net = MeshNet(H36M.edges, 17, sphere_hierarchy, widths=[8] * 5, joint_width=8)
    sd = net.state_dict()
    assert not any(k.startswith(("lap", "up", "joint_lap")) for k in sd)
    net2 = MeshNet(H36M.edges, 17, sphere_hierarchy, widths=[8] * 5, joint_width=8)
    net2.load_state_dict(sd)
    x = torch.randn(1, 17, 5)
    net.eval(), net2.eval()
    torch.testing.assert_close(net(x), net2(x))
    assert net.double()(x.double()).dtype == torch.float64


def test_posenet_root_index_with_2d_channels():
    net = PoseNet(17, 17, width=64, root_index=0, in_channels=3, out_channels=5).eval()
    y = net(torch.randn(3, 17, 3))
    assert y.shape == (3, 17, 5)
    assert torch.all(y[:, 0, 2:] == 0) and torch.any(y[:, 0, :2] != 0)  # only the 3D part is rooted


def test_pose2mesh_reads_box_normalised_slots(sphere_hierarchy):
    """Pose2Mesh normalises pixel keypoints to their box: shifting and scaling the keypoints in the
    image changes nothing, and the frozen PoseNet stays in eval mode without gradients."""
    torch.manual_seed(0)
    posenet = PoseNet(len(SLOTS), 17, width=64, in_channels=3, out_channels=5)
    meshnet = MeshNet(H36M.edges, 17, sphere_hierarchy, widths=[8] * 5, joint_width=8)
    model = Pose2Mesh(posenet, meshnet, freeze_posenet=True).train()
    assert not posenet.training and meshnet.training
    assert not any(p.requires_grad for p in posenet.parameters())
    xy = torch.rand(2, 17, 2) * 200 + 100
    slots = torch.zeros(2, len(SLOTS), 3)
    slots[:, slot_index("h36m17")] = torch.cat([xy, torch.ones(2, 17, 1)], -1)
    moved = slots.clone()
    moved[..., :2] = moved[..., :2] * 2.5 + torch.tensor([40.0, -30.0])
    moved[..., :2] *= moved[..., 2:]  # slots without a keypoint stay at 0
    model.eval()
    a, b = model(slots), model(moved)
    torch.testing.assert_close(a["vertices"], b["vertices"])
    torch.testing.assert_close(b["size"], 2.5 * a["size"])
    assert a["joints2d"].shape == (2, 17, 2) and a["joints3d"].shape == (2, 17, 3)
    assert a["vertices"].shape == (2, sphere_hierarchy.sizes[0], 3)
    assert "vertices" not in Pose2Mesh(posenet)(slots)


def test_meshnet_on_anny_mesh(anny_body, tmp_path):
    from scipy.sparse.csgraph import connected_components

    faces = anny_body.faces
    h = MeshHierarchy.cached(faces, tmp_path / "anny.npz", 13718, levels=7, seed=0)
    n_comp = connected_components(h.adjacencies[0])[0]
    assert h.sizes[0] == 13718 and all(b < a for a, b in zip(h.sizes, h.sizes[1:]))
    assert all(connected_components(a)[0] == n_comp for a in h.adjacencies)
    net = MeshNet(H36M.edges, 17, h).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 17, 5)).shape == (1, 13718, 3)
