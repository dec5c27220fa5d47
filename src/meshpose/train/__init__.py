"""The training engine: YAML configs, exact resume, bounded checkpoints, logs, torchrun DDP.

It trains any object with the :class:`~meshpose.train.task.Task` interface and imports none:
the table of named tasks is :data:`meshpose.tasks.TASKS`.

    meshpose train configs/toy.yaml optim.lr=1e-4
    meshpose train --resume runs/toy-20261122-031500
    torchrun --nproc_per_node 2 -m meshpose train configs/toy.yaml
"""
from meshpose.train.config import Config, config_from_dict, load_config
from meshpose.train.loop import resume, train
from meshpose.train.task import Task

__all__ = ["Config", "Task", "config_from_dict", "load_config", "resume", "train"]
