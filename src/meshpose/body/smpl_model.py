"""SMPL and SMPL-X bodies through the ``smplx`` package, on model files the user supplies.

meshpose's default body is Anny (:class:`meshpose.body.anny_model.AnnyBody`). This module is an
adapter for people who already work with SMPL or SMPL-X: :class:`SMPLBody` loads *your own*
model file with the ``smplx`` package (``pip install 'meshpose[smpl]'``) and returns the same
:class:`~meshpose.body.base.BodyOutput` as every other meshpose body.

Licence
-------
meshpose does not ship, download or redistribute any SMPL / SMPL-X file. The model files are
licensed by the Max Planck Institute for Intelligent Systems under their own terms (in general
non-commercial research use only); you obtain them from https://smpl.is.tue.mpg.de or
https://smpl-x.is.tue.mpg.de and you are bound by their licence, also for everything you
produce with them. Model files are pickles or NumPy archives: only load files you trust.

Units and frame
---------------
Vertices and joints are in metres, in SMPL's model frame: **y up**, x towards the body's left,
z forwards (the rest body faces +z). The rest pose (all rotations identity) is SMPL's T-pose.

Pose
----
``pose`` holds one rotation per entry of :attr:`SMPLBody.pose_joints`, in the *local* frame of
the joint (relative to its parent), as in SMPL:

* SMPL: 24 rotations; entry 0 (``pelvis``) is the global orientation, about the pelvis joint,
  entries 1..23 the body pose, in SMPL's joint order (= meshpose's ``smpl24`` joint set).
* SMPL-X: 22 rotations, the global orientation and the 21 body joints; they are the first 22
  joints of SMPL and carry the same ``smpl24`` names. The jaw and eyes stay at rest, the hands
  are flat (identity finger rotations, not SMPL-X's mean hand pose) and the expression is
  neutral.

``translation`` is SMPL's ``transl``: it is *added* to every vertex and joint. The pelvis
therefore ends up at its shaped rest position plus ``translation``, not at ``translation``
(unlike Anny, whose translation is the pelvis position).

Joints
------
``BodyOutput.joints`` are the skeleton joints of the kinematic tree after posing: the first 24
joints of the model for SMPL, the first 22 (body) joints for SMPL-X, named with the ``smpl24``
names. The extra surface keypoints that ``smplx`` picks from vertex indices of the official
topology (nose, ears, toes, finger tips, face landmarks) are not returned.

Notes on smplx
--------------
* ``smplx.SMPL`` reads only pickles; meshpose reads SMPL ``.npz`` files itself and hands the
  arrays to smplx. SMPL-X files (``.npz`` or ``.pkl``) are read by smplx.
* smplx rounds the model arrays to float32 before casting them to ``dtype``: with
  ``dtype=torch.float64`` the computation is in float64 on float32-rounded model data.
* smplx gives at most 10 betas for files with fewer than 300 shape components.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meshpose.body.base import BodyOutput, batched_vector
from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.geometry.rotations import as_rotmat
from meshpose.io.safe_pickle import load_array_file
from meshpose.joints import get_joint_set

#: Number of kinematic joints (global orientation included) in each model's file.
MODEL_JOINTS = {"smpl": 24, "smplx": 55}
#: Number of rotations :meth:`SMPLBody.forward` takes for each model type.
POSE_JOINTS = {"smpl": 24, "smplx": 22}
GENDERS = ("neutral", "male", "female")
#: Keys every SMPL-family model file holds (smplx reads these).
REQUIRED_KEYS = (
    "v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"
)

_INSTALL_HINT = (
    "the smplx package is not installed; install it with: pip install 'meshpose[smpl]'"
)


class _SkeletonJointsOnly(nn.Module):
    """Stand-in for smplx's ``VertexJointSelector``: keeps the kinematic joints only.

    smplx appends keypoints read at fixed vertex indices of the official SMPL / SMPL-X
    topology; meshpose does not return them, and they would index out of range on a mesh with
    another topology.
    """

    def forward(self, vertices: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        # A copy, as the selector's concatenation makes: smplx then adds the translation in
        # place, and ``joints`` is a view of a tensor that autograd still needs.
        return joints.clone()


def _one_line(error: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _resolve_model_file(model_path: Path, model_type: str, gender: str) -> Path:
    """The model file for ``model_path``: the path itself, or smplx's file name in a folder.

    In a folder, looks for ``SMPL_NEUTRAL.pkl`` / ``SMPLX_FEMALE.npz`` ... (smplx's naming), in
    the folder itself or in its ``smpl`` / ``smplx`` subfolder.
    """
    if not model_path.exists():
        raise InputFileError(f"{model_type.upper()} model file not found", model_path)
    if not model_path.is_dir():
        return model_path
    stem = f"{model_type.upper()}_{gender.upper()}"
    for folder in (model_path, model_path / model_type):
        for ext in ("npz", "pkl"):
            candidate = folder / f"{stem}.{ext}"
            if candidate.is_file():
                return candidate
    raise InputFileError(
        f"no {stem}.npz or {stem}.pkl in this folder (or its {model_type}/ subfolder)",
        model_path,
    )


def _load_smpl_arrays(path: Path) -> dict:
    """The arrays of a SMPL model file (``.npz``, or a pickle of a dict for any other suffix),
    read without running code from it (:func:`meshpose.io.safe_pickle.load_array_file`)."""
    data = load_array_file(path)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    return data


class SMPLBody(nn.Module):
    """An SMPL or SMPL-X body from the user's own model file, through ``smplx``.

    Args:
        model_path: the model file (``.pkl`` or ``.npz``), or a folder holding smplx's file
            names (``SMPL_NEUTRAL.pkl``, ``SMPLX_MALE.npz`` ..., also in a ``smpl/`` or
            ``smplx/`` subfolder), picked by ``model_type`` and ``gender``.
        model_type: ``"smpl"`` or ``"smplx"``.
        gender: ``"neutral"``, ``"male"`` or ``"female"``; only used to pick the file in a
            folder (a file is used as it is).
        num_betas: number of shape coefficients (betas) used; at most what the file provides
            (smplx gives at most 10 for files with fewer than 300 shape components).
        dtype: float dtype of the computation.

    Attributes:
        model_type: ``"smpl"`` or ``"smplx"``.
        path: the model file that was loaded.
        pose_joints: names of the ``pose`` rotations, in order (24 for SMPL, 22 for SMPL-X).
        joint_names: names of the returned joints (the same as ``pose_joints``).
        num_betas: number of shape coefficients ``shape`` takes.
        num_vertices: number of mesh vertices (6890 for SMPL, 10475 for SMPL-X).

    ``forward(pose, shape, translation)`` returns a :class:`BodyOutput`; see :meth:`forward`
    and the module docstring for frame, units and conventions.

    Raises:
        MeshposeError: smplx is not installed, the file is missing, or it is not a valid model
            file of the requested type.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        model_type: str = "smpl",
        gender: str = "neutral",
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        model_type = str(model_type).lower().replace("-", "")
        if model_type not in MODEL_JOINTS:
            raise UnknownNameError(f"unknown SMPL model type {model_type!r}; use 'smpl' or 'smplx'")
        gender = str(gender).lower()
        if gender not in GENDERS:
            raise UnknownNameError(f"unknown gender {gender!r}; use one of {', '.join(GENDERS)}")
        if int(num_betas) < 1:
            raise MeshposeError(f"num_betas must be at least 1, got {num_betas}")
        try:
            import smplx
        except ImportError as error:
            raise MeshposeError(_INSTALL_HINT) from error

        path = _resolve_model_file(Path(model_path), model_type, gender)
        kind = "SMPL" if model_type == "smpl" else "SMPL-X"
        try:
            # smplx prints a warning to stdout for files with only 10 shape components.
            with contextlib.redirect_stdout(io.StringIO()):
                if model_type == "smpl":
                    # Loaded here rather than by smplx, which only reads pickles.
                    data = _load_smpl_arrays(path)
                    model = smplx.SMPLLayer(
                        model_path=str(path),
                        data_struct=smplx.utils.Struct(**data),
                        gender=gender,
                        num_betas=int(num_betas),
                        dtype=dtype,
                    )
                else:
                    load_array_file(path)  # smplx unpickles it itself: first check it holds only arrays
                    model = smplx.SMPLXLayer(
                        model_path=str(path),
                        ext="npz" if path.suffix.lower() == ".npz" else "pkl",
                        gender=gender,
                        num_betas=int(num_betas),
                        use_pca=False,
                        flat_hand_mean=True,
                        dtype=dtype,
                    )
        except ModuleNotFoundError as error:
            if error.name == "chumpy":
                raise InputFileError(
                    f"this {kind} pickle stores chumpy objects: install chumpy, or convert the "
                    "file to plain NumPy arrays (smplx's tools/clean_ch.py does this)",
                    path,
                ) from error
            invalid = f"not a valid {kind} model file ({_one_line(error)})"
            raise InputFileError(invalid, path) from error
        except Exception as error:  # pickle/zip/shape errors of a corrupt or foreign file
            invalid = f"not a valid {kind} model file ({_one_line(error)})"
            raise InputFileError(invalid, path) from error

        self._check_model(model, model_type, kind, path)
        available = int(model.shapedirs.shape[-1])
        if int(num_betas) > available:
            raise InputFileError(
                f"num_betas={num_betas} requested but only {available} shape coefficients are "
                "available from this file",
                path,
            )
        model.vertex_joint_selector = _SkeletonJointsOnly()

        self.model = model
        self.model_type = model_type
        self.gender = gender
        self.path = path
        self.num_betas = available
        self.num_vertices = int(model.v_template.shape[0])
        names = get_joint_set("smpl24").names
        self.pose_joints: tuple[str, ...] = tuple(names[: POSE_JOINTS[model_type]])
        self.joint_names: tuple[str, ...] = self.pose_joints

    @staticmethod
    def _check_model(model: nn.Module, model_type: str, kind: str, path: Path) -> None:
        """Shapes of the loaded arrays; a wrong file would otherwise fail only in forward."""
        J = MODEL_JOINTS[model_type]
        V = model.v_template.shape[0]
        problems = []

        def expect(name: str, actual: torch.Size, expected: tuple, shown: str) -> None:
            if tuple(actual) != expected:
                problems.append(f"{name} has shape {tuple(actual)}, not {shown}")

        expect("v_template", model.v_template.shape, (V, 3), "(V, 3)")
        expect("J_regressor", model.J_regressor.shape, (J, V), f"({J}, {V})")
        expect("weights", model.lbs_weights.shape, (V, J), f"({V}, {J})")
        expect("shapedirs", model.shapedirs.shape[:2], (V, 3), f"({V}, 3, betas)")
        # smplx keeps posedirs as (pose features, 3 V); the file holds (V, 3, 9 (J - 1)).
        if tuple(model.posedirs.shape) != (9 * (J - 1), 3 * V):
            problems.append(f"posedirs is not ({V}, 3, {9 * (J - 1)})")
        parents = model.parents.tolist()
        if len(parents) != J:
            problems.append(f"kintree_table has {len(parents)} joints, not {J}")
        elif not all(0 <= parent < j for j, parent in enumerate(parents) if j > 0):
            problems.append("kintree_table: every joint's parent must come before it")
        faces = model.faces_tensor
        in_range = faces.numel() == 0 or (faces.min() >= 0 and faces.max() < V)
        if faces.ndim != 2 or faces.shape[1] != 3 or not in_range:
            problems.append("f is not an (F, 3) array of vertex indices")
        if problems:
            raise InputFileError(f"not a valid {kind} model file: {'; '.join(problems)}", path)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.v_template.dtype

    @property
    def device(self) -> torch.device:
        return self.model.v_template.device

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) int64 triangle vertex indices."""
        return self.model.faces_tensor

    def _check_inputs(self, pose, shape, translation):
        """Inputs as tensors of this body's dtype and device, broadcast to one batch size."""
        device, dtype = self.device, self.dtype
        n_pose = len(self.pose_joints)
        sizes = [t.shape[0] for t in (pose, shape, translation) if t is not None]
        batch = max(sizes) if sizes else 1
        if pose is None:
            pose = torch.eye(3, dtype=dtype, device=device).expand(batch, n_pose, 3, 3)
        else:
            pose = torch.as_tensor(pose, dtype=dtype, device=device)
            form_ok = (pose.ndim == 4 and pose.shape[-2:] == (3, 3)) or (
                pose.ndim == 3 and pose.shape[-1] in (3, 6)
            )
            if not form_ok or pose.shape[1] != n_pose:
                raise MeshposeError(
                    f"pose must be (B, {n_pose}, 3, 3) matrices, (B, {n_pose}, 6) 6D or "
                    f"(B, {n_pose}, 3) axis-angle for {self.model_type.upper()}; "
                    f"got {tuple(pose.shape)}"
                )
            pose = as_rotmat(pose)
        shape = batched_vector(shape, self.num_betas, batch, dtype, device, 0.0, "shape", " betas")
        translation = batched_vector(translation, 3, batch, dtype, device, 0.0, "translation")
        sizes = {pose.shape[0], shape.shape[0], translation.shape[0]}
        if len(sizes - {1}) > 1:
            raise MeshposeError(f"batch sizes of pose, shape and translation differ: {sizes}")
        return (
            pose.expand(batch, -1, -1, -1).contiguous(),
            shape.expand(batch, -1).contiguous(),
            translation.expand(batch, -1).contiguous(),
        )

    def forward(
        self,
        pose: torch.Tensor | None = None,
        shape: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Posed, shaped and translated bodies.

        Args:
            pose: local joint rotations in :attr:`pose_joints` order, as (B, J, 3, 3) matrices,
                (B, J, 6) 6D or (B, J, 3) axis-angle (radians); J = 24 for SMPL, 22 for SMPL-X;
                entry 0 is the global orientation. None = rest (T-)pose.
            shape: (B, num_betas) betas; None = zeros (the mean shape).
            translation: (B, 3) metres, added to all vertices and joints; None = zeros.
            A batch size of 1 broadcasts against the others.

        Returns:
            :class:`BodyOutput` with vertices (B, V, 3) and joints (B, J, 3) in metres, joint
            names :attr:`joint_names`, and the faces (F, 3) int64.
        """
        pose, shape, translation = self._check_inputs(pose, shape, translation)
        output = self.model(
            betas=shape,
            global_orient=pose[:, :1],
            body_pose=pose[:, 1:],
            transl=translation,
        )
        joints = output.joints[:, : len(self.joint_names)]
        return BodyOutput(output.vertices, joints, self.joint_names, self.faces)
