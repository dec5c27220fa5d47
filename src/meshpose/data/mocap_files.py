"""One entry point for every motion-capture file: :func:`read_mocap` picks the reader
(BVH, ASF/AMC, AMASS) from the extension. The clip type and the unit inference are in
:mod:`meshpose.data.mocap`."""
from __future__ import annotations

import os
from pathlib import Path

from meshpose.data.amass import AmassMotion, read_amass
from meshpose.data.asf_amc import read_amc
from meshpose.data.bvh import read_bvh
from meshpose.data.mocap import MocapClip
from meshpose.errors import InputFileError, MeshposeError

__all__ = ["FOLDER_EXTENSIONS", "MOCAP_EXTENSIONS", "find_mocap_files", "read_mocap"]

#: Extensions :func:`read_mocap` reads.
MOCAP_EXTENSIONS: tuple[str, ...] = (".bvh", ".amc", ".npz")
#: Extensions :func:`find_mocap_files` looks for in folders (skeletal motion, not AMASS).
FOLDER_EXTENSIONS: tuple[str, ...] = (".bvh", ".amc")


def read_mocap(
    path: str | os.PathLike,
    unit_scale: float | None = None,
    *,
    include_end_sites: bool = False,
    asf: str | os.PathLike | None = None,
    fps: float | None = None,
    up_axis: str = "y",
) -> MocapClip | AmassMotion:
    """Read a motion-capture file, dispatching on its extension.

    Args:
        path: a ``.bvh``, ``.amc`` or AMASS ``.npz`` file.
        unit_scale: metres per file length unit; ``None`` works it out (see the module doc).
            Not allowed for ``.npz`` (AMASS is in metres already).
        include_end_sites: BVH only: also return the ``End Site`` points (named
            ``<parent>_end``) as joints.
        asf: AMC only: the skeleton file; default: found next to the ``.amc``.
        fps: AMC only: frame rate (AMC files do not store one; default 120, the Acclaim /
            Vicon / CMU / HDM05 capture rate; the shared HDM05 subset is resampled to 30).
        up_axis: the file's vertical axis (``"y"`` for BVH and ASF/AMC by convention), used for
            the unit inference and stored in the clip.

    Returns:
        A :class:`MocapClip` for ``.bvh`` / ``.amc``; an
        :class:`~meshpose.data.amass.AmassMotion` for ``.npz``.

    Raises:
        InputFileError: missing, malformed or unsupported file (the message names it).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".bvh":
        return read_bvh(p, unit_scale, include_end_sites=include_end_sites, up_axis=up_axis)
    if ext == ".amc":
        return read_amc(p, asf, unit_scale, fps=fps, up_axis=up_axis)
    if ext == ".npz":
        if unit_scale not in (None, 1, 1.0):
            raise InputFileError("AMASS files are in metres; unit_scale must be left out", p)
        return read_amass(p)
    raise InputFileError(
        f"unknown motion-capture extension {p.suffix!r} (expected one of {', '.join(MOCAP_EXTENSIONS)})", p
    )


def find_mocap_files(sources: list[str]) -> list[Path]:
    """Mocap files named directly or found (recursively) in folders, sorted."""
    files = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in FOLDER_EXTENSIONS)
        elif path.exists():
            files.append(path)
        else:
            raise InputFileError("not found", path)
    if not files:
        raise MeshposeError(f"no mocap files (.bvh, .amc) in {', '.join(sources)}")
    return files
