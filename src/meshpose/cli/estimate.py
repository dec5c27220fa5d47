"""The commands that estimate and convert: ``body``, ``image``, ``predict``, ``mesh-keypoints``,
``joints``, ``convert``. Each is a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from meshpose.body import (
    POSE_JOINTS,
    PRESETS,
    SHAPE_NAMES,
    body_joints,
    load_body_model,
    preset_pose,
)
from meshpose.cli.arguments import device
from meshpose.errors import InputFileError, MeshposeError
from meshpose.image import ImageBodyEstimator, process, smoothing
from meshpose.image.detectors import KeypointFileDetector
from meshpose.io._util import load_npy_or_npz, require_file
from meshpose.io.atomic import check_output_file, check_output_folder, output_batch
from meshpose.io.images import is_video, list_media, open_video, read_image
from meshpose.io.keypoints import (
    FOCAL_RANGE,
    KEYPOINT_WRITE_EXTENSIONS,
    check_focal_length,
    read_keypoints,
    visibility_rule,
    write_keypoints,
)
from meshpose.io.meshes import write_mesh
from meshpose.io.results import write_mesh_keypoints_json
from meshpose.joints import convert, describe, get_joint_set
from meshpose.mesh_keypoints import HUMANNESS_THRESHOLD, UP_CHOICES, mesh_keypoints_files
from meshpose.meshkp.pointnet import OUTPUT_SETS
from meshpose.models.regressor import INPUT_SETS
from meshpose.predict import predict_file
from meshpose.viz import render_views, save_png


def focal_length(text: str) -> float:
    """``--focal-length``: pixels, within :data:`meshpose.io.keypoints.FOCAL_RANGE`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    try:
        return check_focal_length(value, None, MeshposeError, "the focal length")
    except MeshposeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parse_shape(text: str | None):
    """``"gender=0.3,age=0.7"`` or six comma-separated numbers -> (1, 6) tensor."""
    values = dict.fromkeys(SHAPE_NAMES, 0.5)
    if text:
        items = [item.strip() for item in text.split(",") if item.strip()]
        try:
            if all("=" in item for item in items):
                for item in items:
                    key, value = (part.strip() for part in item.split("=", 1))
                    if key not in values:
                        raise MeshposeError(
                            f"unknown shape parameter {key!r}; choose from {', '.join(SHAPE_NAMES)}"
                        )
                    values[key] = float(value)
            elif len(items) == len(SHAPE_NAMES):
                values = dict(zip(SHAPE_NAMES, map(float, items)))
            else:
                raise MeshposeError(
                    f"--shape takes name=value pairs or {len(SHAPE_NAMES)} numbers "
                    f"({', '.join(SHAPE_NAMES)}); got {text!r}"
                )
        except ValueError:
            raise MeshposeError(f"--shape values must be numbers; got {text!r}") from None
    for key, value in values.items():
        low = -1.0 / 3.0 if key == "age" else 0.0
        if not low <= value <= 1.0:
            raise MeshposeError(f"shape parameter {key}={value} is outside [{low:.3g}, 1]")
    return torch.tensor([[values[name] for name in SHAPE_NAMES]])


def _load_pose(spec: str):
    """A preset name, or an .npy/.npz file holding a (22, 3) axis-angle or (22, 3, 3) pose
    (an .npz: its ``pose`` array; nothing else of it is read)."""
    if spec in PRESETS:
        return preset_pose(spec)
    path = Path(spec)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise MeshposeError(f"unknown pose {spec[:60]!r}; presets: {', '.join(PRESETS)}, or an .npy/.npz file")
    require_file(path, "pose file")
    kind = path.suffix.lower()
    data = load_npy_or_npz(path, kind, members=("pose",))
    if kind == ".npz":
        if "pose" not in data:
            raise InputFileError("no 'pose' array in the .npz", path)
        data = data["pose"]
    if data.dtype.kind not in "iuf":
        raise InputFileError(f"pose must hold numbers, got {data.dtype}", path)
    array = np.asarray(data, dtype=np.float64)
    n = len(POSE_JOINTS)
    if array.shape not in ((n, 3), (n, 3, 3), (1, n, 3), (1, n, 3, 3)):
        raise InputFileError(
            f"pose must be ({n}, 3) axis-angle or ({n}, 3, 3) rotations; got {array.shape}", path
        )
    if not np.isfinite(array).all():
        raise InputFileError("pose holds NaN or infinite values", path)
    per_joint = (3, 3) if array.size == n * 9 else (3,)
    return torch.from_numpy(array).float().reshape(1, n, *per_joint)


