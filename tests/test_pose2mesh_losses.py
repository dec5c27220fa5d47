"""Pose2Mesh losses against hand computations, and the fitted vertex-to-joint regressor against
``body_joints`` on held-out random Anny bodies."""
from __future__ import annotations

import math

import pytest
import torch

from meshpose.pose2mesh.losses import (
    edge_length_loss,
    fit_joint_regressor,
    joint_l1,
    normal_loss,
    regress_joints,
    vertex_l1,
)


def grid_mesh(n: int = 5):
    """A flat n x n grid in the z = 0 plane: vertices (1, n*n, 3), faces (2 (n-1)^2, 3)."""
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    vertices = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(1, -1, 3) * 0.1
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]]
    return vertices, torch.tensor(faces)


def test_losses_are_zero_for_identical_meshes():
    torch.manual_seed(0)
    vertices = torch.randn(2, 30, 3, dtype=torch.float64)
    faces = torch.randint(30, (40, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    regressor = torch.softmax(torch.randn(5, 30, dtype=torch.float64), -1)
    assert float(vertex_l1(vertices, vertices)) == 0
    assert float(edge_length_loss(vertices, vertices, faces)) == 0
    assert float(joint_l1(vertices, regress_joints(vertices, regressor), regressor)) == pytest.approx(0, abs=1e-12)
    # Each edge lies in its own face's plane: |cos| is 0 up to rounding.
    assert float(normal_loss(vertices, vertices, faces)) == pytest.approx(0, abs=1e-7)


def test_vertex_and_joint_l1_values():
    pred = torch.zeros(1, 2, 3)
    true = torch.tensor([[[1.0, 0, 0], [0, -2.0, 3.0]]])
    assert float(vertex_l1(pred, true)) == pytest.approx(6 / 6)
    regressor = torch.tensor([[0.5, 0.5]])  # the midpoint
    assert float(joint_l1(true, torch.tensor([[[0.5, -1.0, 1.5]]]), regressor)) == pytest.approx(0, abs=1e-7)
    assert float(joint_l1(pred, torch.tensor([[[0.3, 0.6, -0.9]]]), regressor)) == pytest.approx(0.6)


def test_normal_loss_ignores_in_plane_stretch_but_not_bending():
    vertices, faces = grid_mesh()
    stretched = vertices.clone()
    stretched[..., 0] *= 2.5  # anisotropic in-plane stretch plus shear, no rotation out of plane
    stretched[..., 1] = 0.7 * stretched[..., 1] + 0.3 * stretched[..., 0]
    assert float(normal_loss(stretched, vertices, faces)) == pytest.approx(0, abs=1e-12)
    assert float(edge_length_loss(stretched, vertices, faces)) > 0.01
    bent = vertices.clone()
    x = bent[..., 0]
    bent[..., 2] = torch.where(x > 0.2, (x - 0.2) * math.tan(math.radians(40)), torch.zeros_like(x))  # a fold
    loss = float(normal_loss(bent, vertices, faces))
    assert loss > 0.05
    # One bent face by hand: all faces right of the fold tilt by 40 deg; each of their edges with
    # an x component gets |cos| = |dx| sin(40) / |edge|.
    assert loss < math.sin(math.radians(40))


def test_edge_length_loss_on_one_triangle():
    faces = torch.tensor([[0, 1, 2]])
    true = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [0, 4.0, 0]]])  # edges 3, 5, 4
    pred = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]]])  # edges 1, sqrt 2, 1
    expected = (abs(1 - 3) + abs(math.sqrt(2) - 5) + abs(1 - 4)) / 3
    assert float(edge_length_loss(pred, true, faces)) == pytest.approx(expected, rel=1e-6)
    # Translation and rotation leave every edge length unchanged.
    turn = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert float(edge_length_loss(true @ turn.T + 7, true, faces)) == pytest.approx(0, abs=1e-5)


def test_fitted_regressor_reproduces_body_joints_on_held_out_bodies():
    from meshpose.body import AnnyBody, body_joints
    from meshpose.data.posebank import load_shipped_pose_bank

    torch.set_num_threads(2)
    body = AnnyBody()
    regressor = fit_joint_regressor(body, "h36m17", samples=100, seed=0)
    assert regressor.shape == (17, body.faces.max() + 1)
    torch.testing.assert_close(regressor.sum(1), torch.ones(17), atol=1e-4, rtol=0)
    assert fit_joint_regressor(body, "h36m17", samples=100, seed=0) is regressor  # cached
    # Held-out bodies: other poses and phenotypes, turned and moved (the fit is equivariant).
    generator = torch.Generator().manual_seed(12345)
    bank = load_shipped_pose_bank()
    index = torch.randint(len(bank), (64,), generator=generator)
    with torch.no_grad():
        output = body(bank.rotation_matrices(index.numpy()), torch.rand(64, 6, generator=generator))
    turn = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    vertices = output.vertices @ turn.T + torch.tensor([0.3, -1.0, 4.0])
    joints = body_joints(output, "h36m17", anatomical=True) @ turn.T + torch.tensor([0.3, -1.0, 4.0])
    error = (regress_joints(vertices, regressor) - joints).norm(dim=-1)
    # Observed: 2.5 mm mean, 7.5 mm for the worst joint (knees), 17 mm max with 100 fitting bodies.
    assert float(error.mean()) < 0.006
    assert float(error.mean(0).max()) < 0.015
