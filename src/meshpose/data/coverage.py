"""How well a motion collection covers a set of test poses, independent of any model.

Poses from different sources (Human3.6M joints, mocap skeletons, Anny bodies) differ in their
proportions as much as in their pose. So every pose is first rebuilt on one skeleton,
:data:`SKELETON`: 15 body joints whose bones keep their *directions* from the source and get
the same lengths everywhere (:func:`rebuild`). Two numbers then say how far a test pose is from
what a collection holds:

* :func:`nearest_pose_distance`: the PA-MPJPE (similarity Procrustes, metres) from each test
  pose to its nearest pose in the collection;
* the plain-lifter probe (``benchmarks/bench_coverage.py``): an MLP trained to lift perfect 2D
  projections of the collection's poses, tested on the test poses.

Joint arrays here are ``(N, 15, 3)`` in metres, z up, in :data:`SKELETON`'s order.
"""
from __future__ import annotations

import numpy as np
import torch

from meshpose.joints import get_joint_set
from meshpose.metrics import procrustes_align

__all__ = ["SKELETON", "PARENTS", "from_h36m17", "from_retarget_points", "nearest_pose_distance",
           "rebuild", "skeleton_bone_lengths"]

#: The common skeleton: joint names and each joint's parent (-1 for the root).
SKELETON: tuple[str, ...] = (
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
    "thorax", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
    "right_wrist",
)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 7, 9, 10, 7, 12, 13)

#: h36m17 joint standing for each skeleton joint.
_FROM_H36M17 = {"thorax": "thorax", "head": "head_top"}
#: Retarget point (:data:`meshpose.data.retarget.RETARGET_POINTS`) standing for each joint.
_FROM_RETARGET = {"thorax": "neck", "head": "head"}


def _select(joints: np.ndarray, names, table: dict[str, str]) -> np.ndarray:
    names = list(names)
    return np.stack([joints[..., names.index(table.get(j, j)), :] for j in SKELETON], axis=-2)


def from_h36m17(joints: np.ndarray) -> np.ndarray:
    """``(..., 17, 3)`` h36m17 joints -> ``(..., 15, 3)`` skeleton joints."""
    return _select(np.asarray(joints), get_joint_set("h36m17").names, _FROM_H36M17)


def from_retarget_points(points: np.ndarray, point_names) -> np.ndarray:
    """``(..., P, 3)`` mocap retarget points (``meshpose data points``) -> ``(..., 15, 3)``."""
    return _select(np.asarray(points), point_names, _FROM_RETARGET)


def skeleton_bone_lengths(joints: np.ndarray) -> np.ndarray:
    """``(15,)`` median length of each joint's bone to its parent over ``(N, 15, 3)`` poses (0 for
    the root): the common lengths :func:`rebuild` gives every pose."""
    lengths = np.zeros(len(SKELETON))
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            lengths[j] = np.median(np.linalg.norm(joints[:, j] - joints[:, parent], axis=-1))
    return lengths


