"""The training loop: one function, :func:`train`, for every model in meshpose.

Exactness: the data of step ``s`` comes from a generator seeded by ``(seed, s)``; everything
else that evolves (weights, optimizer, scheduler, AMP scaler, RNG states, best metric) is in the
checkpoint. A run resumed from its last checkpoint therefore replays the lost steps exactly; on
CPU the final weights are bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from meshpose.errors import MeshposeError
from meshpose.train.checkpoint import (
    CheckpointManager,
    code_version,
    rng_state,
    set_rng_state,
)
from meshpose.train.config import Config, config_from_dict, save_config
from meshpose.train.distributed import Distributed, init_distributed
from meshpose.train.logs import (
    CSVLogger,
    ProgressBar,
    TensorBoardWriter,
    write_metrics_json,
)
from meshpose.train.task import Task, process_rows


def build_optimizer(parameters, optim) -> torch.optim.Optimizer:
    """Adam, AdamW, RMSprop or SGD (with momentum) from the ``optim`` section."""
    parameters = list(parameters)
    if optim.name == "adam":
        return torch.optim.Adam(parameters, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                                weight_decay=optim.weight_decay)
    if optim.name == "adamw":
        return torch.optim.AdamW(parameters, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                                 weight_decay=optim.weight_decay)
    if optim.name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=optim.lr, momentum=optim.momentum, eps=optim.eps,
                                   weight_decay=optim.weight_decay)
    return torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum,
                           nesterov=optim.nesterov, weight_decay=optim.weight_decay)


def lr_factor(schedule, step: int, total_steps: int, base_lr: float) -> float:
    """Learning-rate multiplier after ``step`` optimisation steps (all schedules but plateau):
    linear warm-up over ``warmup_steps``, then constant, step, multistep or cosine decay to
    ``min_lr``."""
    warmup = schedule.warmup_steps
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule.name == "step":
        return ramp * schedule.gamma ** (step // schedule.step_size)
    if schedule.name == "multistep":
        return ramp * schedule.gamma ** sum(step >= m for m in schedule.milestones)
    if schedule.name == "cosine":
        span = max(1, total_steps - warmup)
        progress = min(1.0, max(0.0, (step - warmup) / span))
        floor = schedule.min_lr / base_lr
        return ramp * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    return ramp


def build_scheduler(optimizer, config: Config, total_steps: int):
    """(scheduler, stepped every step?) for the ``schedule`` section."""
    schedule = config.schedule
    if schedule.name == "plateau":
        if schedule.warmup_steps:
            raise MeshposeError("schedule.warmup_steps is not supported with the plateau schedule")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=schedule.mode, factor=schedule.factor, patience=schedule.patience
        ), False
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, config.optim.lr)
    ), True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator that makes step ``step``'s data: same on every process and after resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def new_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.run.output_dir) / f"{config.run.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def train(config: Config, task: Task, run_dir: str | Path | None = None) -> Path:
    """Train ``task`` (the task named by ``config.task``) with ``config`` in a new run folder
    (``run_dir``, default ``run.output_dir/run.name-<time>``); returns the run folder.

    The run folder gets ``config.yaml`` (resolved), ``checkpoints/``, ``metrics.csv``,
    ``tensorboard/``, ``metrics.json`` (final) and ``model.pt`` (final weights).
    """
    dist = init_distributed(config.run.device)
    try:
        run_dir = dist.broadcast_object(Path(run_dir) if run_dir else new_run_dir(config))
        if dist.is_main:
            if run_dir.exists() and any(run_dir.iterdir()):
                raise MeshposeError("run folder exists and is not empty; use --resume", run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        dist.barrier()
        return _run(config, task, Path(run_dir), False, dist)
    finally:
        dist.shutdown()


def resume(run_dir: str | Path, tasks: Mapping[str, Task]) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint with its saved config; its task is
    looked up in ``tasks`` (task name -> task). Returns the run folder."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise MeshposeError("not a run folder (no config.yaml)", run_dir)
    config = config_from_dict(yaml.safe_load(saved.read_text()), source=str(saved), tasks=tasks)
    if CheckpointManager(run_dir).last() is None:
        raise MeshposeError("no checkpoint to resume from", run_dir)
    dist = init_distributed(config.run.device)
    try:
        return _run(config, tasks[config.task], run_dir, True, dist)
    finally:
        dist.shutdown()


def _run(config, task, run_dir: Path, resuming: bool, dist: Distributed) -> Path:
    device = dist.device
    seed_everything(config.run.seed + dist.rank)
    steps_per_epoch, total = config.train.steps_per_epoch, config.train.epochs * config.train.steps_per_epoch
    if config.train.batch_size % dist.world_size:
        raise MeshposeError(
            f"train.batch_size {config.train.batch_size} does not split over {dist.world_size} processes"
        )

    model = task.build_model(config.model, config.data).to(device)
    optimizer = build_optimizer(model.parameters(), config.optim)
    scheduler, per_step = build_scheduler(optimizer, config, total)
    amp = config.train.amp if device.type == "cuda" else "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
                if amp != "fp32" else nullcontext())
    manager = CheckpointManager(run_dir, keep=config.checkpoint.keep)
    step, best = 0, None
    if resuming:
        state = manager.load_last(map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        states = state["rng"]
        set_rng_state(states[dist.rank] if dist.rank < len(states) else states[0])
        step, best = state["step"], state["best"]

    trained = model
    if dist.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.train.compile:
        trained = torch.compile(trained)

    csv = val_csv = tensorboard = progress = None
    if dist.is_main:
        csv, val_csv = CSVLogger(run_dir / "metrics.csv"), CSVLogger(run_dir / "validation.csv")
        if resuming:
            csv.truncate_after(step)
            val_csv.truncate_after(step)
        # On resume, TensorBoard drops the points of the replayed steps from earlier files.
        tensorboard = TensorBoardWriter(run_dir / "tensorboard", purge_step=step + 1 if resuming else None)
        progress = ProgressBar(total=total, initial=step, desc=config.run.name)

    def checkpoint_state() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": dist.gather_objects(rng_state()),
            "step": step,
            "epoch": step // steps_per_epoch,
            "best": best,
            "config": config.to_dict(),
            "code_version": code_version(),
        }

    rows = process_rows(config.train.batch_size, dist.rank, dist.world_size)
    started, samples, last_metrics, train_scalars = time.perf_counter(), 0, {}, {}
    last_loss = None
    while step < total:
        model.train()
        batch = task.make_batch(config.data, batch_generator(config.run.seed, step),
                                config.train.batch_size, device, rows)
        with autocast:
            loss, train_scalars = task.loss(trained, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.train.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        last_loss = loss.detach()
        if per_step:
            scheduler.step()
        step += 1
        samples += config.train.batch_size

        epoch_end = step % steps_per_epoch == 0
        if dist.is_main and (step % config.train.log_every == 0 or epoch_end or step == total):
            elapsed = time.perf_counter() - started
            row = {"step": step, "epoch": step / steps_per_epoch, "loss": float(loss.detach()),
                   "lr": optimizer.param_groups[0]["lr"], "samples_per_s": samples / max(elapsed, 1e-9),
                   "session_time_s": elapsed}
            row.update({f"train/{k}": v for k, v in train_scalars.items()})
            csv.log(row)
            tensorboard.add_scalars({k: v for k, v in row.items() if k != "step"}, step)
        if dist.is_main:
            progress.update(1, samples=config.train.batch_size, loss=float(loss.detach()),
                            lr=optimizer.param_groups[0]["lr"])

        is_best = False
        if epoch_end or (config.train.val_every and step % config.train.val_every == 0):
            model.eval()
            last_metrics = task.validate(model, config.data, device)
            model.train()
            if not per_step:
                scheduler.step(last_metrics[config.schedule.metric])
            metric = config.checkpoint.best_metric
            if metric and _better(last_metrics.get(metric), best, config.checkpoint.best_mode):
                best, is_best = last_metrics[metric], True
            if dist.is_main:
                val_csv.log({"step": step, **last_metrics})
                tensorboard.add_scalars(last_metrics, step)

        if step % config.checkpoint.every_steps == 0 or epoch_end or step == total or is_best:
            state = checkpoint_state()  # every rank joins the RNG gather
            if dist.is_main:
                manager.save(state, step, best=is_best)
            dist.barrier()

    if not last_metrics:  # resumed after the last step's checkpoint: validate the final weights
        model.eval()
        last_metrics = task.validate(model, config.data, device)
    if dist.is_main:
        progress.close()
        tensorboard.close()
        elapsed = time.perf_counter() - started
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, run_dir / "model.pt")
        write_metrics_json(run_dir / "metrics.json", {
            "steps": step,
            "epochs": config.train.epochs,
            "final_train_loss": None if last_loss is None else float(last_loss),  # None: no step left
            **last_metrics,
            f"best/{config.checkpoint.best_metric}": best,
            "samples_per_s_this_session": samples / max(elapsed, 1e-9),
            "processes": dist.world_size,
            "checkpoint_disk_bytes": manager.disk_bytes(),
            "code_version": code_version(),
        })
    dist.barrier()
    return run_dir
