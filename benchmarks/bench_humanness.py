"""How well the mesh-keypoints humanness score separates human bodies from other shapes.

    python benchmarks/bench_humanness.py                       # ../shared/data/human_seg, seed 0
    python benchmarks/bench_humanness.py --human-seg DIR --seeds 0 1 2 3
    python benchmarks/bench_humanness.py --auto-only    # the shapes and Anny read with up="auto"

Scores (``meshpose.mesh_keypoints(...)["humanness"]``, threshold 0.5) of: the human_seg meshes
(y up) read with the right up axis and with each wrong one; Anny bodies in the preset poses;
23 non-human shapes (boxes, sphere, plane, triangle, tetrahedron, cylinder, cone, capsule, torus,
a table, a snowman, smooth random blobs, triangle soups) read along each of the five up axes.
For a wrong up axis it also counts how often ``meshpose mesh-keypoints`` would suggest the
right one (``--up y``: the best of the other axes, scoring at least the threshold). With
``--auto`` (or ``--auto-only``, which skips the rest) the non-human shapes and the Anny bodies,
each under a random 3D rotation per seed, are also scored with the default ``up="auto"`` (the
model's up head, then the search where that reading scores below the threshold), which gives a
shape more chances to look human. Prints Markdown tables; about
2 minutes per seed on 2 CPU cores, plus about a minute per seed for ``--auto``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

AXES = ("y", "x", "z", "-y", "-z")


def shapes(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> (vertices (V, 3), faces (F, 3)) of 23 shapes that are not human bodies (y up, metres)."""
    import trimesh

    rng = np.random.default_rng(seed)
    out = {"cube": trimesh.creation.box((1, 1, 1)), "tall box": trimesh.creation.box((0.5, 1.7, 0.3)),
           "sphere": trimesh.creation.icosphere(3), "torus": trimesh.creation.torus(1.0, 0.3),
           "cylinder": trimesh.creation.cylinder(0.3, 1.7), "cone": trimesh.creation.cone(0.5, 1.5),
           "capsule": trimesh.creation.capsule(1.2, 0.3)}
    meshes = {name: (mesh.vertices, mesh.faces) for name, mesh in out.items()}
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 11), np.linspace(0, 1, 11)), -1).reshape(-1, 2)
    cells = [(r * 11 + c, r * 11 + c + 1, (r + 1) * 11 + c, (r + 1) * 11 + c + 1) for r in range(10) for c in range(10)]
    meshes["plane"] = (np.insert(grid, 1, 0.0, axis=1), np.array([(a, b, c) for a, b, c, _ in cells]
                                                                 + [(b, d, c) for _, b, c, d in cells]))
    meshes["triangle"] = (np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]]))
    meshes["tetrahedron"] = (np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                             np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    corners = [(x, 0, z) for x in (-0.45, 0.45) for z in (-0.45, 0.45)]
    legs = [trimesh.creation.box((0.1, 1, 0.1)).apply_translation(corner) for corner in corners]
    table = trimesh.util.concatenate([trimesh.creation.box((1, 0.1, 1)).apply_translation((0, 0.5, 0)), *legs])
    meshes["table"] = (table.vertices, table.faces)
    snowman = trimesh.util.concatenate([trimesh.creation.icosphere(2, radius=r).apply_translation((0, y, 0))
                                        for r, y in ((0.4, 0), (0.3, 0.6), (0.2, 1.05))])
    meshes["snowman"] = (snowman.vertices, snowman.faces)
    sphere = trimesh.creation.icosphere(3)
    for i in range(6):  # smooth random blobs: a sphere pushed in and out by a few waves, stretched
        waves = rng.normal(size=(6, 3))
        bumps = sum(np.sin(sphere.vertices @ waves[j] * (1 + j) + rng.uniform(0, 6)) for j in range(6)) * 0.15
        meshes[f"blob {i}"] = (sphere.vertices * (1 + bumps)[:, None] * rng.uniform(0.5, 2, size=3), sphere.faces)
    for i in range(3):
        meshes[f"triangle soup {i}"] = (rng.normal(size=(300, 3)), rng.integers(0, 300, (500, 3)))
    return {name: (np.asarray(v, np.float64), np.asarray(f, np.int64)) for name, (v, f) in meshes.items()}


def anny_bodies() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Anny bodies (y up, metres) in the preset poses."""
    from meshpose.body import AnnyBody
    from meshpose.body.poses import PRESETS, preset_rotations
    from meshpose.meshkp.anny_parts import Y_UP

    body = AnnyBody()
    bodies = {}
    for pose in PRESETS:
        with torch.no_grad():
            out = body(preset_rotations(pose), torch.full((1, 6), 0.5))
        bodies[pose] = ((out.vertices[0] @ Y_UP.T).double().numpy(), body.faces.numpy())
    return bodies


def scores(mesh, seed: int) -> dict[str, float]:
    """Up axis -> humanness of a y-up mesh read along it."""
    import meshpose

    return {axis: meshpose.mesh_keypoints(mesh, up=axis, seed=seed)["humanness"] for axis in AXES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--human-seg", default=str(shared / "data" / "human_seg"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--auto", action="store_true", help="also score shapes and Anny with up=auto")
    parser.add_argument("--auto-only", action="store_true", help="only the up=auto scores")
    args = parser.parse_args(argv)
    if args.auto_only:
        print_auto_scores(args.seeds)
        return 0

    from meshpose.io.meshes import list_mesh_files, read_mesh
    from meshpose.mesh_keypoints import HUMANNESS_THRESHOLD, READINGS

    start = time.perf_counter()
    threshold = HUMANNESS_THRESHOLD
    human_files = list_mesh_files(Path(args.human_seg) / "meshes")
    humans = {p.name: read_mesh(p) for p in human_files}
    groups = {"human_seg": humans, "Anny": anny_bodies(), "not human": shapes()}
    table = {name: {key: [] for key in mesh_set} for name, mesh_set in groups.items()}
    for name, mesh_set in groups.items():
        for key, mesh in mesh_set.items():
            for seed in args.seeds:
                table[name][key].append(scores(mesh, seed))

    print(f"{READINGS} readings, seeds {args.seeds}, threshold {threshold}, {time.perf_counter() - start:.0f} s\n")
    print("| meshes | read along | scores | min | 1st pct | median | max | below threshold |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in ("human_seg", "Anny"):
        values = np.array([s["y"] for runs in table[name].values() for s in runs])
        print(f"| {name} | y (right) | {len(values)} | {values.min():.3f} | {np.percentile(values, 1):.3f} | "
              f"{np.median(values):.3f} | {values.max():.3f} | {int((values < threshold).sum())} |")
    values = np.array([s[axis] for runs in table["not human"].values() for s in runs for axis in AXES])
    print(f"| {len(groups['not human'])} non-human shapes | each axis | {len(values)} | {values.min():.3f} | "
          f"{np.percentile(values, 1):.3f} | {np.median(values):.3f} | {values.max():.3f} | "
          f"{int((values < threshold).sum())} |")

    print("\n| human_seg read along | median score | at or above threshold (accepted) "
          "| refused with `--up y` suggested |")
    print("|---|---:|---:|---:|")
    for axis in AXES[1:]:
        runs = [s for runs in table["human_seg"].values() for s in runs]
        accepted = sum(s[axis] >= threshold for s in runs)
        suggested = sum(s[axis] < threshold and max((a for a in AXES if a != axis), key=s.get) == "y"
                        and s["y"] >= threshold for s in runs)
        print(f"| {axis} | {np.median([s[axis] for s in runs]):.3f} | {accepted} of {len(runs)} | "
              f"{suggested} of {len(runs)} |")

    below = sorted(((s["y"], key) for key, runs in table["human_seg"].items() for s in runs if s["y"] < threshold))
    print("\nhuman_seg meshes below the threshold: " + (", ".join(f"{k} ({v:.2f})" for v, k in below) or "none"))
    worst = max(((s[a], f"{key} along {a}") for key, runs in table["not human"].items() for s in runs for a in AXES))
    print(f"highest non-human score: {worst[1]} ({worst[0]:.3f})")
    if args.auto:
        print_auto_scores(args.seeds)
    return 0


def print_auto_scores(seeds: list[int]) -> None:
    """Humanness with ``up="auto"`` of the shapes and the Anny bodies, each under a random 3D
    rotation per seed."""
    import meshpose
    from meshpose.mesh_keypoints import HUMANNESS_THRESHOLD
    from scipy.spatial.transform import Rotation

    start = time.perf_counter()
    print("\n| meshes, each under a random 3D rotation | read with | scores | min | median | max "
          "| at or above threshold |")
    print("|---|---|---:|---:|---:|---:|---:|")
    worst = (0.0, "")
    for name, group in (("non-human shapes", shapes()), ("Anny preset poses", anny_bodies())):
        values = []
        for key, (vertices, faces) in group.items():
            for seed in seeds:
                rotation = Rotation.random(random_state=seed).as_matrix()
                score = meshpose.mesh_keypoints((np.asarray(vertices) @ rotation.T, faces), seed=seed)["humanness"]
                values.append(score)
                if name == "non-human shapes":
                    worst = max(worst, (score, key))
        values = np.array(values)
        print(f"| {len(group)} {name} | auto | {len(values)} | {values.min():.3f} | "
              f"{np.median(values):.3f} | {values.max():.3f} | {int((values >= HUMANNESS_THRESHOLD).sum())} |")
    print(f"highest non-human score with up=auto: {worst[1]} ({worst[0]:.3f}); "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
