"""Pose banks: reduced Anny poses retargeted from motion capture, with their provenance.

File layout (``.npz``)::

    rotations      (N, 22, 6) float16  6D rotations, POSE_JOINTS order (see geometry.rotations)
    clip           (N,) int32          index into the clip tables
    frame          (N,) int32          frame number in the source take
    joint_names    (22,) str
    clip_names     (C,) str            e.g. "cmu/01/01_01"
    clip_sources   (C,) str            "cmu", "hdm05", "bandai", ...
    clip_licences  (C,) str            licence tag of the source
    clip_shapes    (C, 6) float32      phenotypes fitted to the actor
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from meshpose.body import POSE_JOINTS
from meshpose.errors import InputFileError
from meshpose.geometry.rotations import rotmat_to_sixd, sixd_to_rotmat
from meshpose.io.atomic import atomic_write

LICENCES = {
    "cmu": "CMU Graphics Lab Motion Capture Database: free for any use",
    "hdm05": "HDM05: research use with citation",
    "bandai": "Bandai-Namco-Research-Motiondataset: CC BY-NC 4.0",
    "h36m": "Human3.6M: non-commercial research only",
}


@dataclass
class PoseBank:
    rotations: np.ndarray  # (N, 22, 6) float16
    clip: np.ndarray
    frame: np.ndarray
    clip_names: np.ndarray
    clip_sources: np.ndarray
    clip_licences: np.ndarray
    clip_shapes: np.ndarray

    def __len__(self) -> int:
        return len(self.rotations)

    def split_clips(self, prefixes) -> tuple["PoseBank", "PoseBank"]:
        """(poses of clips whose name starts with none of ``prefixes``, poses of the others),
        e.g. ``bank.split_clips(["cmu/13/", "cmu/14/"])`` -> (training poses, held-out poses)."""
        names = [str(n) for n in self.clip_names]
        matched = np.array([n.startswith(tuple(prefixes)) for n in names], dtype=bool)[self.clip]
        return self._subset(~matched), self._subset(matched)

    def _subset(self, keep: np.ndarray) -> "PoseBank":
        return PoseBank(self.rotations[keep], self.clip[keep], self.frame[keep], self.clip_names,
                        self.clip_sources, self.clip_licences, self.clip_shapes)

    def rotation_matrices(self, index=None, device=None) -> torch.Tensor:
        """(n, 22, 3, 3) float32 rotations of the poses ``index`` (all by default)."""
        six = self.rotations if index is None else self.rotations[index]
        return sixd_to_rotmat(torch.as_tensor(np.asarray(six, dtype=np.float32), device=device))

    def save(self, path: str | Path) -> Path:
        def write(tmp: str) -> None:
            np.savez_compressed(
                tmp, rotations=self.rotations.astype(np.float16), clip=self.clip.astype(np.int32),
                frame=self.frame.astype(np.int32), joint_names=np.array(POSE_JOINTS),
                clip_names=self.clip_names, clip_sources=self.clip_sources,
                clip_licences=self.clip_licences, clip_shapes=self.clip_shapes.astype(np.float32),
            )

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "PoseBank":
        path = Path(path)
        if not path.exists():
            raise InputFileError("pose bank not found", path)
        try:
            data = np.load(path, allow_pickle=False)
            fields = {k: data[k] for k in ("rotations", "clip", "frame", "clip_names", "clip_sources",
                                           "clip_licences", "clip_shapes")}
            joint_names = tuple(str(n) for n in data["joint_names"])
        except (OSError, ValueError, KeyError) as error:
            raise InputFileError(f"not a pose bank ({error})", path) from None
        if joint_names != POSE_JOINTS or fields["rotations"].shape[1:] != (len(POSE_JOINTS), 6):
            raise InputFileError("pose bank joints do not match meshpose's reduced pose", path)
        return cls(**fields)

    @classmethod
    def concatenate(cls, banks: list["PoseBank"]) -> "PoseBank":
        """One bank holding the poses and clips of ``banks``, in order (clip indices renumbered)."""
        offsets = np.cumsum([0] + [len(b.clip_names) for b in banks[:-1]])
        return cls(
            rotations=np.concatenate([b.rotations for b in banks]),
            clip=np.concatenate([b.clip + offset for b, offset in zip(banks, offsets)]).astype(np.int32),
            frame=np.concatenate([b.frame for b in banks]),
            clip_names=np.concatenate([b.clip_names for b in banks]),
            clip_sources=np.concatenate([b.clip_sources for b in banks]),
            clip_licences=np.concatenate([b.clip_licences for b in banks]),
            clip_shapes=np.concatenate([b.clip_shapes for b in banks]),
        )

    @classmethod
    def from_clips(cls, clips: list[dict]) -> "PoseBank":
        """Each clip: ``name``, ``source``, ``rotations`` (T, 22, 3, 3), ``frames`` (T,), ``shape`` (6,)."""
        rotations, clip, frame = [], [], []
        for i, c in enumerate(clips):
            rotations.append(rotmat_to_sixd(torch.as_tensor(c["rotations"])).numpy().astype(np.float16))
            clip.append(np.full(len(c["frames"]), i, dtype=np.int32))
            frame.append(np.asarray(c["frames"], dtype=np.int32))
        return cls(
            rotations=np.concatenate(rotations) if rotations else np.zeros((0, len(POSE_JOINTS), 6), np.float16),
            clip=np.concatenate(clip) if clip else np.zeros(0, np.int32),
            frame=np.concatenate(frame) if frame else np.zeros(0, np.int32),
            clip_names=np.array([c["name"] for c in clips]),
            clip_sources=np.array([c["source"] for c in clips]),
            clip_licences=np.array([LICENCES.get(c["source"], "unknown") for c in clips]),
            clip_shapes=np.stack([np.asarray(c["shape"], np.float32) for c in clips]) if clips else np.zeros((0, 6), np.float32),
        )


def shipped_pose_bank_path() -> Path:
    """The CMU pose bank shipped in the package."""
    return Path(str(resources.files("meshpose") / "assets" / "pose_bank_cmu.npz"))


def load_shipped_pose_bank() -> PoseBank:
    return PoseBank.load(shipped_pose_bank_path())


def load_training_banks(bank: str = "", extra_banks=()) -> PoseBank:
    """The poses a model trains on: ``bank`` ("" = the shipped CMU bank) followed by ``extra_banks``."""
    first = PoseBank.load(bank) if bank else load_shipped_pose_bank()
    return PoseBank.concatenate([first] + [PoseBank.load(path) for path in extra_banks]) if extra_banks else first
