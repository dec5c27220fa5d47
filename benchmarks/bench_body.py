"""Speed of the Anny body forward: meshpose's own against the anny package.

    python benchmarks/bench_body.py                      # CPU, batches 1 and 256
    python benchmarks/bench_body.py --device cuda --batch 1 256 16384

Each row is the median over ``--repeats`` timed calls after warm-up, with random reduced poses
and phenotypes (a new batch per call), full mesh included, under ``torch.inference_mode``.
The anny rows (when the package is installed) use the same inputs on ``anny.Anny()`` in
float32; "ratio" is anny's time over meshpose's, measured in the same run.
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_calls(function, make_inputs, device: str, repeats: int, warmup: int = 3) -> float:
    """Median seconds of ``function(*make_inputs())``, inputs made outside the timed region."""
    for _ in range(warmup):
        function(*make_inputs())
    times = []
    for _ in range(repeats):
        inputs = make_inputs()
        _sync(device)
        start = time.perf_counter()
        function(*inputs)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_inputs(batch: int, device: str, generator: torch.Generator):
    import roma

    from meshpose.body import POSE_JOINTS

    rotvec = 0.4 * torch.randn(batch, len(POSE_JOINTS), 3, generator=generator)
    pose = roma.rotvec_to_rotmat(rotvec).to(device)
    shape = torch.rand(batch, 6, generator=generator).to(device)
    translation = torch.randn(batch, 3, generator=generator).to(device)
    return pose, shape, translation


def anny_runner(device: str):
    """A function running anny's own forward on the reduced pose, or None without anny."""
    try:
        import anny
    except ImportError:
        return None
    from meshpose.body import REDUCED_POSE

    model = anny.Anny().to(device=device, dtype=torch.float32)
    index = {name: i for i, name in enumerate(model.bone_labels)}
    columns = [(p, index[bone]) for p, bones in enumerate(REDUCED_POSE.values()) for bone in bones]
    params, bones = (torch.tensor(c, device=device) for c in zip(*columns))

    def run(pose, shape, translation):
        deltas = torch.eye(4, device=device).repeat(pose.shape[0], len(model.bone_labels), 1, 1)
        deltas[:, bones, :3, :3] = pose[:, params]
        deltas[:, 0, :3, 3] = translation
        return model(pose_parameters=deltas, phenotype_kwargs=shape)["vertices"]

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-anny", action="store_true", help="skip the anny comparison")
    args = parser.parse_args(argv)

    from meshpose.body import AnnyBody

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    body = AnnyBody().to(args.device)
    anny_run = None if args.no_anny else anny_runner(args.device)

    def ours(pose, shape, translation):
        return body(pose, shape, translation).vertices

    def ours_joints(pose, shape, translation):
        return body(pose, shape, translation, vertices=False).joints

    print(f"device: {args.device} ({_device_name(args.device)}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, repeats {args.repeats} (median)\n")
    print("| batch | meshpose ms | meshpose bodies/s | joints only ms | anny ms | anny bodies/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for batch in args.batch:
            make = lambda: random_inputs(batch, args.device, generator)  # noqa: E731
            repeats = max(3, args.repeats if batch <= 4096 else args.repeats // 3)
            t_ours = time_calls(ours, make, args.device, repeats)
            t_joints = time_calls(ours_joints, make, args.device, repeats)
            if anny_run is not None:
                t_anny = time_calls(anny_run, make, args.device, max(3, repeats // 3))
                anny_cells = f"{t_anny * 1e3:.2f} | {batch / t_anny:,.0f} | {t_anny / t_ours:.1f}x"
            else:
                anny_cells = "- | - | -"
            print(f"| {batch} | {t_ours * 1e3:.2f} | {batch / t_ours:,.0f} | "
                  f"{t_joints * 1e3:.2f} | {anny_cells} |")
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
