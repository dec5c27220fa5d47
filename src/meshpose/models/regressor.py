"""Key2Mesh-style regressor: 2D keypoints of any supported joint set -> Anny pose, shape, camera.

One model serves every input joint set. Its input is a fixed list of *slots*: the surface
keypoints of the COCO/OpenPose sets and the joint centres of the Human3.6M/MPII sets, each slot
a ``(kind, canonical name)`` pair, because a COCO "left_hip" and a Human3.6M "left_hip" are
different points on the body. A set fills its own slots; the others get confidence 0. The
keypoints are normalised to their bounding box (confident ones only), and the confidences are
both a mask on the coordinates and an input channel.

Outputs: the reduced pose as 6D rotations in the camera's axes (the pelvis rotation is the
body's orientation seen by the camera), the phenotypes, and a weak-perspective camera
``(s, tx, ty)`` in normalised box units, from which the root position follows when the
intrinsics are known (:func:`root_from_weak_perspective`). Optional iterative refinement feeds
the previous estimate back, as in HMR.
"""
from __future__ import annotations

import torch
from torch import nn

from meshpose.body import POSE_JOINTS, SHAPE_NAMES
from meshpose.body.landmarks import SURFACE_SETS
from meshpose.errors import UnknownNameError
from meshpose.geometry.rotations import sixd_to_rotmat
from meshpose.joints import get_joint_set

#: Joint sets the regressor reads.
INPUT_SETS = ("coco17", "openpose18", "body25", "h36m17", "mpii16")


def input_slots() -> tuple[str, ...]:
    """The model's input slots, ``"surface:<name>"`` then ``"centre:<name>"``, in a fixed order."""
    slots: list[str] = []
    for name in INPUT_SETS:
        kind = "surface" if name in SURFACE_SETS else "centre"
        for joint in get_joint_set(name).names:
            slot = f"{kind}:{joint}"
            if slot not in slots:
                slots.append(slot)
    return tuple(slots)


SLOTS = input_slots()


def slot_index(joint_set: str) -> torch.Tensor:
    """(J,) the slot of each joint of ``joint_set``."""
    kind = "surface" if joint_set in SURFACE_SETS else "centre"
    if joint_set not in INPUT_SETS:
        raise UnknownNameError(f"the regressor reads {', '.join(INPUT_SETS)}; got {joint_set!r}")
    return torch.tensor([SLOTS.index(f"{kind}:{j}") for j in get_joint_set(joint_set).names])


def to_slots(keypoints: torch.Tensor, joint_set: str) -> torch.Tensor:
    """(B, J, 3) keypoints (x, y px, confidence) of a joint set -> (B, S, 3) slots."""
    out = keypoints.new_zeros(keypoints.shape[0], len(SLOTS), 3)
    out[:, slot_index(joint_set).to(keypoints.device)] = keypoints
    return out


def normalise(slots: torch.Tensor):
    """Box-normalise slot keypoints.

    Args:
        slots: (B, S, 3) x, y in pixels and confidence.
    Returns:
        (normalised (B, S, 2) in about [-1, 1], confidence (B, S), centre (B, 2) px, size (B,) px:
        the larger side of the box of the confident keypoints).
    """
    xy, confidence = slots[..., :2], slots[..., 2]
    valid = confidence > 0
    big = torch.finfo(xy.dtype).max
    low = torch.where(valid[..., None], xy, torch.full_like(xy, big)).amin(1)
    high = torch.where(valid[..., None], xy, torch.full_like(xy, -big)).amax(1)
    empty = ~valid.any(1)
    low = torch.where(empty[:, None], torch.zeros_like(low), low)
    high = torch.where(empty[:, None], torch.ones_like(high), high)
    centre = (low + high) / 2
    size = (high - low).amax(-1).clamp_min(1.0)
    normalised = (xy - centre[:, None]) / (size[:, None, None] / 2)
    return normalised * valid[..., None], confidence, centre, size


