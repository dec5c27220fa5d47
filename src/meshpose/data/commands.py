"""``meshpose data ...``: mocap to pose banks, and pictures of them; the mesh-keypoints dataset."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from meshpose.errors import InputFileError, MeshposeError

MOCAP_EXTENSIONS = (".bvh", ".amc")


def find_mocap_files(sources: list[str]) -> list[Path]:
    """Mocap files named directly or found (recursively) in folders, sorted."""
    files = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in MOCAP_EXTENSIONS)
        elif path.exists():
            files.append(path)
        else:
            raise InputFileError("not found", path)
    if not files:
        raise MeshposeError(f"no mocap files (.bvh, .amc) in {', '.join(sources)}")
    return files


def gather_clips(sources: list[str], fps: float) -> list[dict]:
    """Retarget points of every clip in ``sources`` (mocap files, folders or points ``.npz``)."""
    from tqdm import tqdm

    from meshpose.data.retarget import load_points, read_clip_points

    clips, mocap = [], []
    for source in sources:
        if source.endswith(".npz"):
            clips += load_points(source)
        else:
            mocap.append(source)
    if mocap:
        files = find_mocap_files(mocap)
        for path in tqdm(files, desc="read mocap", unit="file", disable=len(files) < 10):
            try:
                clips.append(read_clip_points(path, fps=fps))
            except ValueError as error:  # an unknown skeleton
                raise InputFileError(str(error), path) from None
    return clips


def cmd_points(args) -> int:
    from meshpose.data.retarget import save_points

    clips = gather_clips(args.sources, args.fps)
    save_points(clips, args.output)
    print(f"{args.output}: {len(clips)} clips, {sum(len(c['frames']) for c in clips)} frames")
    return 0


def cmd_retarget(args) -> int:
    from meshpose.data.posebank import PoseBank
    from meshpose.data.retarget import RetargetOptions, error_table, retarget_clips
    from meshpose.io.atomic import atomic_write_text

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


def retarget_picture(clip: dict, fitted: dict, path, frames: int = 4, device: str = "cpu") -> None:
    """Fitted meshes with the (scale-aligned) mocap skeleton drawn over them, a few frames."""
    from meshpose.body import AnnyBody
    from meshpose.data.retarget import RETARGET_POINTS, SEGMENTS
    from meshpose.viz import render_mesh, save_png

    body = AnnyBody()
    names = list(RETARGET_POINTS)
    landmarks = [body.joint_names.index(RETARGET_POINTS[n]) for n in names]
    edges = [(names.index(a), names.index(b)) for a, b in SEGMENTS]
    count = len(fitted["frames"])
    if count == 0:
        return
    picks = np.linspace(0, count - 1, min(frames, count)).round().astype(int)
    lookup = {int(f): i for i, f in enumerate(clip["frames"])}
    tiles = []
    with torch.no_grad():
        for k in picks:
            output = body(fitted["rotations"][k : k + 1].float(), torch.as_tensor(fitted["shape"])[None])
            anny = output.joints[0, landmarks].numpy()
            source = clip["points"][lookup[int(fitted["frames"][k])]]
            a, s = anny - anny[:1], source - source[:1]
            scale = (a * s).sum() / (s * s).sum()
            overlay = s * scale + anny[:1]
            tiles.append(render_mesh(output.vertices[0].numpy(), output.faces.numpy(), size=(300, 400),
                                     camera="front", joints=overlay, edges=edges))
    save_png(path, np.concatenate(tiles, axis=1))


def cmd_samples(args) -> int:
    from meshpose.data.samples import draw_samples

    print(draw_samples(args.n, args.output, seed=args.seed, joint_set=args.joint_set))
    return 0


def cmd_build_keypoints(args) -> int:
    from meshpose.meshkp.segdata import build_dataset

    summary = build_dataset(args.seg_dir, args.output)
    print(f"{summary['out_dir']}: {summary['accepted']} of {summary['total']} meshes pass, "
          f"{summary['rejected']} rejected")
    for reason, count in summary["reasons"].items():
        print(f"{count:5d}  {reason}")
    return 0


def add_data_commands(commands) -> None:
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
    retarget.add_argument("--device", default=None, help="cpu or cuda")
    retarget.set_defaults(run=cmd_retarget)

    keypoints = sub.add_parser("build-keypoints",
                               help="the 12-keypoint mesh dataset from part-segmented meshes")
    keypoints.add_argument("seg_dir", metavar="SEG_DIR",
                           help="folder with meshes/*.obj and seg/*.eseg (MeshCNN human_seg layout)")
    keypoints.add_argument("-o", "--output", required=True,
                           help="output folder: meshes/, keypoints.csv, manifest.json")
    keypoints.set_defaults(run=cmd_build_keypoints)

    samples = sub.add_parser("samples", help="draw a grid of synthetic training samples")
    samples.add_argument("--n", type=int, default=16)
    samples.add_argument("--out", "-o", dest="output", required=True, help="PNG file")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--joint-set", default="coco17")
    samples.set_defaults(run=cmd_samples)
