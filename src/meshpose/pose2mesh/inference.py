"""A trained Pose2Mesh model as a file, and inference with it.

A Pose2Mesh model file (``format`` = ``meshpose-pose2mesh-1``) holds PoseNet's and MeshNet's
weights, the ``(J, V)`` vertex-to-joint regressor of MeshNet's skeleton joints, and the mesh
hierarchy's clusters, so that loading checks that the graph rebuilt from the body's faces is
the one the model was trained on.
"""
from __future__ import annotations

import json
from dataclasses import fields

import torch

from meshpose.body import AnnyBody
from meshpose.body.landmarks import REGRESSED_SETS
from meshpose.body.vertex_regressors import shipped_regressor
from meshpose.errors import MeshposeError, UnknownNameError
from meshpose.geometry.camera import translation_from_2d_3d
from meshpose.geometry.rotations import rotation_onto_ray
from meshpose.io._util import one_line
from meshpose.io.weights import (
    check_settings,
    header_object,
    load_checked,
    model_path,
    read_model_file,
)
from meshpose.joints import JOINT_SETS, get_joint_set
from meshpose.models.regressor import INPUT_SETS, to_slots
from meshpose.pose2mesh.build import (
    Pose2MeshDataConfig,
    Pose2MeshModelConfig,
    build_pose2mesh,
)
from meshpose.pose2mesh.losses import fit_joint_regressor, regress_joints

FORMAT = "meshpose-pose2mesh-1"

__all__ = ["BYTES_PER_PERSON", "FORMAT", "Pose2MeshPredictor", "check_pose2mesh_file", "load_pose2mesh",
           "people_per_pass", "pose2mesh_estimator", "pose2mesh_file_extras"]

#: Peak memory of one person through the shipped MeshNet (float32, the 13,718-vertex Anny mesh and
#: its coarse-to-fine graph): measured on CPU at 12-31 MB per person between batches of 8 and 64;
#: a batch of 1,024 passed 24 GB.
BYTES_PER_PERSON = 32 * 2**20
_MEMORY_SHARE = 0.25  # of the memory free when a pass starts
_CPU_MOST_PEOPLE = 64  # larger CPU batches were slower per person (0.26 s at 8, 0.34 s at 64)
_GPU_MOST_PEOPLE = 4096


def _free_bytes(device: torch.device) -> int:
    """Memory free on ``device`` now: CUDA's free memory, or the host's MemAvailable (4 GiB where
    /proc/meminfo cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4 * 2**30


def people_per_pass(device: torch.device, free_bytes: int | None = None) -> int:
    """People per MeshNet forward pass: a quarter of the free memory over
    :data:`BYTES_PER_PERSON`, at least 1, at most 64 on CPU and 4,096 on a GPU."""
    free = _free_bytes(device) if free_bytes is None else free_bytes
    most = _GPU_MOST_PEOPLE if device.type == "cuda" else _CPU_MOST_PEOPLE
    return int(max(1, min(most, free * _MEMORY_SHARE // BYTES_PER_PERSON)))


def _config_sections(model_settings: dict, data_settings: dict):
    def build(cls, settings):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    return build(Pose2MeshModelConfig, model_settings), build(Pose2MeshDataConfig, data_settings)


def _hierarchy_clusters(net) -> torch.Tensor:
    """All upsampling indices of a MeshNet, finest level first, concatenated (int64)."""
    meshnet = net.meshnet
    return torch.cat([getattr(meshnet, f"up{level}") for level in range(meshnet.n_levels - 1)])


def pose2mesh_file_extras(config: dict) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Header entries and extra tensors that make a ``pose2mesh`` run's weights a model file."""
    model, data = _config_sections(config["model"], config["data"])
    body = AnnyBody()
    net = build_pose2mesh(model, data, body.faces.cpu().numpy())
    regressor = fit_joint_regressor(body, data.joint_set, samples=data.regressor_samples)
    header = {"format": FORMAT, "data": json.dumps({"joint_set": data.joint_set, "input_sets": data.input_sets})}
    return header, {"joint_regressor": regressor, "hierarchy_clusters": _hierarchy_clusters(net).int()}


