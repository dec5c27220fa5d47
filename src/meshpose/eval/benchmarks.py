"""``meshpose eval``: the accuracy tables of the 2D keypoints -> body models (held-out motion
seen by virtual cameras, Human3.6M S1: :mod:`meshpose.data.protocols`) and of the mesh ->
keypoints models (held-out meshes of the keypoint dataset: :mod:`meshpose.meshkp.evaluate`).
"""
from __future__ import annotations

import zipfile
import zlib
from functools import cache
from pathlib import Path

from meshpose.body import AnnyBody
from meshpose.data.posebank import PoseBank
from meshpose.data.protocols import (
    evaluate_h36m,
    evaluate_motion,
    held_out_cmu,
    load_s1_protocol,
)
from meshpose.errors import InputFileError, MeshposeError
from meshpose.estimators import check_model, load_estimator
from meshpose.io._util import npz_members, one_line, require_file
from meshpose.meshkp.evaluate import point_model_rows, print_keypoint_table
from meshpose.meshkp.seed_task import reference_rows


def estimator_for(model, body):
    """``joint_set -> estimate`` for a model name or file, loading the model once per joint set
    (a function of that kind is returned as is)."""
    if callable(model):
        return model

    @cache
    def for_joint_set(joint_set):
        return load_estimator(model, "cpu", joint_set, ("h36m17", "h36m17_anatomical"), body)[0]

    for_joint_set.label = model
    return for_joint_set


def cmd_eval(args) -> int:
    tasks = set(args.tasks)
    if "mesh-keypoints" in tasks:  # checked before the predict table's minutes of work
        if not args.keypoint_dataset:
            raise MeshposeError("the mesh-keypoints rows need --keypoint-dataset (a folder from "
                                "meshpose data build-keypoints)")
        for folder in (args.keypoint_dataset, args.reference_model):
            if folder and not Path(folder).is_dir():
                raise InputFileError("not found or not a folder", folder)
    if "predict" in tasks:
        _eval_predict(args)
    if "mesh-keypoints" in tasks:
        rows = []
        if args.reference_model:
            rows += reference_rows(args.reference_model, args.keypoint_dataset)
        rows += point_model_rows(args.keypoint_dataset)
        print()
        print_keypoint_table(rows)
    return 0


#: The files ``--h36m`` names a folder of (see :mod:`meshpose.data.h36m`).
H36M_FILES = ("h36m_S1_3d.npz", "h36m_S1_2d_sh.npz", "h36m_S1_joints.json", "h36m_S1_cameras.json")
#: The arrays of a pose bank .npz (see :class:`meshpose.data.posebank.PoseBank`).
BANK_MEMBERS = ("rotations", "clip", "frame", "clip_names", "clip_sources", "clip_licences", "clip_shapes",
                "joint_names")


def _bank_specs(specs) -> list[tuple[str, Path]]:
    """``--bank NAME=PATH`` values as (name, path), each path an existing readable archive
    holding a pose bank's arrays (checked from its zip directory, nothing loaded yet)."""
    banks = []
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise MeshposeError("--bank takes NAME=PATH (a name for the table, then the pose bank file)", spec)
        path = require_file(path, "pose bank")
        missing = [k for k in BANK_MEMBERS if k not in npz_members(path)]
        if missing:
            raise InputFileError(f"not a pose bank (no {', '.join(missing[:3])})", path)
        banks.append((name, path))
    return banks


def _load_bank(path: Path) -> PoseBank:
    """:meth:`PoseBank.load`, with a corrupt archive's errors as one line naming it."""
    try:
        return PoseBank.load(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        raise InputFileError(f"not a readable pose bank ({one_line(error, 80)})", path) from None
    except MemoryError:
        raise InputFileError("pose bank too large to load into memory", path) from None


def check_inputs(args) -> None:
    """Every input of ``meshpose eval``'s predict table, before anything runs: the numbers,
    the ``--h36m`` folder's files, the ``--bank`` archives and the ``--model`` files."""
    if args.samples < 1:
        raise MeshposeError(f"--samples must be at least 1, got {args.samples}")
    if args.stride < 1:
        raise MeshposeError(f"--stride must be at least 1, got {args.stride}")
    if args.h36m:
        folder = Path(args.h36m)
        if not folder.is_dir():
            raise InputFileError("not found or not a folder (--h36m takes the folder of the Human3.6M S1 files)",
                                 folder)
        for name in H36M_FILES:
            require_file(folder / name, "Human3.6M file")
        load_s1_protocol(str(args.h36m), args.stride)  # reads and checks them (kept for the table)
    for model in args.model:
        if not callable(model):
            check_model(model)


def _eval_predict(args) -> None:
    bank_paths = _bank_specs(args.bank)
    check_inputs(args)
    body = AnnyBody()
    estimators = [estimator_for(model, body) for model in args.model]
    for estimator in estimators:
        estimator("coco17")  # load (and check) every model before the first protocol runs
    banks = [("CMU subjects 13-14", held_out_cmu())] + [(name, _load_bank(path)) for name, path in bank_paths]
    rows = []
    for model, estimator in zip(args.model, estimators):  # each model loaded once, not once per protocol
        found = [evaluate_motion(name, bank, estimator, body, args.samples) for name, bank in banks]
        if args.h36m:
            found += evaluate_h36m(args.h36m, estimator, body, stride=args.stride)
        rows += [{"model": model, **row} for row in found]
    print("| model | protocol | samples | MPJPE mm | PA-MPJPE mm | PVE mm |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        pve = f"{row['pve_mm']:.1f}" if "pve_mm" in row else "-"
        print(f"| {row['model']} | {row['protocol']} | {row['samples']} | {row['mpjpe_mm']:.1f} "
              f"| {row['pa_mpjpe_mm']:.1f} | {pve} |")
