"""``meshpose data ...``: mocap to pose banks, and pictures of them; the mesh-keypoints dataset."""
from __future__ import annotations

import json
from pathlib import Path

from meshpose.cli.arguments import device
from meshpose.data.h36m_regressor import fit_h36m_regressor
from meshpose.data.posebank import PoseBank
from meshpose.data.retarget import (
    RetargetOptions,
    error_table,
    gather_clips,
    retarget_clips,
    retarget_picture,
    save_points,
)
from meshpose.data.samples import draw_samples
from meshpose.io.atomic import atomic_write_text
from meshpose.meshkp.segdata import build_dataset


def cmd_points(args) -> int:
    clips = gather_clips(args.sources, args.fps)
    save_points(clips, args.output)
    print(f"{args.output}: {len(clips)} clips, {sum(len(c['frames']) for c in clips)} frames")
    return 0


def cmd_retarget(args) -> int:
    clips = gather_clips(args.sources, args.fps)
    options = RetargetOptions(iterations=args.iterations, device=args.device or "cpu",
                              fit_shape=not args.no_shape)
    bank_clips, report, errors = retarget_clips(clips, options)
    bank = PoseBank.from_clips(bank_clips)
    bank.save(args.output)
    table = error_table(errors)
    report_path = Path(args.report or Path(args.output).with_suffix(".report.json"))
    atomic_write_text(report_path, json.dumps({"sources": table, "clips": report}, indent=2))
    if args.picture:
        retarget_picture(clips[0], bank_clips[0], args.picture, device=options.device)
    print(f"{args.output}: {len(bank)} poses from {len(clips)} clips "
          f"({sum(r['dropped'] for r in report)} frames dropped); report {report_path}")
    print("| source | frames kept | dropped | median mm | p95 mm |")
    print("|---|---:|---:|---:|---:|")
    for row in table:
        kept = sum(r["kept"] for r in report if r["source"] == row["source"])
        dropped = sum(r["dropped"] for r in report if r["source"] == row["source"])
        print(f"| {row['source']} | {kept} | {dropped} | {row['median_mm']:.1f} | {row['p95_mm']:.1f} |")
    return 0


def cmd_fit_h36m_regressor(args) -> int:
    report = fit_h36m_regressor(args.h36m, args.output, stride=args.stride, iterations=args.iterations,
                                radius=args.radius)
    report_path = Path(args.report or Path(args.output).with_suffix(".report.json"))
    atomic_write_text(report_path, json.dumps(report, indent=2))
    print(f"{args.output}: h36m17 regressor, {sum(report['nonzero_per_joint'])} weights; report {report_path}")
    print(f"fit of Anny to S1 ({report['frames']} frames): mean joint error {report['fit_error_mm']:.1f} mm "
          f"(anatomical centres, with the trunk and head offsets; {report['anatomical_fit_error_mm']:.1f} mm "
          "without them)")
    print(f"regressor fitted on {report['fit_frames']} frames of: {', '.join(report['fit_takes'])}")
    print(f"held out, {report['held_out_frames']} frames of: {', '.join(report['held_out_takes'])}")
    print("| joints on the fitted bodies | frames | MPJPE mm | PA-MPJPE mm |")
    print("|---|---|---:|---:|")
    for half in ("fit_half", "held_out"):
        for name, label in (("anatomical", "h36m17_anatomical (Anny's joint centres)"),
                            ("regressor", "h36m17 (the regressor)")):
            row = report[half][name]
            print(f"| {label} | {half.replace('_', ' ')} | {row['mpjpe_mm']:.1f} | {row['pa_mpjpe_mm']:.1f} |")
    return 0


def cmd_samples(args) -> int:
    print(draw_samples(args.n, args.output, seed=args.seed, joint_set=args.joint_set))
    return 0


def cmd_build_keypoints(args) -> int:
    summary = build_dataset(args.seg_dir, args.output)
    print(f"{summary['out_dir']}: {summary['accepted']} of {summary['total']} meshes kept "
          f"({summary['labelled']} labelled), {summary['rejected']} rejected")
    for reason, count in summary["reasons"].items():
        print(f"{count:5d}  {reason}")
    for reason, count in summary["unlabelled_reasons"].items():
        print(f"{count:5d}  kept without joint names: {reason}")
    return 0


def add_commands(commands) -> None:
    data = commands.add_parser(
        "data", help="mocap to pose banks; synthetic training samples; the mesh-keypoints dataset")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

    points = sub.add_parser("points", help="read mocap files into one retarget-points .npz")
    points.add_argument("sources", nargs="+", help="mocap files (.bvh, .amc) or folders")
    points.add_argument("-o", "--output", required=True)
    points.add_argument("--fps", type=float, default=30.0, help="frame rate kept (default 30)")
    points.set_defaults(run=cmd_points)

    retarget = sub.add_parser("retarget", help="fit the reduced Anny pose to mocap: a pose bank")
    retarget.add_argument("sources", nargs="+", help="mocap files/folders, or points .npz")
    retarget.add_argument("-o", "--output", required=True, help="pose bank .npz")
    retarget.add_argument("--report", help="report JSON (default: OUTPUT.report.json)")
    retarget.add_argument("--picture", help="PNG: fitted meshes under the mocap skeleton")
    retarget.add_argument("--fps", type=float, default=30.0)
    retarget.add_argument("--iterations", type=int, default=300)
    retarget.add_argument("--no-shape", action="store_true", help="keep the shape at 0.5")
    retarget.add_argument("--device", default=None, type=device, help="cpu or cuda")
    retarget.set_defaults(run=cmd_retarget)

    keypoints = sub.add_parser("build-keypoints",
                               help="the 12-keypoint mesh dataset from part-segmented meshes")
    keypoints.add_argument("seg_dir", metavar="SEG_DIR",
                           help="folder with meshes/*.obj and seg/*.eseg (MeshCNN human_seg layout)")
    keypoints.add_argument("-o", "--output", required=True,
                           help="output folder: meshes/, keypoints.csv, manifest.json")
    keypoints.set_defaults(run=cmd_build_keypoints)

    regressor = sub.add_parser(
        "fit-h36m-regressor",
        help="fit Anny to Human3.6M S1's 3D joints, then a vertex -> h36m17 regressor on half the actions")
    regressor.add_argument("--h36m", required=True, metavar="DIR",
                           help="folder with h36m_S1_3d.npz and h36m_S1_joints.json")
    regressor.add_argument("-o", "--output", required=True, help="regressor .safetensors")
    regressor.add_argument("--report", help="report JSON (default: OUTPUT.report.json)")
    regressor.add_argument("--stride", type=int, default=30, help="every n-th frame of each take (default 30)")
    regressor.add_argument("--iterations", type=int, default=250, help="position-fit steps (default 250)")
    regressor.add_argument("--radius", type=float, default=0.15,
                           help="vertices within this many metres of a joint's anatomical centre (default 0.15)")
    regressor.set_defaults(run=cmd_fit_h36m_regressor)

    samples = sub.add_parser("samples", help="draw a grid of synthetic training samples")
    samples.add_argument("--n", type=int, default=16)
    samples.add_argument("--out", "-o", dest="output", required=True, help="PNG file")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--joint-set", default="coco17")
    samples.set_defaults(run=cmd_samples)
