"""What every body model in meshpose returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from meshpose.errors import MeshposeError


def batched_vector(value, width: int, batch: int, dtype, device, fill: float, what: str,
                   detail: str = "") -> torch.Tensor:
    """A (B, width) input of a body model: ``fill`` everywhere when ``value`` is None, else
    ``value`` checked for its shape (a one-line :class:`MeshposeError` otherwise)."""
    if value is None:
        return torch.full((batch, width), fill, dtype=dtype, device=device)
    value = torch.as_tensor(value, dtype=dtype, device=device)
    if value.ndim != 2 or value.shape[1] != width:
        raise MeshposeError(f"{what} must be (B, {width}){detail}; got {tuple(value.shape)}")
    return value


@dataclass
class BodyOutput:
    """A batch of posed bodies.

    Attributes:
        vertices: (B, V, 3) posed vertices in metres, or None when skinning was skipped.
        joints: (B, K, 3) named landmarks in metres (joint centres and surface keypoints).
        joint_names: the K landmark names, in order.
        faces: (F, 3) int64 triangle vertex indices.
    """

    vertices: torch.Tensor | None
    joints: torch.Tensor
    joint_names: tuple[str, ...]
    faces: torch.Tensor

    def joint(self, name: str) -> torch.Tensor:
        """(B, 3) one landmark by name."""
        return self.joints[:, self.joint_names.index(name)]
