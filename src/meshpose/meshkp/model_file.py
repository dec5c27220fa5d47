"""The mesh -> keypoints point model as a file: the shipped one (``assets/mesh_keypoints_default.safetensors``,
see MODEL_CARD.md) or one exported from a ``meshkp_points`` run."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from meshpose.io.weights import read_model_file
from meshpose.meshkp.pointnet import MeshKeypointNet

__all__ = ["FORMAT", "MODELS", "TRAINING_DATA", "export_mesh_keypoint_model", "load_mesh_keypoint_model",
           "training_data"]

MODELS = {"default": "mesh_keypoints_default.safetensors"}
FORMAT = "meshpose-meshkp-1"
TRAINING_DATA = ("human_seg meshes (MIT animation, FAUST, Adobe Fuse; research use), train split of "
                 "meshpose.meshkp.split; Anny bodies (Apache-2.0/CC0) in CMU motion-capture poses "
                 "(free for any use), CMU subjects 13 and 14 held out")
_models: dict = {}


def training_data(hold_out: str = "", bank: str = "") -> str:
    """The training-data statement of a ``meshkp_points`` run: :data:`TRAINING_DATA`, with the
    collection it left out whole (``hold_out``) and its pose bank when not the shipped CMU one."""
    text = TRAINING_DATA
    if hold_out:
        text += f"; the {hold_out} collection left out whole (train and val of the others)"
    if bank:
        text += f"; pose bank {bank}"
    return text


def export_mesh_keypoint_model(state: dict, model_config: dict, out: str | Path, metrics: dict | None = None,
                               points: int = 1024) -> Path:
    """Write a trained model's weights (float16) and settings as a shipped-style safetensors file."""
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    header = {"format": FORMAT, "model": json.dumps(model_config), "points": str(points),
              "training_data": TRAINING_DATA, "metrics": json.dumps(metrics or {})}
    save_file(tensors, str(out), metadata=header)
    return Path(out)


def load_mesh_keypoint_model(name_or_path: str = "default", device: str = "cpu") -> MeshKeypointNet:
    """The shipped model (``"default"``) or a file written by :func:`export_mesh_keypoint_model`."""
    key = (name_or_path, str(device))
    if key in _models:
        return _models[key]
    header, state = read_model_file(name_or_path, MODELS, FORMAT, "mesh-keypoint model")
    settings = json.loads(header["model"])
    model = MeshKeypointNet(settings["neighbours"], settings["width"], settings.get("up_head", False))
    model.load_state_dict(state)
    model.points = int(header.get("points", 1024))
    _models[key] = model.to(device).eval()
    return _models[key]
