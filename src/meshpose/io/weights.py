"""Reading shipped or user-given model files (safetensors with a meshpose header).

A model file is refused with one line naming it (:class:`~meshpose.errors.MeshposeError`) when
it cannot be read as safetensors, its header has another ``format``, a header entry is missing
or not the JSON it should be, a setting is of the wrong type or outside its range
(:func:`check_settings`), a tensor holds NaN or infinite values, or the tensors are not exactly
those of the network the header describes (:func:`load_checked`: missing, extra or mis-shaped).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from meshpose.errors import MeshposeError, UnknownNameError
from meshpose.io._util import one_line

__all__ = ["SHIPPED_MODELS", "check_settings", "header_object", "load_checked", "model_file_format",
           "model_path", "read_model_file"]

#: Shipped 2D-keypoints-to-body models, by name: files in ``meshpose/assets``.
SHIPPED_MODELS = {"default": "regressor_default.safetensors", "research": "regressor_research.safetensors",
                  "pose2mesh": "pose2mesh_default.safetensors"}


def _model_path(name_or_path: str, shipped: dict[str, str]) -> Path:
    if name_or_path in shipped:
        return Path(str(resources.files("meshpose") / "assets" / shipped[name_or_path]))
    path = Path(name_or_path)
    if not path.exists():
        if path.is_symlink():
            raise MeshposeError("model file is a broken symbolic link or a link loop", path)
        if path.suffix or len(path.parts) > 1:  # a path, not a name
            raise MeshposeError(f"model file not found (shipped models: {', '.join(shipped)})", path)
        raise UnknownNameError(f"unknown model {name_or_path[:60]!r}; choose from {', '.join(shipped)} or give a file")
    if not path.is_file():
        raise MeshposeError("model file is a folder or not a regular file", path)
    return path


def _unreadable(error: Exception, path: Path) -> MeshposeError:
    return MeshposeError(f"cannot read model file ({one_line(error, 120)})", path)


def model_file_format(name_or_path: str, shipped: dict[str, str]) -> str:
    """The header's ``format`` of a shipped or user-given model file ("" when it has none)."""
    path = _model_path(name_or_path, shipped)
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format", "")
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
        raise _unreadable(error, path) from None


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
        MeshposeError: unreadable file, a header of another format, or a tensor holding NaN or
            infinite values.
    """
    path = _model_path(name_or_path, shipped)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != format_name:
                raise MeshposeError(f"not a meshpose {what} file (format {header.get('format', '')[:40]!r}, "
                                    f"expected {format_name!r})", path)
            state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except MeshposeError:
        raise
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
        raise _unreadable(error, path) from None
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise MeshposeError(f"tensor {name[:60]!r} holds NaN or infinite values", path)
    return header, state


def model_path(name_or_path: str, shipped: dict[str, str]) -> Path:
    """The file of a shipped model name or a user's model file (checked to exist)."""
    return _model_path(name_or_path, shipped)


def header_object(header: dict[str, str], key: str, path: str | Path) -> dict[str, Any]:
    """The JSON object stored under ``key`` in a model file's header."""
    if key not in header:
        raise MeshposeError(f"the header has no {key!r} entry", path)
    try:
        value = json.loads(header[key])
    except (json.JSONDecodeError, RecursionError):
        raise MeshposeError(f"the header's {key!r} entry is not valid JSON", path) from None
    if not isinstance(value, dict):
        raise MeshposeError(f"the header's {key!r} entry must be a JSON object", path)
    return value


def _fits(value: Any, kind: type, low, high) -> bool:
    """Whether ``value`` is of ``kind`` (an int passes for a float; a bool for nothing) and
    within ``[low, high]`` (when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        return False
    return low is None or low <= value <= high


def check_settings(settings: dict[str, Any], limits: dict[str, tuple], path: str | Path, key: str) -> None:
    """Check the header's settings that ``limits`` names (the others are not used).

    Args:
        limits: name -> ``(type, low, high)`` (``int`` or ``float``: the value and bounds;
            ``list``: a list of ints, each within the bounds), or ``(type, None, None)`` for a
            plain type check (``str``).
        key: the header entry, for messages.
    """
    for name, (kind, low, high) in limits.items():
        if name not in settings:
            continue
        value = settings[name]
        if kind is list:
            ok = isinstance(value, list) and all(_fits(item, int, low, high) for item in value)
        else:
            ok = _fits(value, kind, low, high)
        if not ok:
            bounds = f" from {low} to {high}" if low is not None else ""
            kind_text = {list: "a list of integers", int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
            raise MeshposeError(f"the header's {key} setting {name!r} must be {kind_text}{bounds}, "
                                f"got {one_line(json.dumps(value), 40)}", path)


def load_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``module.load_state_dict(state)`` after checking that ``state`` holds exactly the
    module's tensors with the module's shapes (else one line naming the first difference)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise MeshposeError(f"tensor {missing[0][:60]!r} is missing ({len(missing)} missing): not the "
                            "network the header describes", path)
    extra = [k for k in state if k not in expected]
    if extra:
        raise MeshposeError(f"unexpected tensor {extra[0][:60]!r} ({len(extra)} extra): not the network the "
                            "header describes", path)
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise MeshposeError(f"tensor {name[:60]!r} has shape {tuple(state[name].shape)}, the network the "
                                f"header describes needs {tuple(tensor.shape)}", path)
    module.load_state_dict(state)
