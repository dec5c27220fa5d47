"""Training-engine throughput on GPUs: samples/s and GPU utilisation of the on-device lifting
task (Anny bodies generated on the GPU each step), in fp32, bf16, bf16 + torch.compile, and
with DistributedDataParallel over all visible GPUs at the same global batch.

    python benchmarks/bench_engine.py --steps 400 --batch 4096

Steady state = the second half of each run's logged steps (compile and warm-up excluded);
utilisation = mean of ``nvidia-smi`` samples (every 200 ms) over that window, all GPUs used.
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lift_toy.yaml"


class UtilisationSampler(threading.Thread):
    def __init__(self, period_s: float = 0.2):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, list[float]]] = []
        self.period_s, self.stopped = period_s, False

    def run(self):
        while not self.stopped:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True,
            ).stdout
            self.samples.append((time.time(), [float(v) for v in out.split()]))
            time.sleep(self.period_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(label: str, gpus: int, overrides: list[str], steps: int, batch: int, sampler, root: Path):
    run_dir = root / label.replace(" ", "_").replace("+", "p")
    args = ["-m", "meshpose", "train", str(CONFIG), f"train.steps_per_epoch={steps}", "train.epochs=1",
            f"train.batch_size={batch}", "train.log_every=20", f"checkpoint.every_steps={steps}",
            "run.device=cuda", *overrides, "--run-dir", str(run_dir)]
    if gpus > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}",
                   f"--master_port={free_port()}", *args]
    else:
        command = [sys.executable, *args]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(gpus)))})
    if result.returncode:
        print(result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{label} failed")
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    half = rows[len(rows) // 2:]
    first, last = half[0], half[-1]
    samples = (int(last["step"]) - int(first["step"])) * batch
    seconds = float(last["session_time_s"]) - float(first["session_time_s"])
    # The steady window in wall-clock time: the end of the run minus its duration.
    end = time.time()
    window = (end - seconds - 1.0, end - 1.0)
    utils = [sum(u[:gpus]) / gpus for t, u in sampler.samples if window[0] <= t <= window[1]]
    val = float(rows[-1]["loss"])
    return samples / seconds, (sum(utils) / len(utils) if utils else float("nan")), val, time.time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args(argv)
    import torch

    n_gpus = torch.cuda.device_count()
    sampler = UtilisationSampler()
    sampler.start()
    plans = [("1 GPU fp32", 1, ["train.amp=fp32"]), ("1 GPU bf16", 1, ["train.amp=bf16"]),
             ("1 GPU bf16+compile", 1, ["train.amp=bf16", "train.compile=true"])]
    if n_gpus > 1:
        plans.append((f"{n_gpus} GPUs DDP bf16", n_gpus, ["train.amp=bf16"]))
    print(f"{torch.cuda.get_device_name(0)} x{n_gpus}, torch {torch.__version__}; task lift_anny_toy, "
          f"global batch {args.batch}, {args.steps} steps\n")
    print("| run | samples/s (steady) | GPU util % | last train loss (m) | wall s |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as root:
        for label, gpus, overrides in plans:
            rate, util, loss, wall = run(label, gpus, overrides, args.steps, args.batch, sampler, Path(root))
            print(f"| {label} | {rate:,.0f} | {util:.0f} | {loss:.4f} | {wall:.0f} |", flush=True)
    sampler.stopped = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
