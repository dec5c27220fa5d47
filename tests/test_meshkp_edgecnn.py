"""The reference edge CNN for mesh keypoints: 1-ring, features, normalisation, Hungarian loss,
model, the ``meshkp_seed`` training task. Hand-made meshes; the shared human_seg meshes only in
an optional test."""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from meshpose.meshkp.edgecnn import (
    SeedEdgeCNN,
    edge_features,
    edge_inputs,
    edge_neighbours,
    edge_topology,
    feature_channels,
    hungarian_distance_loss,
    normalise_mesh,
)
from meshpose.meshkp.segdata import meshcnn_edges

DATA = Path(os.environ.get("MESHPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# A regular tetrahedron, consistently oriented. MeshCNN edge order (faces walked in order):
# e0 (0,1), e1 (1,2), e2 (0,2) from face 0; e3 (0,3), e4 (1,3) from face 1; e5 (2,3) from face 2.
TETRA_V = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
TETRA_F = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])


def test_edge_neighbours_tetrahedron_by_hand():
    edges, neighbours, _ = edge_topology(TETRA_F)
    assert edges.tolist() == [[0, 1], [1, 2], [0, 2], [0, 3], [1, 3], [2, 3]]
    assert (edges == meshcnn_edges(TETRA_F)).all()
    # Edge e, first face: its next two edges in that face; then the same in the second face.
    # e0: face0 [e0 e1 e2] -> e1 e2; face1 [e3 e4 e0] -> e3 e4
    # e1: face0 -> e2 e0; face3 [e4 e5 e1] -> e4 e5
    # e2: face0 -> e0 e1; face2 [e2 e5 e3] -> e5 e3
    # e3: face1 -> e4 e0; face2 -> e2 e5
    # e4: face1 -> e0 e3; face3 -> e5 e1
    # e5: face2 -> e3 e2; face3 -> e1 e4
    expected = [[1, 2, 3, 4], [2, 0, 4, 5], [0, 1, 5, 3], [4, 0, 2, 5], [0, 3, 5, 1], [3, 2, 1, 4]]
    assert edge_neighbours(TETRA_F).tolist() == expected


def test_edge_neighbours_boundary_is_minus_one():
    # Two triangles sharing edge (1, 2): e0 (0,1), e1 (1,2), e2 (0,2), e3 (1,3), e4 (2,3).
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    assert edge_neighbours(faces).tolist() == [[1, 2, -1, -1], [2, 0, 3, 4], [0, 1, -1, -1],
                                               [4, 1, -1, -1], [1, 3, -1, -1]]


def test_non_manifold_raises():
    with pytest.raises(ValueError, match="non-manifold"):
        edge_neighbours(np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]]))


def test_meshcnn_features_regular_tetrahedron():
    features = edge_features(TETRA_V, TETRA_F, "meshcnn")
    assert features.shape == (6, 5)
    np.testing.assert_allclose(features[:, 0], math.acos(1 / 3), atol=1e-6)  # dihedral 70.53 deg
    np.testing.assert_allclose(features[:, 1:3], math.pi / 3, atol=1e-6)  # opposite angles 60 deg
    np.testing.assert_allclose(features[:, 3:5], math.sqrt(3) / 2, atol=1e-6)  # height / length
    flat = edge_features(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.0]]),
                         np.array([[0, 1, 2], [2, 1, 3]]), "meshcnn")
    assert flat[1, 0] == pytest.approx(math.pi)  # flat interior edge


def test_midpoint_features_and_sign_invariance():
    f = edge_features(TETRA_V, TETRA_F, "midpoint")
    assert f.shape == (6, feature_channels("midpoint")) == (6, 6)
    np.testing.assert_allclose(f[0, :3], (TETRA_V[0] + TETRA_V[1]) / 2)
    assert (f[:, 4] >= 0).all()  # vectors point up
    # Relabelling the vertices reverses some edges' vertex order: same features per edge.
    perm = np.array([3, 2, 1, 0])
    inverse = np.argsort(perm)
    g = edge_features(TETRA_V[perm], inverse[TETRA_F], "midpoint+meshcnn")
    key = lambda x: x[np.lexsort(np.round(x, 6).T)]  # noqa: E731
    np.testing.assert_allclose(key(g), key(edge_features(TETRA_V, TETRA_F, "midpoint+meshcnn")), atol=1e-6)
    with pytest.raises(ValueError):
        edge_features(TETRA_V, TETRA_F, "curvature")


