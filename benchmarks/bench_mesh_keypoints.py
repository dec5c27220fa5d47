"""Speed of 3D mesh -> labelled joints (the shipped point model), per mesh.

    python benchmarks/bench_mesh_keypoints.py                  # 2 CPU cores, a 20,000-vertex mesh
    python benchmarks/bench_mesh_keypoints.py --vertices 5000 20000 100000
    python benchmarks/bench_mesh_keypoints.py --model other.safetensors

The meshes are Anny bodies in a walking pose, subdivided (some faces split) up to the asked
vertex count. Timed: ``meshpose.mesh_keypoints((vertices, faces))`` from arrays in memory
(surface sampling, the network, the conversion back), model loaded once; median of
``--repeats`` calls: told the up axis (``up="y"``) and with ``up="auto"`` on the mesh under a
random rotation (the up found by the model, or searched for). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch


def body_mesh(target_vertices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An Anny body (y up) with about ``target_vertices`` vertices (at least 13,718, Anny's own count)."""
    import trimesh

    from meshpose.body import AnnyBody
    from meshpose.body.poses import preset_rotations
    from meshpose.meshkp.anny_parts import Y_UP

    body = AnnyBody()
    with torch.no_grad():
        out = body(preset_rotations("walk"), torch.full((1, 6), 0.5))
    vertices = (out.vertices[0] @ Y_UP.T).double().numpy()
    faces = body.faces.numpy()
    rng = np.random.default_rng(seed)
    while len(vertices) < target_vertices:
        missing = target_vertices - len(vertices)
        chosen = rng.choice(len(faces), size=min(len(faces), max(1, missing // 3)), replace=False)
        vertices, faces = trimesh.remesh.subdivide(vertices, faces, face_index=chosen)
    return vertices, faces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vertices", type=int, nargs="+", default=[20000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    args = parser.parse_args(argv)

    import meshpose
    from meshpose.meshkp.model_file import load_mesh_keypoint_model

    from scipy.spatial.transform import Rotation

    load_mesh_keypoint_model(args.model, args.device)
    print(f"{args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, model {args.model}\n")
    print("| mesh vertices | faces | ms per mesh, up given (median) | ms per mesh, any rotation, auto (median) |")
    print("|---:|---:|---:|---:|")
    for count in args.vertices:
        vertices, faces = body_mesh(count)
        turned = vertices @ Rotation.random(random_state=0).as_matrix().T
        medians = []
        for mesh, up in (((vertices, faces), "y"), ((turned, faces), "auto")):
            times = []
            for i in range(args.repeats + 2):
                start = time.perf_counter()
                meshpose.mesh_keypoints(mesh, model=args.model, up=up, device=args.device)
                if i >= 2:
                    times.append(time.perf_counter() - start)
            medians.append(statistics.median(times) * 1e3)
        print(f"| {len(vertices):,} | {len(faces):,} | {medians[0]:.1f} | {medians[1]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