def cmd_body(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".obj", ".ply", ".off", ".glb"):
        raise MeshposeError("output mesh must end in .obj, .ply, .off or .glb", out)
    check_output_file(out)
    if args.keypoints:
        check_output_file(args.keypoints)
    if args.png:
        check_output_file(args.png)
    joint_set = get_joint_set(args.joint_set)
    shape = _parse_shape(args.shape)
    pose = _load_pose(args.pose)
    body = load_body_model(device=args.device)
    with torch.inference_mode():
        output = body(pose.to(body.device), shape.to(body.device))
        joints = body_joints(output, joint_set.name)[0].cpu().numpy()
        vertices = output.vertices[0].cpu().numpy()
    faces = output.faces.cpu().numpy()
    with output_batch():  # the mesh, keypoints and picture appear together or not at all
        written = [write_mesh(out, vertices, faces)]
        if args.keypoints:
            # A posed body, not a detection: every joint is known exactly (confidence 1).
            written.append(write_mesh_keypoints_json(args.keypoints, joint_set.name, joint_set.names, joints,
                                                     np.ones(len(joints), np.float32)))
        if args.png:
            image = render_views(vertices, faces, views=("front", "side"), joints=joints, edges=joint_set.edges)
            written.append(save_png(args.png, image))
    for path in written:
        print(path)
    return 0


def cmd_predict(args) -> int:
    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise MeshposeError("the results file must end in .npz", output)
    results = predict_file(args.input, output, joint_set=args.joint_set,
                           output_joints=tuple(args.output_joints or ["coco17"]), model=args.model,
                           out_dir=args.out_dir, image=args.image, device=args.device or "cpu",
                           focal_length=args.focal_length)
    valid = results["valid"]
    if not valid.all():
        print(f"meshpose: warning: {args.input}: skipped {int((~valid).sum())} of {len(valid)} people without "
              f"{visibility_rule()} (valid = False, NaN, in {output})", file=sys.stderr)
    print(f"{output}: {int(valid.sum())} of {len(valid)} people")
    if args.out_dir:
        print(args.out_dir)
    return 0


def cmd_image(args) -> int:
    check_output_folder(args.out_dir)
    detector = None
    if args.keypoints:
        detector = KeypointFileDetector(args.keypoints, sets=INPUT_SETS)
    media = list_media(args.input)
    if len(media) == 1 and not is_video(media[0]):
        read_image(media[0])  # one image: a bad one is refused before the models load
    if detector is not None:
        count = open_video(media[0]).frames if len(media) == 1 and is_video(media[0]) else len(media)
        if len(media) > 1 and any(is_video(p) for p in media):
            raise MeshposeError("--keypoints takes one video, or images only", args.input)
        if count != len(detector):
            raise MeshposeError(f"holds {len(detector)} frames for {count} images or video frames",
                                args.keypoints)
    estimator = ImageBodyEstimator(detector, model=args.model, joint_set=args.joint_set,
                                   focal_length=args.focal_length, device=args.device or "cpu",
                                   video=is_video(args.input))
    smooth = None if args.no_smooth else {"min_cutoff": args.smooth_cutoff, "beta": args.smooth_beta}
    reports = process(args.input, args.out_dir, estimator, meshes=not args.no_meshes, smooth=smooth)
    done = [r for r in reports if r.error is None]
    people = sum(r.people for r in done)
    print(f"{args.out_dir}: {people} people from {len(done)} of {len(reports)} files")
    for report in done:
        if report.jitter_raw is not None and report.jitter_smoothed is not None:
            print(f"{report.path}: joint jitter {report.jitter_raw:.2f} -> {report.jitter_smoothed:.2f} m/s^2 "
                  "(One Euro smoothing)")
    return 0 if len(done) == len(reports) else 2


