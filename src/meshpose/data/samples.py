"""The synthetic sample engine: pose bank x shape distribution x virtual cameras x detector noise.

Each batch holds, per sample: 2D keypoints of a joint set with confidences (detector-like
errors, zero confidence for joints outside the image), the clean 2D keypoints, 3D joints and
vertices in the camera frame (metres), the body parameters, and the camera. Everything after the
random draws runs batched on the engine's device (CPU or GPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import roma
import torch
from PIL import Image, ImageDraw

from meshpose.body import AnnyBody, body_joints
from meshpose.data.cameras import (
    CameraRanges,
    project,
    sample_cameras,
    to_camera,
    visibility,
)
from meshpose.data.detector_noise import NoiseConfig, add_detector_noise
from meshpose.data.posebank import PoseBank, load_shipped_pose_bank
from meshpose.joints import convert, get_joint_set
from meshpose.viz import overlay_mesh, save_png


@dataclass
class ShapeRanges:
    """Uniform ranges of the Anny phenotypes (``SHAPE_NAMES`` order). The default age range
    spans children (1/3) to the elderly (1); gender, muscle, weight, height and proportions span
    their whole range."""

    gender: tuple[float, float] = (0.0, 1.0)
    age: tuple[float, float] = (1 / 3, 1.0)
    muscle: tuple[float, float] = (0.0, 1.0)
    weight: tuple[float, float] = (0.0, 1.0)
    height: tuple[float, float] = (0.0, 1.0)
    proportions: tuple[float, float] = (0.0, 1.0)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        low = torch.tensor([r[0] for r in self._ranges()])
        high = torch.tensor([r[1] for r in self._ranges()])
        u = torch.rand(batch, 6, generator=generator, device=generator.device)
        return low.to(u.device) + (high - low).to(u.device) * u

    def _ranges(self):
        return (self.gender, self.age, self.muscle, self.weight, self.height, self.proportions)


#: Parts of the reduced pose (indices into ``POSE_JOINTS``) that :attr:`SampleConfig.mix_chains`
#: recombines: each keeps its rotations relative to its parent, so a left arm from one take goes
#: on the torso of another as it was held there.
CHAINS: dict[str, tuple[int, ...]] = {
    "torso": (1, 2, 3), "head": (4, 5),
    "left_arm": (6, 8, 10, 12), "right_arm": (7, 9, 11, 13),
    "left_leg": (14, 16, 18, 20), "right_leg": (15, 17, 19, 21),
}


def mix_chains(rotations: torch.Tensor, index: torch.Tensor, probability: float,
               generator: torch.Generator) -> torch.Tensor:
    """``(B, 22, 3, 3)`` poses ``rotations[index]`` whose chains (:data:`CHAINS`) each come, with
    ``probability``, from another random pose of ``rotations`` (N, 22, 3, 3)."""
    pose = rotations[index]
    for chain in CHAINS.values():
        other = torch.randint(len(rotations), index.shape, generator=generator, device=generator.device)
        take = torch.rand(index.shape, generator=generator, device=generator.device) < probability
        other, take = other.to(pose.device), take.to(pose.device)
        pose[:, list(chain)] = torch.where(take[:, None, None, None], rotations[other][:, list(chain)],
                                           pose[:, list(chain)])
    return pose


#: Sitting and crouching legs of :func:`flex_legs`: (low, high) degrees of hip and knee flexion.
FLEXED_HIP: tuple[float, float] = (30.0, 120.0)
FLEXED_KNEE: tuple[float, float] = (30.0, 140.0)
_HIPS, _KNEES = (14, 15), (16, 17)


def flex_legs(pose: torch.Tensor, probability: float, generator: torch.Generator,
              spread: float = 15.0) -> torch.Tensor:
    """``(B, 22, 3, 3)`` poses whose legs, with ``probability``, sit or crouch.

    Motion capture of walking and gestures rarely bends both hips and knees far at once (sitting,
    squatting, kneeling, picking something up). A chosen pose gets one hip flexion from
    :data:`FLEXED_HIP` and one knee flexion from :data:`FLEXED_KNEE` (uniform), each leg
    jittered by up to ``spread`` degrees, with up to ``spread`` degrees of abduction; the rest of
    the body (torso, arms, ankles) stays as the bank holds it. Flexion is about each joint's x
    axis, as in :data:`meshpose.body.poses.PRESETS` ``"sit"`` (hips negative, knees positive).
    """
    batch, device = pose.shape[0], generator.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, *shape, generator=generator, device=device)

    take = torch.rand(batch, generator=generator, device=device) < probability
    hip = uniform(*FLEXED_HIP)[:, None] + uniform(-spread, spread, 2)
    knee = uniform(*FLEXED_KNEE)[:, None] + uniform(-spread, spread, 2)
    abduction = uniform(-spread, spread, 2)
    zero = torch.zeros_like(hip)
    hip_rotvec = torch.stack([-hip, zero, abduction], -1) * (math.pi / 180)
    knee_rotvec = torch.stack([knee.clamp_min(0), zero, zero], -1) * (math.pi / 180)
    flexed = pose.clone()
    flexed[:, list(_HIPS)] = roma.rotvec_to_rotmat(hip_rotvec).to(pose)
    flexed[:, list(_KNEES)] = roma.rotvec_to_rotmat(knee_rotvec).to(pose)
    return torch.where(take.to(pose.device)[:, None, None, None], flexed, pose)


@dataclass
class SampleConfig:
    joint_set: str = "coco17"
    cameras: CameraRanges = field(default_factory=CameraRanges)
    shapes: ShapeRanges = field(default_factory=ShapeRanges)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    vertices: bool = True  #: skin the full mesh (joints are always computed)
    extra_joint_sets: tuple[str, ...] = ()  #: also return ``joints3d_<S>`` (camera frame) for these
    #: Probability that each limb chain and the torso/head (:data:`CHAINS`) take their rotations
    #: from another random bank pose: recombines body parts across takes (0 = bank poses as they are).
    mix_chains: float = 0.0
    #: Probability that a sample's legs sit or crouch (:func:`flex_legs`; 0 = as the bank holds them).
    flex_legs: float = 0.0
    #: Draw the 2D keypoints of ``h36m17`` and ``mpii16`` where Human3.6M places its joints (the
    #: vertex regressor fitted to S1, :data:`meshpose.body.landmarks.REGRESSED_SETS`) instead of at
    #: Anny's joint centres: the Stacked-Hourglass detections of Human3.6M were trained on its
    #: annotations. Needs ``vertices``. The regressor derives from Human3.6M: research use only.
    h36m_inputs: bool = False


def input_joints(output, joint_set: str, h36m_inputs: bool = False) -> torch.Tensor:
    """(B, J, 3) the joints of ``joint_set`` that the 2D keypoints are drawn from: Anny's joint
    centres, or with ``h36m_inputs`` and a set whose joints are all Human3.6M's (``h36m17``,
    ``mpii16``), Human3.6M's joints regressed from the mesh."""
    if h36m_inputs and set(get_joint_set(joint_set).names) <= set(get_joint_set("h36m17").names):
        return convert(body_joints(output, "h36m17"), "h36m17", joint_set)
    return body_joints(output, joint_set, anatomical=True)