def test_edge_inputs_layout_and_padding():
    features = np.arange(6 * 2, dtype=np.float32).reshape(6, 2) + 1
    x = edge_inputs(features, edge_neighbours(TETRA_F), 8)
    assert x.shape == (2, 8, 5)
    np.testing.assert_array_equal(x[:, 0], features[[0, 1, 2, 3, 4]].T)  # edge 0 and its 1-ring
    assert (x[:, 6:] == 0).all()  # padding
    assert edge_inputs(features, edge_neighbours(TETRA_F), 3).shape == (2, 3, 5)
    open_x = edge_inputs(features[:5], edge_neighbours(np.array([[0, 1, 2], [2, 1, 3]])), 5)
    assert (open_x[:, 0, 3:] == 0).all()  # missing neighbours are zeros


def test_normalise_mesh():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3)) * [1, 3, 0.5] + [10, -4, 2]
    out, centre, scale = normalise_mesh(vertices)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    assert np.linalg.norm(out.max(0) - out.min(0)) == pytest.approx(1.0)
    np.testing.assert_allclose(out * scale + centre, vertices)


def test_hungarian_loss_is_brute_force_minimum_and_permutation_invariant():
    gen = torch.Generator().manual_seed(0)
    pred, gt = torch.randn(3, 5, 3, generator=gen), torch.randn(3, 5, 3, generator=gen)
    per_sample = hungarian_distance_loss(pred, gt, reduction="none")
    for b in range(3):
        best = min(float((pred[b, list(p)] - gt[b]).norm(dim=-1).sum()) for p in itertools.permutations(range(5)))
        assert float(per_sample[b]) == pytest.approx(best, abs=1e-5)
    assert float(hungarian_distance_loss(pred, gt)) == pytest.approx(float(per_sample.mean()), abs=1e-6)
    shuffled = pred[:, torch.randperm(5, generator=gen)]
    assert float(hungarian_distance_loss(shuffled, gt)) == pytest.approx(float(per_sample.mean()), abs=1e-6)
    assert float(hungarian_distance_loss(gt[:, [4, 2, 0, 1, 3]], gt)) == pytest.approx(0.0, abs=1e-4)
    pred.requires_grad_(True)
    hungarian_distance_loss(pred, gt).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_model_output_shape():
    model = SeedEdgeCNN(n_edges=40, in_channels=6, hidden=32)
    assert model(torch.randn(2, 6, 40, 5)).shape == (2, 12, 3)
    with pytest.raises(ValueError):
        model(torch.randn(2, 6, 41, 5))


def _sphere(subdivisions=1):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def _synthetic_meshes(n, seed=0):
    """n stretched, shifted spheres (42 vertices, 120 edges); keypoints = 12 of their vertices."""
    vertices, faces = _sphere()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = vertices * rng.uniform(0.5, 2.0, size=3) + rng.normal(size=3)
        out.append((v, faces, v[:12].copy()))
    return out


