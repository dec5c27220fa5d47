"""The Pose2Mesh network of a config: the ``model`` and ``data`` sections of a ``pose2mesh`` run
(also stored in a Pose2Mesh model file), and :func:`build_pose2mesh`, which turns them into a
:class:`~meshpose.pose2mesh.models.Pose2Mesh` for a body mesh."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from meshpose.joints import get_joint_set
from meshpose.models.regressor import INPUT_SETS, SLOTS
from meshpose.pose2mesh.graph import MeshHierarchy
from meshpose.pose2mesh.models import MeshNet, Pose2Mesh, PoseNet
from meshpose.train.config import Limit, between, positive

STAGES = ("posenet", "meshnet")


@dataclass
class Pose2MeshModelConfig:
    posenet_width: int = 1024
    posenet_blocks: int = 2
    posenet_dropout: float = 0.5
    posenet_init: str = ""  #: stage meshnet: the stage-1 run folder (its model.pt or last checkpoint)
    init: str = ""  #: stage meshnet: start both networks from this Pose2Mesh model file (fine-tuning)
    levels: int = 7  #: coarsening levels of the mesh hierarchy (levels + 1 graphs)
    n_levels: int = 0  #: hierarchy levels MeshNet uses (finest first); 0 = all (levels + 1)
    widths: list[int] = field(default_factory=list)  #: width per used level, finest first; [] = default_widths
    joint_width: int = 128
    blocks: int = 1  #: residual Chebyshev blocks per graph level
    K: int = 3  #: Chebyshev polynomial order
    hierarchy_seed: int = 0
    cache_dir: str = "~/.cache/meshpose"  #: where the mesh hierarchy .npz is cached

    LIMITS: ClassVar[dict[str, Limit]] = {
        "posenet_width": positive(4096), "posenet_blocks": positive(64), "posenet_dropout": between(0, 1),
        "levels": positive(12), "n_levels": between(0, 13), "widths": positive(4096),
        "joint_width": positive(4096), "blocks": positive(16), "K": positive(16),
        "hierarchy_seed": between(0, 2**32 - 1)}
    LENGTHS: ClassVar[dict[str, tuple[int, int]]] = {"widths": (0, 13)}


@dataclass
class Pose2MeshDataConfig:
    stage: str = "meshnet"  #: "posenet" or "meshnet": what a batch holds and which network trains
    input_sets: list[str] = field(default_factory=lambda: list(INPUT_SETS))
    joint_set: str = "h36m17"  #: MeshNet's skeleton graph and PoseNet's output joints
    bank: str = ""  #: pose bank .npz; "" = the CMU bank shipped in the package
    held_out_clips: list[str] = field(default_factory=lambda: ["cmu/13/", "cmu/14/"])  #: validation only
    regressor_samples: int = 300  #: random bodies for fitting the vertex-to-joint regressor
    val_size: int = 512
    val_batch: int = 64
    loss_joints3d: float = 1.0  #: stage posenet
    loss_joints2d: float = 1.0  #: stage posenet
    loss_vertices: float = 1.0  #: stage meshnet
    loss_joints: float = 1.0
    loss_normal: float = 0.1
    loss_edge: float = 1.0

    LIMITS: ClassVar[dict[str, Limit]] = {
        "regressor_samples": positive(100_000), "val_size": positive(65_536), "val_batch": positive(65_536),
        "loss_joints3d": between(0, 1e6), "loss_joints2d": between(0, 1e6), "loss_vertices": between(0, 1e6),
        "loss_joints": between(0, 1e6), "loss_normal": between(0, 1e6), "loss_edge": between(0, 1e6)}
    LENGTHS: ClassVar[dict[str, tuple[int, int]]] = {"input_sets": (1, 16)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"stage": STAGES, "input_sets": INPUT_SETS}


def build_pose2mesh(model, data, faces, posenet_only: bool = False, freeze_posenet: bool = False):
    """The :class:`~meshpose.pose2mesh.models.Pose2Mesh` of a config (``model``, ``data``
    sections) for a mesh with ``faces`` (F, 3); its graph hierarchy is built or read from
    ``model.cache_dir``."""
    joints = get_joint_set(data.joint_set)
    posenet = PoseNet(len(SLOTS), len(joints), width=model.posenet_width, blocks=model.posenet_blocks,
                      dropout=model.posenet_dropout, in_channels=3, out_channels=5)
    if posenet_only:
        return Pose2Mesh(posenet)
    n_vertices = int(faces.max()) + 1
    path = (Path(model.cache_dir).expanduser()
            / f"pose2mesh_v{n_vertices}_f{len(faces)}_l{model.levels}_s{model.hierarchy_seed}.npz")
    hierarchy = MeshHierarchy.cached(faces, path, n_vertices, levels=model.levels, seed=model.hierarchy_seed)
    meshnet = MeshNet(joints.edges, len(joints), hierarchy, widths=model.widths or None,
                      joint_width=model.joint_width, K=model.K, blocks=model.blocks, in_features=5,
                      n_levels=model.n_levels or None)
    return Pose2Mesh(posenet, meshnet, freeze_posenet=freeze_posenet)
