"""What every body model in meshpose returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch


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