def humanness_threshold(text: str) -> float:
    """``--min-humanness``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]; got {text[:40]}")
    return value


def cmd_mesh_keypoints(args) -> int:
    for path in mesh_keypoints_files(args.input, args.output, args.joint_set, args.model, args.up, args.png,
                                     device=args.device or "cpu", min_humanness=args.min_humanness):
        print(path)
    return 0


def cmd_joints(args) -> int:
    print(describe(args.name))
    return 0


def cmd_convert(args) -> int:
    check_output_file(args.output, KEYPOINT_WRITE_EXTENSIONS)
    if args.to:
        get_joint_set(args.to)
    keypoints = read_keypoints(args.input, joint_set=args.joint_set)
    if args.to and args.to != keypoints.joint_set:
        target = get_joint_set(args.to)
        converted = convert(keypoints.keypoints, keypoints.joint_set, target.name, confidence_last=True)
        converted = np.nan_to_num(converted, nan=0.0)
        keypoints = dataclasses.replace(keypoints, keypoints=converted, joint_set=target.name)
    print(write_keypoints(args.output, keypoints))
    return 0


def add_commands(commands) -> None:
    body = commands.add_parser(
        "body", help="write a posed body mesh (and its keypoints, and a picture)",
        description="Pose and shape the Anny body and write its mesh, keypoints and a picture.",
    )
    body.add_argument("--out", "-o", required=True, help="mesh file: .obj, .ply, .off or .glb")
    body.add_argument("--pose", default="reference",
                      help="preset (reference, t_pose, walk, sit, wave) or .npy/.npz with a "
                           "(22, 3) axis-angle pose")
    body.add_argument("--shape", default=None,
                      help="phenotypes, e.g. 'gender=1,age=0.8,weight=0.3' (each in [0, 1], "
                           "0.5 by default; age -1/3 newborn .. 1 old)")
    body.add_argument("--keypoints", default=None, help="write the joints to this JSON file")
    body.add_argument("--joint-set", default="coco17", help="joint set of --keypoints/--png")
    body.add_argument("--png", default=None, help="write a front and side picture")
    body.add_argument("--device", default=None, type=device, help="cpu or cuda")
    body.set_defaults(run=cmd_body)

    image = commands.add_parser(
        "image", help="images or videos -> 2D keypoints -> 3D bodies drawn over them",
        description="Detect people in an image, a folder of images or a video (MediaPipe's pose "
                    "landmarker, offline; pip install 'meshpose[image]'), estimate their bodies "
                    "and write per person an OBJ, a JSON and a PNG of the mesh over the image.",
    )
    image.add_argument("input", help="image, folder of images, or video file")
    image.add_argument("--out-dir", required=True, help="output folder")
    image.add_argument("--model", default="default",
                       help="shipped model name (default, research, pose2mesh) or model file")
    image.add_argument("--joint-set", default="coco17", choices=("coco17", "body25"),
                       help="keypoints handed to the model (default coco17)")
    image.add_argument("--focal-length", type=focal_length, default=None,
                       help="pixels; without it a 55 degree field of view is assumed and the root "
                            "translation is fitted to the keypoints")
    image.add_argument("--keypoints", default=None,
                       help="detections from another tool (any keypoint format) instead of MediaPipe: "
                            "its frames in order, one per image or video frame")
    image.add_argument("--no-smooth", action="store_true", help="videos: no temporal smoothing")
    image.add_argument("--smooth-cutoff", type=float, default=smoothing.MIN_CUTOFF,
                       help=f"One Euro filter: minimum cut-off frequency, Hz (default {smoothing.MIN_CUTOFF})")
    image.add_argument("--smooth-beta", type=float, default=smoothing.BETA,
                       help=f"One Euro filter: speed coefficient (default {smoothing.BETA})")
    image.add_argument("--no-meshes", action="store_true", help="skip the OBJ files")
    image.add_argument("--device", default=None, type=device, help="cpu or cuda")
    image.set_defaults(run=cmd_image)

    predict = commands.add_parser(
        "predict", help="2D keypoints -> 3D joints and body meshes",
        description="Estimate 3D bodies from 2D keypoints (COCO/OpenPose/MMPose JSON, a folder of "
                    "OpenPose frames, .npz/.npy/.csv) with the shipped regressor.",
    )
    predict.add_argument("input", help="keypoint file or folder of frames")
    predict.add_argument("-o", "--output", required=True, help="results .npz")
    predict.add_argument("--joint-set", default=None, help="input joint set if the file does not say")
    predict.add_argument("--output-joints", nargs="+", default=None, metavar="NAME",
                         help="joint sets to write (default coco17); h36m17 is Human3.6M's definition "
                              "(regressed from the mesh), h36m17_anatomical Anny's joint centres")
    predict.add_argument("--model", default="default",
                         help="shipped model name (default, research, pose2mesh) or model file")
    predict.add_argument("--out-dir", default=None, help="per person: OBJ, JSON and PNG")
    predict.add_argument("--image", default=None, help="draw the meshes over this image")
    predict.add_argument("--focal-length", type=focal_length, default=None,
                         help=f"pixels (for cam_t), {FOCAL_RANGE[0]:g} to {FOCAL_RANGE[1]:g}")
    predict.add_argument("--device", default=None, type=device, help="cpu or cuda")
    predict.set_defaults(run=cmd_predict)

    parser = commands.add_parser(
        "mesh-keypoints", help="3D human mesh -> labelled body joints",
        description="Estimate body joints on human meshes of any topology (OBJ/PLY/OFF/GLB/STL) with "
                    "the shipped point model; keypoints in the mesh's own coordinates and units. Meshes may "
                    "come in any rotation: the up direction is searched for unless --up gives it. A mesh "
                    f"that does not read as a human body (humanness below {HUMANNESS_THRESHOLD:g}) is refused.")
    parser.add_argument("input", help="a mesh file or a folder of them")
    parser.add_argument("-o", "--output", required=True,
                        help="JSON file (one mesh) or folder (a folder: STEM.json per mesh, NAME.EXT.json "
                             "where stems collide, e.g. scan.ply.json and scan.glb.json)")
    parser.add_argument("--joint-set", default="seed12", choices=OUTPUT_SETS)
    parser.add_argument("--up", default="auto", choices=UP_CHOICES,
                        help="the meshes' up axis, if known (faster: no search); default auto, any rotation")
    parser.add_argument("--png", default=None, help="picture of mesh and joints, .png (a folder for a folder)")
    parser.add_argument("--min-humanness", type=humanness_threshold, default=HUMANNESS_THRESHOLD,
                        help=f"refuse meshes scoring below this (default {HUMANNESS_THRESHOLD:g}; 0 accepts any)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--device", default=None, type=device, help="cpu or cuda")
    parser.set_defaults(run=cmd_mesh_keypoints)

    joints = commands.add_parser("joints", help="print the joint sets (order, flip pairs)")
    joints.add_argument("name", nargs="?", default=None, help="one joint set")
    joints.set_defaults(run=cmd_joints)

    convert = commands.add_parser(
        "convert", help="convert 2D keypoint files between formats and joint sets"
    )
    convert.add_argument("input", help="COCO/OpenPose/MMPose JSON, folder of frames, .npz/.npy/.csv")
    convert.add_argument("-o", "--output", required=True, help=".npz, .json or .csv")
    convert.add_argument("--joint-set", default=None, help="joint set of the input, if not in the file")
    convert.add_argument("--to", default=None, help="joint set to convert to")
    convert.set_defaults(run=cmd_convert)