class Pose2MeshPredictor:
    """A loaded Pose2Mesh model with the Anny mesh's vertex-to-joint regressors.

    ``predictor(keypoints, joint_set)``: ``(B, J, 3)`` pixels and confidence -> dict with
    ``vertices`` (B, V, 3) metres, root-relative (the pelvis regressed from the mesh at the
    origin), ``joints2d`` (B, K, 2) pixels and ``joints3d`` (B, K, 3) PoseNet's skeleton joints,
    ``root`` (B, 3) the regressed pelvis removed from the raw output.
    """

    def __init__(self, net, joint_regressor: torch.Tensor, joint_set: str, input_sets, body):
        self.net, self.joint_set, self.input_sets, self.body = net.eval(), joint_set, list(input_sets), body
        # The file's regressor gives Anny's anatomical centres (what MeshNet's skeleton learnt);
        # the root removed from the mesh is their pelvis.
        self.root_set = REGRESSED_SETS.get(joint_set, joint_set)
        self._regressors = {self.root_set: joint_regressor}

    @property
    def device(self) -> torch.device:
        return self._regressors[self.root_set].device

    def to(self, device):
        self.net.to(device)
        self._regressors = {k: v.to(device) for k, v in self._regressors.items()}
        return self

    def regressor(self, joint_set: str) -> torch.Tensor:
        """The ``(K, V)`` regressor of any joint set: in the model file for MeshNet's skeleton
        joints (anatomical), the shipped dataset regressor for ``h36m17``
        (:mod:`meshpose.body.vertex_regressors`), otherwise fitted to the Anny body once (a few
        seconds)."""
        name = get_joint_set(joint_set).name
        if name not in self._regressors:
            fitted = shipped_regressor(name) if name in REGRESSED_SETS else fit_joint_regressor(self.body, name)
            self._regressors[name] = fitted.to(self.device)
        return self._regressors[name]

    def joints(self, vertices: torch.Tensor, joint_set: str) -> torch.Tensor:
        """``(B, K, 3)`` joints of ``joint_set`` regressed from ``(B, V, 3)`` vertices."""
        return regress_joints(vertices, self.regressor(joint_set))

    @torch.no_grad()
    def __call__(self, keypoints: torch.Tensor, joint_set: str) -> dict[str, torch.Tensor]:
        if joint_set not in self.input_sets:
            raise UnknownNameError(f"this Pose2Mesh model reads {', '.join(self.input_sets)}; got {joint_set!r}")
        return self.from_slots(to_slots(keypoints, joint_set))

    @torch.no_grad()
    def from_slots(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same from the regressor's ``(B, S, 3)`` slots (no host-device copy: graph-capturable)."""
        out = self.net(slots)
        vertices = out["vertices"].float()
        root = self.joints(vertices, self.root_set)[:, 0]
        pixels = out["centre"][:, None] + out["size"][:, None, None] / 2 * out["joints2d"].float()
        return {"vertices": vertices - root[:, None], "joints2d": pixels, "joints3d": out["joints3d"].float(),
                "root": root}


#: The header's ``model`` settings the network is built from: (type, low, high).
MODEL_SETTINGS = {
    "posenet_width": (int, 1, 16384), "posenet_blocks": (int, 0, 64), "posenet_dropout": (float, 0.0, 1.0),
    "levels": (int, 1, 12), "n_levels": (int, 0, 13), "widths": (list, 1, 4096), "joint_width": (int, 1, 4096),
    "blocks": (int, 0, 16), "K": (int, 1, 10), "hierarchy_seed": (int, 0, 2**31 - 1),
}


def _checked_sections(header: dict, path):
    """The model and data config sections of a Pose2Mesh file's header, checked."""
    model_settings = header_object(header, "model", path)
    data_settings = header_object(header, "data", path)
    check_settings(model_settings, MODEL_SETTINGS, path, "model")
    if len(model_settings.get("widths", [])) > 13:
        raise MeshposeError("the header's model setting 'widths' lists more than 13 levels", path)
    joint_set = data_settings.get("joint_set", "h36m17")
    if not isinstance(joint_set, str) or joint_set not in JOINT_SETS:
        raise MeshposeError(f"the header's data setting 'joint_set' is not a joint set: {str(joint_set)[:40]!r}",
                            path)
    sets = data_settings.get("input_sets", list(INPUT_SETS))
    if not isinstance(sets, list) or not sets or not all(isinstance(s, str) and s in INPUT_SETS for s in sets):
        raise MeshposeError(f"the header's data setting 'input_sets' must list some of {', '.join(INPUT_SETS)}",
                            path)
    return _config_sections(model_settings, data_settings)


def check_pose2mesh_file(name_or_path: str, shipped: dict | None = None) -> None:
    """Check a Pose2Mesh model file without building the network: its header, its settings
    and its tensors' values (the tensors' shapes are checked when it is loaded)."""
    header, state = read_model_file(name_or_path, shipped or {}, FORMAT, "Pose2Mesh model")
    path = model_path(name_or_path, shipped or {})
    _checked_sections(header, path)
    for name in ("hierarchy_clusters", "joint_regressor"):
        if name not in state:
            raise MeshposeError(f"tensor {name!r} is missing", path)


def load_pose2mesh(name_or_path: str, device: str | torch.device = "cpu", shipped: dict | None = None,
                   body=None) -> Pose2MeshPredictor:
    """A :class:`Pose2MeshPredictor` from a shipped name or a model file.

    Raises:
        MeshposeError: not a Pose2Mesh file, settings of the wrong type or out of
            :data:`MODEL_SETTINGS`' ranges, a network the settings cannot build, or tensors that
            are not the network's (one line naming the file).
    """
    header, state = read_model_file(name_or_path, shipped or {}, FORMAT, "Pose2Mesh model")
    path = model_path(name_or_path, shipped or {})
    model, data = _checked_sections(header, path)
    model.cache_dir = "~/.cache/meshpose"  # the training machine's folder means nothing here
    for name in ("hierarchy_clusters", "joint_regressor"):
        if name not in state:
            raise MeshposeError(f"tensor {name!r} is missing", path)
    body = body or AnnyBody()
    try:
        net = build_pose2mesh(model, data, body.faces.cpu().numpy())
    except (ValueError, TypeError, IndexError, KeyError, AssertionError, RuntimeError) as error:
        raise MeshposeError(f"the header's settings do not build a Pose2Mesh network ({one_line(error, 80)})",
                            path) from None
    clusters = state.pop("hierarchy_clusters")
    if clusters.shape != _hierarchy_clusters(net).shape or not torch.equal(_hierarchy_clusters(net).float(), clusters):
        raise MeshposeError("the mesh hierarchy rebuilt here differs from the model's (another body "
                            "mesh, graph code or settings)", path)
    regressor = state.pop("joint_regressor")
    expected = (len(get_joint_set(data.joint_set)), body.num_vertices)
    if tuple(regressor.shape) != expected:
        raise MeshposeError(f"tensor 'joint_regressor' has shape {tuple(regressor.shape)}, expected {expected}", path)
    load_checked(net, state, path)
    return Pose2MeshPredictor(net, regressor, data.joint_set, data.input_sets, body).to(device)


def pose2mesh_estimator(predictor: Pose2MeshPredictor, joint_set: str, sets):
    """``estimate(batch, intrinsics) -> {key: (B, ...) tensor}`` of a Pose2Mesh predictor, with
    the keys of :func:`meshpose.predict.predict`'s results: ``batch`` is ``(B, J, 3)`` keypoints
    of ``joint_set``, ``intrinsics`` ``(focal (B, 2), principal (B, 2))`` or None (then no
    ``cam_t``), ``sets`` the output joint sets. ``pose`` and ``shape`` are ``(B, 0)``: Pose2Mesh
    regresses vertices, not body-model parameters. With intrinsics the mesh is turned into the
    real camera's axes through the ray to its root joint's pixel
    (:func:`~meshpose.geometry.rotations.rotation_onto_ray`)."""

    def estimate_pose2mesh(batch, intrinsics):
        # MeshNet's activations grow with the batch (~32 MB a person): a large batch goes through
        # in passes sized to the free memory, so that its memory is that of one pass.
        step = people_per_pass(batch.device)
        if len(batch) > step:
            parts = [estimate_pose2mesh(batch[i:i + step], None if intrinsics is None else
                                        tuple(x[i:i + step] for x in intrinsics)) for i in range(0, len(batch), step)]
            return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        out = predictor(batch, joint_set)
        vertices = out["vertices"]
        if intrinsics is not None:  # into the real camera's axes, as the regressor's bodies
            turn = rotation_onto_ray(out["joints2d"][:, 0].float(), *intrinsics).to(vertices)
            vertices = vertices @ turn.transpose(1, 2)
        values = {"vertices": vertices, "pose": vertices.new_zeros(len(batch), 0),
                  "shape": vertices.new_zeros(len(batch), 0)}
        for name in sets:
            values[f"joints3d_{name}"] = predictor.joints(vertices, name)
        if intrinsics is not None:
            skeleton = predictor.joints(vertices, predictor.root_set)  # PoseNet's 2D skeleton
            values["cam_t"] = translation_from_2d_3d(skeleton, out["joints2d"], *intrinsics)
        return values

    return estimate_pose2mesh