def rebuild(joints: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(N, 15, 3)`` poses rebuilt from the pelvis with each bone's direction kept and its length
    set to ``lengths`` (15,), so that poses of different people differ only in pose."""
    joints = np.asarray(joints, dtype=np.float64)
    out = np.zeros_like(joints)
    out[:, 0] = 0.0
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            continue
        bone = joints[:, j] - joints[:, parent]
        direction = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
        out[:, j] = out[:, parent] + lengths[j] * direction
    return out


def _canonical(poses: torch.Tensor) -> torch.Tensor:
    """Poses turned about the vertical so that the hip line points along +x (root at origin):
    the frame in which nearest candidates are searched before the exact Procrustes distance."""
    hips = poses[:, 1] - poses[:, 4]
    angle = torch.atan2(hips[:, 1], hips[:, 0])
    cos, sin = torch.cos(-angle), torch.sin(-angle)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    turn = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], -1).view(-1, 3, 3)
    return (poses - poses[:, :1]) @ turn.transpose(1, 2)


@torch.no_grad()
def nearest_pose_distance(queries: np.ndarray, collection: np.ndarray, candidates: int = 32,
                          chunk: int = 512) -> np.ndarray:
    """``(Q,)`` PA-MPJPE (metres) from each query pose to its nearest pose of ``collection``.

    Both are ``(N, J, 3)``. The ``candidates`` nearest poses in a yaw-canonical frame (plain
    squared distance) are aligned to the query by similarity Procrustes and the smallest mean
    joint error is kept; with ``candidates >= len(collection)`` this is the exact minimum over
    the collection, with fewer an upper bound that is tight in practice (yaw is the only
    rotation a body's pose varies much in).
    """
    q = _canonical(torch.as_tensor(queries, dtype=torch.float64))
    c = _canonical(torch.as_tensor(collection, dtype=torch.float64))
    k = min(candidates, len(c))
    flat_c = c.flatten(1)
    best = torch.empty(len(q), dtype=torch.float64)
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        nearest = torch.cdist(block.flatten(1), flat_c).topk(k, largest=False).indices  # (b, k)
        pairs = c[nearest]  # (b, k, J, 3)
        target = block[:, None].expand_as(pairs).reshape(-1, *block.shape[1:])
        aligned = procrustes_align(pairs.reshape(-1, *block.shape[1:]), target)
        errors = (aligned - target).norm(dim=-1).mean(-1).view(len(block), k)
        best[start:start + chunk] = errors.min(dim=1).values
    return best.numpy()


def _views(poses: torch.Tensor, generator: torch.Generator, focal: float = 1000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random virtual cameras around z-up poses ``(N, J, 3)``: (box-normalised perfect 2D
    ``(N, J*2)``, root-relative camera-frame 3D ``(N, J, 3)``). Azimuth uniform, elevation within
    +-20 degrees, distance 3-7 m, pinhole focal ``focal`` px."""
    n = len(poses)
    azimuth = torch.rand(n, generator=generator, dtype=poses.dtype) * 2 * torch.pi
    elevation = (torch.rand(n, generator=generator, dtype=poses.dtype) - 0.5) * (40 * torch.pi / 180)
    distance = 3 + 4 * torch.rand(n, generator=generator, dtype=poses.dtype)
    ca, sa, ce, se = azimuth.cos(), azimuth.sin(), elevation.cos(), elevation.sin()
    zero = torch.zeros_like(ca)
    # Camera axes in world coordinates (rows): x right, y down, z forward (towards the body).
    forward = torch.stack([-ca * ce, -sa * ce, -se], -1)
    right = torch.stack([-sa, ca, zero], -1)
    down = torch.cross(forward, right, dim=-1)
    rotation = torch.stack([right, down, forward], 1)  # world -> camera
    centred = poses - poses[:, :1]
    camera = centred @ rotation.transpose(1, 2)
    depth = camera[..., 2:] + distance[:, None, None]
    pixels = focal * camera[..., :2] / depth
    pixels = pixels - pixels[:, :1]
    scale = pixels.flatten(1).std(dim=1)[:, None, None]
    return (pixels / scale).flatten(1), camera


def lifter_probe(train_poses: np.ndarray, test_poses: np.ndarray, steps: int = 2000, batch: int = 256,
                 width: int = 512, seed: int = 0) -> dict[str, float]:
    """Train a plain MLP lifter on perfect 2D views of ``train_poses`` and test it on views of
    ``test_poses`` (both ``(N, J, 3)`` rebuilt poses, metres, z up).

    Every step draws ``batch`` poses and new random cameras (:func:`_views`); the test views use
    a fixed seed. Returns ``{"mpjpe_mm", "pa_mpjpe_mm"}`` on the test views (root-relative,
    camera frame). Runs on the CPU in tens of seconds for the defaults.
    """
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed)
    train = torch.as_tensor(train_poses, dtype=torch.float32)
    joints = train.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(2 * joints, width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, 3 * joints),
    )
    torch.set_rng_state(torch_state)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        pick = torch.randint(len(train), (batch,), generator=generator)
        inputs, target = _views(train[pick], generator)
        loss = (model(inputs).view(batch, joints, 3) - target).norm(dim=-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    test = torch.as_tensor(test_poses, dtype=torch.float32)
    inputs, target = _views(test, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        predicted = model(inputs).view(len(test), joints, 3)
    predicted = predicted - predicted[:, :1]
    mpjpe = (predicted - target).norm(dim=-1).mean()
    pa = (procrustes_align(predicted.double(), target.double()) - target.double()).norm(dim=-1).mean()
    return {"mpjpe_mm": float(mpjpe) * 1000, "pa_mpjpe_mm": float(pa) * 1000}
