"""Speed of 2D keypoints -> 3D body (regressor + Anny with the full mesh).

    python benchmarks/bench_predict.py                    # CPU: batch 1 latency, batch 256
    python benchmarks/bench_predict.py --device cuda --batch 1 16384

Median over ``--repeats`` calls of the regressor and the body forward (inputs prepared outside
the timed region, model loaded once), under ``torch.inference_mode``. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    from meshpose.body import AnnyBody
    from meshpose.models.regressor import to_slots
    from meshpose.models.inference import load_regressor

    regressor, body = load_regressor("default", args.device), AnnyBody().to(args.device)
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"{args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| batch | ms per call (median) | people/s |")
    print("|---:|---:|---:|")
    with torch.inference_mode():
        for batch in args.batch:
            keypoints = torch.rand(batch, 17, 3, generator=generator) * torch.tensor([400.0, 600.0, 1.0])
            keypoints = keypoints.to(args.device)
            times = []
            for i in range(args.repeats + 3):
                sync()
                start = time.perf_counter()
                out = regressor(to_slots(keypoints, "coco17"))
                body(out["pose"], out["shape"])
                sync()
                if i >= 3:
                    times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(f"| {batch} | {median * 1e3:.2f} | {batch / median:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
