"""Reading shipped or user-given model files (safetensors with a meshpose header)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open

from meshpose.errors import MeshposeError, UnknownNameError

__all__ = ["SHIPPED_MODELS", "model_file_format", "read_model_file"]

#: Shipped 2D-keypoints-to-body models, by name: files in ``meshpose/assets``.
SHIPPED_MODELS = {"default": "regressor_default.safetensors", "pose2mesh": "pose2mesh_default.safetensors"}


def _model_path(name_or_path: str, shipped: dict[str, str]) -> Path:
    if name_or_path in shipped:
        return Path(str(resources.files("meshpose") / "assets" / shipped[name_or_path]))
    path = Path(name_or_path)
    if not path.exists():
        raise UnknownNameError(f"unknown model {name_or_path!r}; choose from {', '.join(shipped)} or give a file")
    return path


def model_file_format(name_or_path: str, shipped: dict[str, str]) -> str:
    """The header's ``format`` of a shipped or user-given model file ("" when it has none)."""
    path = _model_path(name_or_path, shipped)
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format", "")
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
        raise MeshposeError(f"cannot read model file ({error})", path) from None


def read_model_file(name_or_path: str, shipped: dict[str, str], format_name: str,
                    what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header and float32 tensors of a model file.

    Args:
        name_or_path: a name in ``shipped`` (a file in ``meshpose/assets``) or a file path.
        shipped: shipped model names -> asset file names.
        format_name: the header's required ``format`` value.
        what: what the file holds, for the error message ("regressor", ...).

    Raises:
        UnknownNameError: neither a shipped name nor an existing file.
        MeshposeError: unreadable file, or a header of another format.
    """
    path = _model_path(name_or_path, shipped)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
        raise MeshposeError(f"cannot read model file ({error})", path) from None
    if header.get("format") != format_name:
        raise MeshposeError(f"not a meshpose {what} file", path)
    return header, state
