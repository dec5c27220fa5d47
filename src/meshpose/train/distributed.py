"""Process-group set-up for ``torchrun``: one process per GPU (NCCL) or per CPU worker (gloo)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from meshpose.errors import MeshposeError


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def broadcast_object(self, value):
        """``value`` from rank 0, on every rank."""
        if not self.enabled:
            return value
        holder = [value]
        torch_dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_objects(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        torch_dist.all_gather_object(values, value)
        return values

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (so that all ranks stop together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MIN)
        return bool(value.item())

    def shutdown(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` -> this process's GPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MeshposeError("run.device is cuda but no GPU is available")
        return torch.device("cuda", local_rank if preference == "cuda" else torch.device(preference).index)
    return torch.device(preference)


def init_distributed(device_preference: str = "auto") -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
