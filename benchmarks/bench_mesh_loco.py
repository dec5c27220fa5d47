"""mesh-keypoints leave one collection out: each model scored on the human_seg collection it never saw.

    python benchmarks/bench_mesh_loco.py --keypoint-dataset kpdata \\
        --point "new model" faust new_faust.safetensors --point "new model" adobe new_adobe.safetensors ... \\
        --point "previous model" faust old_faust.safetensors ... \\
        --reference faust runs/seed_faust-<stamp> ...

Models come per held-out collection: ``--point NAME COLLECTION MODEL_FILE`` (a mesh-keypoint
model trained with ``data.hold_out=COLLECTION``, read through ``meshpose.mesh_keypoints`` with
its default ``up="auto"``), ``--reference COLLECTION RUN_DIR`` (a reference edge-CNN run with
``data.hold_out=COLLECTION``). Every kept mesh of the held-out collection (``meshpose data
build-keypoints``) is put under a random 3D rotation, scaled x1000 and offset by metres (the same
draws for every model), and scored:

* Hungarian-matched PCK@0.1 / PCK@0.05 of the bounding-box diagonal (the reference's protocol);
* with the predicted labels, PCK@0.05 and the share of paired joints on the right side, on the
  meshes whose joints are named;
* the median change of the joints between two random rotations of the same mesh (turned back,
  in cm of a 1.7 m body), and the time per mesh (2 CPU threads).

The reference edge CNN learnt upright meshes only: it is scored on the meshes upright (its
paper's protocol, told which way is up), not rotated. Prints a Markdown table.
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
from meshpose.meshkp.point_task import side_correct
from meshpose.meshkp.segdata import read_dataset
from meshpose.meshkp.seed_task import evaluate_seed, load_run_model, load_seed_dataset
from meshpose.meshkp.split import collection_of

HEADER = ("| held out | model | meshes | PCK@0.1 | PCK@0.05 | labelled PCK@0.05 | left/right correct | "
          "change between two rotations, cm | ms per mesh |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")


def _moves(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (rotation (3, 3), offset (3,) m) pairs, the same for every model."""
    rng = np.random.default_rng(seed)
    return [(Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix(), rng.normal(size=3) * 5.0)
            for _ in range(count)]


def point_row(name: str, collection: str, model: str, data: dict, seed: int) -> str:
    keep = [i for i, n in enumerate(data["names"]) if collection_of(n) == collection]
    moves = _moves(seed, 2 * len(keep))
    pred, truth, diagonal, change, times = [], [], [], [], []
    for k, i in enumerate(keep):
        vertices, faces = data["vertices"][i], data["faces"][i]
        answers = []
        for rotation, offset in moves[2 * k: 2 * k + 2]:
            start = time.perf_counter()
            result = meshpose.mesh_keypoints(((vertices @ rotation.T + offset) * 1000, faces), model=model)
            times.append(time.perf_counter() - start)
            answers.append((result["keypoints"] / 1000 - offset) @ rotation)  # back in the mesh's frame, m
        pred.append(answers[0])
        truth.append(data["keypoints"][i])
        diagonal.append(float(np.linalg.norm(np.ptp(vertices, axis=0))))
        height = float(np.ptp(vertices[:, 1]))
        change.append(np.median(np.linalg.norm(answers[0] - answers[1], axis=1)) / height * 170)
    pred, truth, diagonal = (torch.from_numpy(np.asarray(x)) for x in (pred, truth, diagonal))
    labelled = torch.from_numpy(data["labelled"][keep])
    pck = [float(metrics.matched_pck(pred, truth, t, normalizer=diagonal)) for t in (0.1, 0.05)]
    if labelled.any():
        error = (pred - truth).norm(dim=-1)[labelled] / diagonal[labelled, None]
        named = f"{float((error < 0.05).double().mean()):.3f} | {side_correct(pred[labelled], truth[labelled]):.3f}"
    else:
        named = "- | -"
    return (f"| {collection} | {name} | {len(keep)} | {pck[0]:.3f} | {pck[1]:.3f} | {named} | "
            f"{np.median(change):.2f} | {1000 * np.median(times):.0f} |")


def reference_row(collection: str, run_dir: str, folder: str) -> str:
    model, config = load_run_model(run_dir)
    if config.data.hold_out != collection:
        raise SystemExit(f"{run_dir}: trained with hold_out={config.data.hold_out!r}, not {collection!r}")
    scores = evaluate_seed(model, load_seed_dataset(folder, collection), "test")
    return (f"| {collection} | reference edge CNN (upright, told the up) | {scores['n']} | {scores['pck10']:.3f} | "
            f"{scores['pck05']:.3f} | - | - | - | - |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keypoint-dataset", required=True, help="folder built by meshpose data build-keypoints")
    parser.add_argument("--point", nargs=3, action="append", default=[], metavar=("NAME", "COLLECTION", "MODEL"))
    parser.add_argument("--reference", nargs=2, action="append", default=[], metavar=("COLLECTION", "RUN_DIR"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = read_dataset(args.keypoint_dataset)
    print(HEADER, flush=True)
    for collection in ("faust", "adobe", "mit"):
        for run_dir in (r for c, r in args.reference if c == collection):
            print(reference_row(collection, run_dir, args.keypoint_dataset), flush=True)
        for name, _, model in (p for p in args.point if p[1] == collection):
            print(point_row(name, collection, model, data, args.seed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