def test_overfits_tiny_dataset():
    torch.manual_seed(0)
    xs, ys = [], []
    for v, f, k in _synthetic_meshes(4):
        nv, centre, scale = normalise_mesh(v)
        xs.append(edge_inputs(edge_features(nv, f, "midpoint"), edge_neighbours(f), 120))
        ys.append((k - centre) / scale)
    x, y = torch.tensor(np.stack(xs)), torch.tensor(np.stack(ys), dtype=torch.float32)
    model = SeedEdgeCNN(120, 6, 64)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):  # by step 60 the loss is at 5-10% of its start (3% after 150 steps)
        loss = hungarian_distance_loss(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.fixture
def tiny_dataset(tmp_path):
    """A dataset folder like `meshpose data build-keypoints` writes: 4 train, 1 val, 1 test mesh."""
    from meshpose.io.meshes import write_mesh
    from meshpose.joints import get_joint_set

    names = [f"faust__tr_reg_{i:03d}.obj" for i in (0, 1, 2, 3, 70, 80)]  # split by subject
    (tmp_path / "meshes").mkdir()
    header = ["mesh"] + [f"{j}_{a}" for j in get_joint_set("seed12").names for a in "xyz"]
    lines = [",".join(header)]
    for name, (v, f, k) in zip(names, _synthetic_meshes(6, seed=1)):
        write_mesh(tmp_path / "meshes" / name, v, f)
        lines.append(",".join([name] + [repr(float(c)) for c in k.ravel()]))
    (tmp_path / "keypoints.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_task_batches_validation_and_evaluation(tiny_dataset):
    from meshpose.errors import MeshposeError
    from meshpose.meshkp.seed_task import SeedEdgeTask, evaluate_seed
    from meshpose.tasks import TASKS

    task = TASKS["meshkp_seed"]
    assert isinstance(task, SeedEdgeTask)
    task = SeedEdgeTask()
    model_cfg = task.ModelConfig(n_edges=100, hidden=32, features="midpoint+meshcnn")
    data_cfg = task.DataConfig(dataset=str(tiny_dataset))
    model = task.build_model(model_cfg, data_cfg)
    dataset = task.dataset(data_cfg)
    assert task.dataset(data_cfg) is dataset  # read once
    assert [len(dataset.indices(s)) for s in ("train", "val", "test")] == [4, 1, 1]
    a = task.make_batch(data_cfg, torch.Generator().manual_seed(5), 6, "cpu")
    b = task.make_batch(data_cfg, torch.Generator().manual_seed(5), 6, "cpu", slice(3, 6))
    assert set(a["index"]) <= set(dataset.indices("train").tolist())
    torch.testing.assert_close(a["keypoints"][3:], b["keypoints"])  # same data under any split of rows
    # augmentation turns about +y and scales: the up coordinate keeps its order
    i = a["index"][0]
    ratio = a["vertices"][0][:, 1] / np.where(dataset.vertices[i][:, 1] == 0, 1, dataset.vertices[i][:, 1])
    assert np.ptp(ratio[dataset.vertices[i][:, 1] != 0]) < 1e-9
    loss, scalars = task.loss(model, a)
    assert loss.ndim == 0 and torch.isfinite(loss) and "mean_distance" in scalars
    scores = task.validate(model, data_cfg, "cpu")
    assert set(scores) >= {"val/loss", "val/pck10", "val/pck05", "val/pcm"}
    result = evaluate_seed(model, tiny_dataset, "test")
    assert result["n"] == 1 and 0 <= result["pck05"] <= result["pck10"] <= 1
    with pytest.raises(MeshposeError, match="build-keypoints"):
        task.dataset(task.DataConfig())


def test_trains_through_engine_and_scores(tiny_dataset, tmp_path, capsys):
    from meshpose.cli import main
    from meshpose.tasks import TASKS, train
    from meshpose.train.config import config_from_dict

    config = config_from_dict({
        "task": "meshkp_seed",
        "run": {"device": "cpu"},
        "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "log_every": 1},
        "model": {"n_edges": 120, "hidden": 16},
        "data": {"dataset": str(tiny_dataset)},
    }, tasks=TASKS)
    run = train(config, run_dir=tmp_path / "run")
    assert (run / "model.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert main(["eval-reference", str(run), str(tiny_dataset), "--weights", "final"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith("| run | 120 | midpoint | final | test | 1 |")


@pytest.mark.skipif(not (DATA / "human_seg" / "meshes").is_dir(), reason="shared human_seg data absent")
def test_human_seg_meshes_have_full_one_rings():
    from meshpose.io.meshes import read_mesh

    path = sorted((DATA / "human_seg" / "meshes").glob("*.obj"))[0]
    faces = np.asarray(read_mesh(path).faces)
    edges, neighbours, _ = edge_topology(faces)
    assert (edges == meshcnn_edges(faces)).all()
    assert (neighbours >= 0).all()  # closed meshes
    # every neighbour shares exactly one vertex with its edge
    shared = (edges[neighbours][..., :, None] == edges[:, None, None, :]).any(-1).sum(-1)
    assert (shared == 1).all()
