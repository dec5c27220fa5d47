"""Speed of the data supply: the synthetic sample engine (full meshes) and retargeting.

    python benchmarks/bench_data.py                                  # CPU
    python benchmarks/bench_data.py --device cuda --batch 16384      # one GPU
    python benchmarks/bench_data.py --device cuda --retarget-frames 10000

Samples: median over ``--repeats`` batches (a new random batch each time) of the time to draw a
batch with vertices, 2D keypoints with detector noise, 3D joints and cameras. Retargeting:
wall time to fit a synthetic take of ``--retarget-frames`` frames (Anny's own motion seen as
mocap points) with the default options. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--retarget-frames", type=int, default=0)
    args = parser.parse_args(argv)

    from meshpose.data.samples import SampleEngine

    engine = SampleEngine(device=args.device)
    generator = torch.Generator(device=args.device).manual_seed(0)
    for _ in range(2):
        engine.sample(args.batch, generator)
    times = []
    for _ in range(args.repeats):
        _sync(args.device)
        start = time.perf_counter()
        engine.sample(args.batch, generator)
        _sync(args.device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}\n")
    print("| batch | ms per batch (median) | samples/s |")
    print("|---:|---:|---:|")
    print(f"| {args.batch} | {median * 1e3:.1f} | {args.batch / median:,.0f} |")

    if args.retarget_frames:
        import roma

        from meshpose.body import POSE_JOINTS
        from meshpose.data.retarget import RetargetOptions, Retargeter

        retargeter = Retargeter(RetargetOptions(device=args.device))
        generator = torch.Generator().manual_seed(1)
        # A smooth synthetic take: a random walk in pose space.
        steps = 0.05 * torch.randn(args.retarget_frames, len(POSE_JOINTS), 3, generator=generator)
        rotvec = steps.cumsum(0).remainder(2.0) - 1.0
        with torch.no_grad():
            points = retargeter._points(rotvec.to(args.device), torch.full((1, 6), 0.5, device=args.device))
        _sync(args.device)
        start = time.perf_counter()
        result = retargeter.fit(points)
        _sync(args.device)
        wall = time.perf_counter() - start
        print(f"\n| retarget frames | wall s | median error mm |\n|---:|---:|---:|\n"
              f"| {args.retarget_frames} | {wall:.1f} | {float(result.errors_mm[:, 1:].median()):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
