"""mesh-keypoints on meshes in any orientation: ``up="auto"`` against knowing the up axis.

    python benchmarks/bench_mesh_orientation.py --keypoint-dataset kpdata   # built by build-keypoints
    python benchmarks/bench_mesh_orientation.py --keypoint-dataset kpdata --model other.safetensors

Rows (2 CPU threads; medians over meshes):

* human_seg val + test meshes (kept by ``meshpose data build-keypoints``; never trained on),
  each under a random 3D rotation, in millimetres (x1000) and offset by metres: Hungarian
  PCK@0.1 / PCK@0.05 of the bounding-box diagonal (the reference's protocol), with ``up="auto"``
  and, for comparison, read along the true up axis;
* the same meshes under a second random rotation: median change of the joints between the two
  (turned back to the mesh's frame), in cm of a 1.7 m body;
* Anny bodies in the five preset poses, each under three random rotations: median joint-centre
  error (smpl24, Anny's anatomical joints) and the angle between the found and the true up;
* time per mesh.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

import meshpose
from meshpose import metrics
from meshpose.body import AnnyBody, body_joints
from meshpose.body.poses import PRESETS, preset_rotations
from meshpose.meshkp.anny_parts import Y_UP
from meshpose.meshkp.segdata import read_dataset
from meshpose.meshkp.split import split_of


def _pck(pred: np.ndarray, truth: np.ndarray, diagonal: float) -> tuple[float, float]:
    """Hungarian-matched PCK@0.1 and @0.05 of the bounding-box diagonal (the reference's protocol)."""
    pred, truth = torch.from_numpy(pred)[None], torch.from_numpy(truth)[None]
    scale = torch.tensor([diagonal], dtype=pred.dtype)
    return tuple(float(metrics.matched_pck(pred, truth, t, normalizer=scale)) for t in (0.1, 0.05))


def _moved(rng, vertices):
    rotation = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    offset = rng.normal(size=3) * 5.0
    return rotation, offset, (vertices @ rotation.T + offset) * 1000


def human_seg_rows(folder: str, seed: int, model: str) -> list[str]:
    data = read_dataset(folder)
    rng = np.random.default_rng(seed)
    scores = {"auto": [], "true up": []}
    change, times, count = [], [], 0
    for name, vertices, faces, truth in zip(data["names"], data["vertices"], data["faces"], data["keypoints"]):
        if split_of(name) == "train":
            continue
        count += 1
        height = float(np.ptp(vertices[:, 1]))
        results = []
        for _ in range(2):
            rotation, offset, moved = _moved(rng, vertices)
            start = time.perf_counter()
            result = meshpose.mesh_keypoints((moved, faces), model=model)
            times.append(time.perf_counter() - start)
            back = result["keypoints"] / 1000 - offset
            results.append(back @ rotation)
            if len(results) == 1:
                diagonal = float(np.linalg.norm(np.ptp(moved, axis=0)))
                scores["auto"].append(_pck(result["keypoints"], (truth @ rotation.T + offset) * 1000, diagonal))
        upright = meshpose.mesh_keypoints((vertices, faces), model=model, up="y")["keypoints"]
        scores["true up"].append(_pck(upright, truth, float(np.linalg.norm(np.ptp(vertices, axis=0)))))
        change.append(np.median(np.linalg.norm(results[0] - results[1], axis=1)) / height * 170)
    lines = [f"| human_seg val + test, {count} meshes | {name} | {np.mean([s[0] for s in rows]):.3f} | "
             f"{np.mean([s[1] for s in rows]):.3f} |" for name, rows in scores.items()]
    lines.append(f"| two random rotations of each mesh | median change of the joints | "
                 f"{np.median(change):.2f} cm (90th percentile {np.percentile(change, 90):.2f}) | |")
    lines.append(f"| time per mesh (752 vertices), auto | median | {1000 * np.median(times):.0f} ms | |")
    return lines


def anny_rows(seed: int, model: str) -> list[str]:
    anny = AnnyBody()
    rng = np.random.default_rng(seed)
    errors, angles, times = [], [], []
    for pose in PRESETS:
        with torch.no_grad():
            out = anny(preset_rotations(pose), torch.full((1, 6), 0.5))
        vertices = (out.vertices[0] @ Y_UP.T).double().numpy()
        truth = (body_joints(out, "smpl24", anatomical=True)[0] @ Y_UP.T).double().numpy()
        faces = anny.faces.numpy()
        for _ in range(3):
            rotation, offset, moved = _moved(rng, vertices)
            start = time.perf_counter()
            result = meshpose.mesh_keypoints((moved, faces), joint_set="smpl24", model=model)
            times.append(time.perf_counter() - start)
            back = (result["keypoints"] / 1000 - offset) @ rotation
            errors.append(np.median(np.linalg.norm(back - truth, axis=1)) * 100)
            angles.append(np.degrees(np.arccos(np.clip(result["up"] @ rotation[:, 1], -1, 1))))
    return [f"| Anny, {len(PRESETS)} preset poses x 3 rotations | smpl24 joint centres, median | "
            f"{np.median(errors):.2f} cm (worst body {max(errors):.2f}) | |",
            f"| | angle of the found up | median {np.median(angles):.1f} deg, max {max(angles):.1f} | |",
            f"| time per mesh ({len(vertices)} vertices), auto | median | {1000 * np.median(times):.0f} ms | |"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keypoint-dataset", required=True, help="folder built by meshpose data build-keypoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print("| meshes | measure | PCK@0.1 / value | PCK@0.05 |")
    print("|---|---|---:|---:|")
    for line in human_seg_rows(args.keypoint_dataset, args.seed, args.model) + anny_rows(args.seed, args.model):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