def root_from_weak_perspective(camera: torch.Tensor, centre: torch.Tensor, size: torch.Tensor,
                               focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """(B, 3) root position in the camera frame (metres) from a weak-perspective camera.

    ``camera`` (B, 3) = (s, tx, ty): a root-relative point X maps to the normalised box
    coordinates ``s * X_xy + t``. In pixels that is ``centre + size / 2 * (...)``, which a pinhole
    camera at depth Z gives with ``f / Z = s * size / 2``.
    """
    s, t = camera[:, :1], camera[:, 1:]
    pixels_per_metre = (s * size[:, None] / 2).clamp_min(1e-6)
    depth = focal.mean(-1, keepdim=True) / pixels_per_metre
    root_pixels = centre + size[:, None] / 2 * t
    xy = (root_pixels - principal) * depth / focal
    return torch.cat([xy, depth], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, x):
        return x + self.layers(x)


class KeypointRegressor(nn.Module):
    """Residual MLP from normalised slot keypoints to pose, shape and weak-perspective camera.

    Args:
        hidden: width of the residual blocks.
        blocks: number of residual blocks.
        iterations: refinement iterations (1 = a single pass).
        dropout: dropout inside the blocks.

    ``forward(slots)``: slots (B, S, 3) in pixels with confidences -> dict with ``pose`` (B, 22, 3, 3),
    ``pose6d`` (B, 22, 6), ``shape`` (B, 6), ``camera`` (B, 3), ``centre`` (B, 2), ``size`` (B,).
    """

    def __init__(self, hidden: int = 1024, blocks: int = 3, iterations: int = 2, dropout: float = 0.0):
        super().__init__()
        self.iterations = iterations
        n_pose = len(POSE_JOINTS) * 6
        self.state_size = n_pose + len(SHAPE_NAMES) + 3
        self.encoder = nn.Linear(len(SLOTS) * 3 + self.state_size, hidden)
        self.blocks = nn.Sequential(*[_Block(hidden, dropout) for _ in range(blocks)])
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, self.state_size))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)
        identity = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(len(POSE_JOINTS))
        initial = torch.cat([identity, torch.zeros(len(SHAPE_NAMES)), torch.tensor([1.0, 0.0, 0.0])])
        self.register_buffer("initial_state", initial)

    def forward(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        normalised, confidence, centre, size = normalise(slots)
        features = torch.cat([normalised, confidence[..., None]], dim=-1).flatten(1)
        state = self.initial_state.expand(slots.shape[0], -1)
        for _ in range(self.iterations):
            hidden = self.blocks(self.encoder(torch.cat([features, state], dim=-1)))
            state = state + self.head(hidden)
        return self._outputs(state, centre, size)

    def extract(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The feature extractor of a single-pass model (``iterations == 1``): slots (B, S, 3) ->
        (hidden features (B, hidden), box centre (B, 2), box size (B,)). ``decode`` maps them to
        :meth:`forward`'s output; domain adaptation trains a copy of the extractor alone."""
        if self.iterations != 1:
            raise ValueError("extract/decode need a single-pass regressor (iterations = 1)")
        normalised, confidence, centre, size = normalise(slots)
        features = torch.cat([normalised, confidence[..., None]], dim=-1).flatten(1)
        state = self.initial_state.expand(slots.shape[0], -1)
        return self.blocks(self.encoder(torch.cat([features, state], dim=-1))), centre, size

    def decode(self, hidden: torch.Tensor, centre: torch.Tensor, size: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward`'s output from :meth:`extract`'s."""
        state = self.initial_state.expand(hidden.shape[0], -1) + self.head(hidden)
        return self._outputs(state, centre, size)

    def _outputs(self, state, centre, size) -> dict[str, torch.Tensor]:
        n_pose = len(POSE_JOINTS) * 6
        pose6d = state[:, :n_pose].view(-1, len(POSE_JOINTS), 6)
        shape = 0.5 + state[:, n_pose : n_pose + len(SHAPE_NAMES)]
        camera = state[:, n_pose + len(SHAPE_NAMES) :]
        return {"pose": sixd_to_rotmat(pose6d), "pose6d": pose6d, "shape": shape, "camera": camera,
                "centre": centre, "size": size}
