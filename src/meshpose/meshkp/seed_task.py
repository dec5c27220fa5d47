"""Training task ``meshkp_seed``: the reference edge CNN (:mod:`meshpose.meshkp.edgecnn`) on the
mesh-keypoints dataset built by ``meshpose data build-keypoints``, with the fixed subject split
of :mod:`meshpose.meshkp.split`.

    meshpose train configs/meshkp_seed.yaml data.dataset=/work/kpdata
    meshpose eval-reference RUN_DIR DATASET [--split test] [--weights best|final]

Every mesh and its keypoints are normalised (centroid, bounding-box diagonal), so the loss and
every distance reported are fractions of the mesh's bounding-box diagonal. Training samples are
drawn with the engine's generator (mesh index, turn about the up axis, uniform scale), so a
resumed run sees the same data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from meshpose import metrics
from meshpose.errors import MeshposeError
from meshpose.meshkp.edgecnn import (
    N_KEYPOINTS,
    UP_AXIS,
    SeedEdgeCNN,
    edge_features,
    edge_inputs,
    edge_topology,
    feature_channels,
    hungarian_distance_loss,
    normalise_mesh,
)
from meshpose.meshkp.segdata import read_dataset
from meshpose.meshkp.split import COLLECTIONS, split_of
from meshpose.train.checkpoint import (
    check_checkpoint,
    check_state_dict,
    load_model_weights,
    load_weights_file,
)
from meshpose.train.config import Limit, between, positive, read_run_config

__all__ = ["SeedDataset", "SeedEdgeTask", "evaluate_seed", "load_seed_dataset"]


@dataclass
class SeedModelConfig:
    n_edges: int = 750  #: first edges in MeshCNN order fed to the CNN (reference 750; 2250 = all)
    hidden: int = 512  #: width of the hidden linear layer
    features: str = "midpoint"  #: per-edge features: midpoint, xyz, meshcnn or '+'-joined

    LIMITS: ClassVar[dict[str, Limit]] = {"n_edges": positive(100_000), "hidden": positive(8192)}


@dataclass
class SeedDataConfig:
    dataset: str = ""  #: folder built by `meshpose data build-keypoints`
    augment: bool = True  #: random turn about the up axis and uniform scale for training
    yaw_deg: float = 180.0  #: turns drawn uniformly in [-yaw_deg, yaw_deg]
    scale_range: float = 0.1  #: scales drawn uniformly in [1 - scale_range, 1 + scale_range]
    val_size: int = 0  #: unused: validation is the whole val split
    hold_out: str = ""  #: a collection left out whole as the test split (meshpose.meshkp.split)

    LIMITS: ClassVar[dict[str, Limit]] = {"yaw_deg": between(0, 180), "scale_range": between(0, 1, high_open=True),
                                          "val_size": between(0, 1_000_000)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"hold_out": ("", *COLLECTIONS)}


@dataclass
class SeedDataset:
    """The normalised meshes of one dataset folder, in keypoints.csv order.

    Attributes:
        names: mesh file names.
        splits: ``"train"``/``"val"``/``"test"`` per mesh.
        vertices: ``(V, 3)`` float64 per mesh, normalised (centroid 0, bbox diagonal 1).
        faces: ``(F, 3)`` int64 per mesh.
        topology: :func:`edge_topology` per mesh.
        keypoints: ``(M, 12, 3)`` float64, normalised like their mesh.
        centres, scales: ``(M, 3)`` centroids and ``(M,)`` diagonals, mesh units.
    """

    names: list[str]
    splits: list[str]
    vertices: list[np.ndarray]
    faces: list[np.ndarray]
    topology: list[tuple]
    keypoints: np.ndarray
    centres: np.ndarray
    scales: np.ndarray

    def indices(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def inputs(self, index: int, features: str, n_edges: int, vertices: np.ndarray | None = None) -> np.ndarray:
        """``(C, n_edges, 5)`` network input of mesh ``index`` (optionally with moved vertices)."""
        vertices = self.vertices[index] if vertices is None else vertices
        topology = self.topology[index]
        return edge_inputs(edge_features(vertices, self.faces[index], features, topology), topology[1], n_edges)


def load_seed_dataset(folder: str | Path, hold_out: str = "") -> SeedDataset:
    """Read a ``build-keypoints`` folder (:func:`~meshpose.meshkp.segdata.read_dataset`) and
    normalise every mesh; ``hold_out``: a collection left out whole (:func:`~meshpose.meshkp.split.split_of`)."""
    raw = read_dataset(folder)
    count = len(raw["names"])
    data = SeedDataset([], [], [], [], [], np.zeros((count, N_KEYPOINTS, 3)), np.zeros((count, 3)), np.zeros(count))
    for i, (name, raw_vertices, faces) in enumerate(zip(raw["names"], raw["vertices"], raw["faces"])):
        vertices, centre, scale = normalise_mesh(raw_vertices)
        data.names.append(name)
        data.splits.append(split_of(name, hold_out))
        data.vertices.append(vertices)
        data.faces.append(faces)
        data.topology.append(edge_topology(faces))
        data.keypoints[i] = (raw["keypoints"][i] - centre) / scale
        data.centres[i], data.scales[i] = centre, scale
    return data


def _turn(yaw: float) -> np.ndarray:
    """Rotation by ``yaw`` radians about the up axis (+y)."""
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    assert UP_AXIS == 1
    return rotation


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


@torch.no_grad()
def _predict(model: nn.Module, data: SeedDataset, indices, device, chunk: int = 16) -> np.ndarray:
    """``(len(indices), 12, 3)`` predictions (normalised units) for meshes ``indices``."""
    core = _unwrap(model)
    out = []
    for start in range(0, len(indices), chunk):
        x = np.stack([data.inputs(int(i), core.features, core.n_edges) for i in indices[start:start + chunk]])
        out.append(model(torch.from_numpy(x).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, N_KEYPOINTS, 3))


def _scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PCK@0.1, PCK@0.05, PCM(0.9) at 0.1 and the mean matched distance (fractions of the diagonal)."""
    if not len(gt):
        raise MeshposeError("no meshes in this split")
    return {
        "pck10": float(metrics.matched_pck(pred, gt, 0.1)),
        "pck05": float(metrics.matched_pck(pred, gt, 0.05)),
        "pcm": float(metrics.matched_pcm(pred, gt, 0.1, ratio=0.9)),
        "mean_distance": float(metrics.matched_mpjpe(pred, gt)),
    }


