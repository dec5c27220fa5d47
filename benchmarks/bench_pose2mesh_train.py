"""Where a Pose2Mesh training step spends its time (GPU): sample generation, one optimiser step,
and the sparse Laplacian product in COO vs CSR layout on the full Anny mesh.

    python benchmarks/bench_pose2mesh_train.py --batch 128          # on a GPU machine
    python benchmarks/bench_pose2mesh_train.py --device cpu --batch 2 --repeats 1

Prints milliseconds per call (mean of ``--repeats`` after a warm-up) and a torch.profiler table
of one step's CUDA kernels. The MeshNet stage (``data.stage=meshnet``) of configs/pose2mesh.yaml.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - start) / repeats * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    from meshpose.tasks import load_config
    from meshpose.tasks import TASKS

    device = args.device
    config = load_config("configs/pose2mesh.yaml", [f"run.device={device}"])
    task = TASKS["pose2mesh"]
    model = task.build_model(config.model, config.data).to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    generator = torch.Generator().manual_seed(0)
    batch = task.make_batch(config.data, generator, args.batch, device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(f"batch {args.batch}: make_batch {timed(lambda: task.make_batch(config.data, generator, args.batch, device), args.repeats):.1f} ms, "
          f"step {timed(step, args.repeats):.1f} ms")
    lap = model.meshnet.lap0
    coo = lap.to_sparse_coo()
    x = torch.randn(lap.shape[0], 4096, device=device)
    print(f"full-mesh Laplacian @ (N, 4096): COO {timed(lambda: torch.sparse.mm(coo, x), 20):.3f} ms, "
          f"CSR {timed(lambda: torch.sparse.mm(lap, x), 20):.3f} ms")
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        step()
        _sync()
    print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=12, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
