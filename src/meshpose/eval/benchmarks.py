"""``meshpose eval``: the accuracy tables of the 2D keypoints -> body models (held-out motion
seen by virtual cameras, Human3.6M S1: :mod:`meshpose.data.protocols`) and of the mesh ->
keypoints models (held-out meshes of the keypoint dataset: :mod:`meshpose.meshkp.evaluate`).
"""
from __future__ import annotations

from functools import cache

from meshpose.body import AnnyBody
from meshpose.data.posebank import PoseBank
from meshpose.data.protocols import evaluate_h36m, evaluate_motion, held_out_cmu
from meshpose.errors import MeshposeError
from meshpose.estimators import load_estimator
from meshpose.meshkp.evaluate import point_model_rows, print_keypoint_table
from meshpose.meshkp.seed_task import reference_rows


def estimator_for(model, body):
    """``joint_set -> estimate`` for a model name or file, loading the model once per joint set
    (a function of that kind is returned as is)."""
    if callable(model):
        return model

    @cache
    def for_joint_set(joint_set):
        return load_estimator(model, "cpu", joint_set, ("h36m17",), body)[0]

    for_joint_set.label = model
    return for_joint_set


def cmd_eval(args) -> int:
    tasks = set(args.tasks)
    if "predict" in tasks:
        _eval_predict(args)
    if "mesh-keypoints" in tasks:
        if not args.keypoint_dataset:
            raise MeshposeError("the mesh-keypoints rows need --keypoint-dataset (a folder from "
                                "meshpose data build-keypoints)")
        rows = []
        if args.reference_model:
            rows += reference_rows(args.reference_model, args.keypoint_dataset)
        rows += point_model_rows(args.keypoint_dataset)
        print()
        print_keypoint_table(rows)
    return 0


def _eval_predict(args) -> None:
    body = AnnyBody()
    banks = [("CMU subjects 13-14", held_out_cmu())]
    for spec in args.bank or []:
        name, _, path = spec.partition("=")
        banks.append((name, PoseBank.load(path)))
    rows = []
    for model in args.model:
        estimator = estimator_for(model, body)  # each model loaded once, not once per protocol
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