def evaluate_seed(model: nn.Module, dataset_dir: str | Path | SeedDataset, split: str = "test") -> dict:
    """Score ``model`` on one split of a keypoint dataset, as the reference measures.

    Predictions are Hungarian-matched to the ground truth per mesh; thresholds are fractions of
    each mesh's bounding-box diagonal (1 after normalisation).

    Returns:
        ``{"pck10", "pck05", "pcm", "mean_distance", "n"}``: PCK at 0.1 and 0.05 of the diagonal,
        the fraction of meshes with >= 90 % of their keypoints within 0.1, the mean matched
        keypoint distance (fraction of the diagonal) and the number of meshes.
    """
    data = dataset_dir if isinstance(dataset_dir, SeedDataset) else load_seed_dataset(dataset_dir)
    indices = data.indices(split)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        pred = _predict(model, data, indices, device)
    finally:
        model.train(was_training)
    return {**_scores(pred, data.keypoints[indices]), "n": len(indices)}


class SeedEdgeTask:
    """The engine's task: :class:`SeedEdgeCNN` with the Hungarian distance loss."""

    ModelConfig = SeedModelConfig
    DataConfig = SeedDataConfig

    def __init__(self):
        self._datasets: dict[str, SeedDataset] = {}

    def dataset(self, data: SeedDataConfig) -> SeedDataset:
        """The dataset of ``data.dataset``, read once per task instance."""
        if not data.dataset:
            raise MeshposeError("set data.dataset to a folder built by meshpose data build-keypoints")
        key = (str(Path(data.dataset).resolve()), data.hold_out)
        if key not in self._datasets:
            self._datasets[key] = load_seed_dataset(*key)
        return self._datasets[key]

    def build_model(self, model: SeedModelConfig, data: SeedDataConfig) -> nn.Module:
        if model.n_edges <= 0 or model.hidden <= 0:
            raise MeshposeError("model.n_edges and model.hidden must be positive")
        try:
            channels = feature_channels(model.features)
        except ValueError as error:
            raise MeshposeError(f"model.features: {error}") from None
        return SeedEdgeCNN(model.n_edges, channels, model.hidden, model.features)

    def make_batch(self, data: SeedDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        dataset = self.dataset(data)
        train = dataset.indices("train")
        if not len(train):
            raise MeshposeError("the dataset has no training meshes", data.dataset)
        pick = torch.randint(len(train), (batch_size,), generator=generator)
        yaw = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(data.yaw_deg)
        scale = 1 + (torch.rand(batch_size, generator=generator, dtype=torch.float64) * 2 - 1) * data.scale_range
        vertices, keypoints, index = [], [], []
        for p, y, s in zip(pick[rows].tolist(), yaw[rows].tolist(), scale[rows].tolist()):
            i = int(train[p])
            move = _turn(y) * s if data.augment else np.eye(3)
            vertices.append(dataset.vertices[i] @ move.T)
            keypoints.append(dataset.keypoints[i] @ move.T)
            index.append(i)
        return {"index": index, "vertices": vertices, "keypoints": torch.tensor(np.stack(keypoints), dtype=torch.float32),
                "dataset": dataset, "device": device}

    def loss(self, model: nn.Module, batch: dict):
        core, dataset = _unwrap(model), batch["dataset"]
        x = np.stack([dataset.inputs(i, core.features, core.n_edges, v) for i, v in zip(batch["index"], batch["vertices"])])
        pred = model(torch.from_numpy(x).to(batch["device"])).float()
        loss = hungarian_distance_loss(pred, batch["keypoints"].to(pred.device))
        return loss, {"mean_distance": float(loss.detach()) / N_KEYPOINTS}

    @torch.no_grad()
    def validate(self, model: nn.Module, data: SeedDataConfig, device) -> dict[str, float]:
        dataset = self.dataset(data)
        indices = dataset.indices("val")
        scores = _scores(_predict(model, dataset, indices, device), dataset.keypoints[indices])
        return {"val/loss": scores["mean_distance"], "val/pck10": scores["pck10"], "val/pck05": scores["pck05"],
                "val/pcm": scores["pcm"], "val/mean_distance": scores["mean_distance"]}


def load_run_model(run_dir: str | Path, weights: str = "best") -> tuple[nn.Module, object]:
    """The model of a ``meshkp_seed`` run folder with its final (``model.pt``) or best weights.

    Every file is read safely (``weights_only``: a run folder from someone else runs no code).

    Raises:
        MeshposeError: naming the path: not a run folder, not a ``meshkp_seed`` run, a damaged
            config, missing, damaged or unfitting weights.
    """
    if weights not in ("best", "final"):
        raise MeshposeError(f"weights must be best or final, got {weights!r}")
    run_dir = Path(run_dir)
    task = SeedEdgeTask()
    config = read_run_config(run_dir, {"meshkp_seed": task})
    if weights == "best":
        path = run_dir / "checkpoints" / "best.pt"
        state = check_checkpoint(load_weights_file(path, kind="best checkpoint"), path)["model"]
    else:
        path = run_dir / "model.pt"
        state = check_state_dict(load_weights_file(path, kind="final model file (an unfinished run?)"), path)
    model = task.build_model(config.model, config.data)
    load_model_weights(model, state, path)
    return model.eval(), config


def reference_rows(run_dir: str | Path, dataset: str | Path) -> list[dict]:
    """``meshpose eval`` row of a trained reference run (best checkpoint) on the test split.

    The reference predicts an unordered set of seed12 points: the labelled and synthetic
    columns do not apply to it. The dataset is read (and checked) before the run.
    """
    data = load_seed_dataset(dataset)
    model, config = load_run_model(run_dir)
    scores = evaluate_seed(model, data, "test")
    return [{"model": f"reference edge CNN, first {config.model.n_edges} edges ({config.model.features} features)",
             "meshes": scores["n"], "pck10": scores["pck10"], "pck05": scores["pck05"], "pcm": scores["pcm"]}]


HEADER = ("| run | n_edges | features | weights | split | meshes | PCK@0.1 | PCK@0.05 | PCM(0.9) | mean dist |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def score_row(run_dir: str | Path, dataset: str | Path, split: str = "test", weights: str = "best") -> str:
    """``meshpose eval-reference RUN_DIR DATASET``: a Markdown row (under :data:`HEADER`) of a
    trained reference run's scores on one split of the keypoint dataset."""
    data = load_seed_dataset(dataset)
    model, config = load_run_model(run_dir, weights)
    scores = evaluate_seed(model, data, split)
    return (f"| {Path(run_dir).name} | {config.model.n_edges} | {config.model.features} | {weights} | "
            f"{split} | {scores['n']} | {scores['pck10']:.3f} | {scores['pck05']:.3f} | {scores['pcm']:.3f} | "
            f"{scores['mean_distance']:.4f} |")