class SampleEngine:
    """Draws training samples.

    Args:
        bank: a :class:`PoseBank` (default: the CMU bank shipped in the package).
        config: :class:`SampleConfig`.
        device: where bodies, cameras and noise are computed.
    """

    def __init__(self, bank: PoseBank | None = None, config: SampleConfig | None = None,
                 device: str | torch.device = "cpu", body: AnnyBody | None = None):
        self.bank = bank or load_shipped_pose_bank()
        self.config = config or SampleConfig()
        self.device = torch.device(device)
        self.body = (body or AnnyBody()).to(self.device)
        self.rotations = self.bank.rotation_matrices(device=self.device)  # (N, 22, 3, 3)

    @torch.no_grad()
    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One batch. Random draws come from ``generator`` (on any device).

        Returns a dict of tensors on the engine's device:
            keypoints2d (B, J, 3): x, y pixels and confidence in [0, 1], with detector errors;
            keypoints2d_clean (B, J, 2); visible (B, J) bool, inside the image;
            joints3d (B, J, 3) and vertices (B, V, 3) (if enabled): camera frame, metres;
            root (B, 3): pelvis in the camera frame; pose (B, 22, 3, 3); shape (B, 6);
            pose_index (B,); focal (B, 2), principal (B, 2), image_size (B, 2), R (B, 3, 3);
            joints3d_<S> (B, K, 3) in the camera frame for each of ``config.extra_joint_sets``.
        Joints are Anny's anatomical definitions (``h36m17`` too: ``body_joints(...,
        anatomical=True)``), the models' training targets.
        """
        config = self.config
        index = torch.randint(len(self.bank), (batch,), generator=generator, device=generator.device)
        index = index.to(self.device)
        if config.mix_chains > 0:
            pose = mix_chains(self.rotations, index, config.mix_chains, generator)
        else:
            pose = self.rotations[index]
        if config.flex_legs > 0:
            pose = flex_legs(pose, config.flex_legs, generator)
        shape = config.shapes.sample(batch, generator).to(self.device)
        output = self.body(pose, shape, vertices=config.vertices)
        joints = input_joints(output, config.joint_set, config.h36m_inputs)
        root_world = output.joint("bone:root")
        cams = sample_cameras(config.cameras, batch, generator, device=self.device)
        joints_cam = to_camera(joints, cams, root_world)
        clean = project(joints_cam, cams)
        visible = visibility(clean, cams)
        corner_low = torch.nan_to_num(clean, nan=0.0).amin(1)
        corner_high = torch.nan_to_num(clean, nan=0.0).amax(1)
        size = (corner_high - corner_low).norm(dim=-1).clamp_min(1.0)
        noisy, confidence = add_detector_noise(
            torch.nan_to_num(clean, nan=0.0), config.joint_set, size, config.noise, generator)
        confidence = confidence.to(self.device) * visible
        sample = {
            "keypoints2d": torch.cat([noisy.to(self.device), confidence[..., None]], dim=-1),
            "keypoints2d_clean": clean, "visible": visible, "joints3d": joints_cam,
            "root": cams.t, "pose": pose, "shape": shape, "pose_index": index,
            "focal": cams.focal, "principal": cams.principal, "image_size": cams.image_size, "R": cams.R,
        }
        if config.vertices:
            sample["vertices"] = to_camera(output.vertices, cams, root_world)
        for name in config.extra_joint_sets:
            sample[f"joints3d_{name}"] = to_camera(body_joints(output, name, anatomical=True), cams, root_world)
        return sample


def draw_samples(n: int, path, seed: int = 0, joint_set: str = "coco17", columns: int = 4):
    """A PNG grid of ``n`` samples: each tile shows the mesh projected by the sample's camera,
    the noisy 2D keypoints (red; hollow when confidence < 0.3) and the skeleton, cropped around
    the person (black outside the camera's image)."""
    engine = SampleEngine(config=SampleConfig(joint_set=joint_set))
    batch = engine.sample(n, torch.Generator().manual_seed(seed))
    faces = engine.body.faces.numpy()
    edges = get_joint_set(joint_set).edges
    tiles = []
    for i in range(n):
        width, height = (int(v) for v in batch["image_size"][i])
        image = np.full((height, width, 3), 255, dtype=np.uint8)
        image = overlay_mesh(image, batch["vertices"][i].numpy(), faces,
                             tuple(batch["focal"][i].tolist()), tuple(batch["principal"][i].tolist()))
        picture = Image.fromarray(image)
        draw = ImageDraw.Draw(picture)
        points = batch["keypoints2d"][i].numpy()
        for a, b in edges:
            if points[a, 2] > 0.3 and points[b, 2] > 0.3:
                draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=(30, 120, 220), width=3)
        for x, y, c in points:
            r = 6
            if c > 0.3:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=(220, 40, 40))
            elif c > 0:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(220, 40, 40), width=2)
        # Crop a square around the person (clean keypoints), so that small people stay visible.
        clean = batch["keypoints2d_clean"][i].nan_to_num(0).numpy()
        centre = (clean.min(0) + clean.max(0)) / 2
        side = max(200.0, 1.4 * float((clean.max(0) - clean.min(0)).max()))
        box = (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)
        tiles.append(np.asarray(picture.crop(tuple(int(v) for v in box)).resize((256, 256))))
    rows = []
    for start in range(0, n, columns):
        row = tiles[start:start + columns]
        row += [np.full_like(tiles[0], 255)] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    save_png(path, np.concatenate(rows, axis=0))
    return path
