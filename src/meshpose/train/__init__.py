"""The training engine: YAML configs, exact resume, bounded checkpoints, logs, torchrun DDP.

    meshpose train configs/toy.yaml optim.lr=1e-4
    meshpose train --resume runs/toy-20261122-031500
    torchrun --nproc_per_node 2 -m meshpose train configs/toy.yaml
"""
from meshpose.train.config import Config, load_config
from meshpose.train.loop import train
from meshpose.train.tasks import TASKS

__all__ = ["Config", "TASKS", "load_config", "train"]
