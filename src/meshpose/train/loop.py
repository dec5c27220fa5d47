"""The training loop: one function, :func:`train`, for every model in meshpose.

Exactness: the data of step ``s`` comes from a generator seeded by ``(seed, s)``; everything
else that evolves (weights, optimizer, scheduler, AMP scaler, RNG states, best metric) is in the
checkpoint. A run resumed from its last checkpoint therefore replays the lost steps exactly; on
CPU the final weights are bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import math
import numbers
import os
import random
import shutil
import time
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line
from meshpose.train.checkpoint import (
    CheckpointManager,
    atomic_torch_save,
    code_version,
    load_model_weights,
    rng_state,
    set_rng_state,
)
from meshpose.train.config import Config, read_run_config, save_config, short
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
    ``tensorboard/``, ``metrics.json`` (final) and ``model.pt`` (final weights). If the run fails
    before its first checkpoint, the folder (and any parent folder made for it) is removed.
    """
    dist = init_distributed(config.run.device)
    try:
        run_dir = Path(dist.broadcast_object(Path(run_dir) if run_dir else new_run_dir(config)))
        undo = _make_run_dir(run_dir) if dist.is_main else None
        try:
            if dist.is_main:
                save_config(config, run_dir / "config.yaml")
            dist.barrier()
            return _run(config, task, run_dir, False, dist)
        except BaseException:
            if undo is not None and not CheckpointManager(run_dir).step_files():
                undo()
            raise
    finally:
        dist.shutdown()


def _make_run_dir(run_dir: Path):
    """Create ``run_dir`` (an empty existing folder is taken as is); return a function that
    removes what was created. A file, or a folder that is not empty, is refused."""
    if run_dir.exists() or run_dir.is_symlink():
        if not run_dir.is_dir():
            raise MeshposeError("the run folder exists and is not a folder", run_dir)
        if any(run_dir.iterdir()):
            raise MeshposeError("run folder exists and is not empty; use --resume", run_dir)
        times = run_dir.stat()
        return lambda: _remove_contents(run_dir, (times.st_atime_ns, times.st_mtime_ns))
    made = [run_dir]  # the folders this creates, deepest first
    while not made[-1].parent.exists() and made[-1].parent != made[-1]:
        made.append(made[-1].parent)
    try:
        run_dir.mkdir(parents=True)
    except OSError as error:
        raise MeshposeError(f"cannot create the run folder: {error.strerror or one_line(error, 60)}",
                            run_dir) from None

    def undo() -> None:
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in made[1:]:  # only while empty: another run may have started in them
            try:
                parent.rmdir()
            except OSError:
                break

    return undo


def _remove_contents(folder: Path, times: tuple[int, int]) -> None:
    """Empty ``folder`` and give it back its access and modification times (ns)."""
    for item in folder.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
    os.utime(folder, ns=times)


def resume(run_dir: str | Path, tasks: Mapping[str, Task]) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint with its saved config; its task is
    looked up in ``tasks`` (task name -> task). Returns the run folder.

    Raises:
        MeshposeError: naming the path: not a run folder, a damaged ``config.yaml``, no
            checkpoint, or a damaged, unsafe or unfitting checkpoint.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir, tasks)
    if CheckpointManager(run_dir).last() is None:
        raise MeshposeError("no checkpoint to resume from", run_dir)
    dist = init_distributed(config.run.device)
    try:
        return _run(config, tasks[config.task], run_dir, True, dist)
    finally:
        dist.shutdown()


_STATE_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError, OverflowError)


def _restore(state: dict, path: Path, model, optimizer, scheduler, scaler, rank: int,
             config_lr: float) -> tuple[int, float | None]:
    """Load a checkpoint's states into the run's objects; ``(step, best)``. The optimizer's
    settings are those of the run's config (see :func:`_follow_config_optim`).

    Raises:
        InputFileError: naming ``path``: a state of another model, optimizer or schedule, or
            not of a meshpose checkpoint's form.
    """
    load_model_weights(model, state["model"], path)
    try:
        groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        _check_optimizer_state(optimizer, groups)
        saved, current = state["scheduler"], scheduler.state_dict()
        if not isinstance(saved, dict) or not set(saved) <= set(current) or any(
                not _same_kind(saved[k], current[k]) for k in saved):
            raise ValueError("the learning-rate schedule's state is of another schedule")
        scheduler.load_state_dict(saved)
        scaler.load_state_dict(state["scaler"])
        _follow_config_optim(optimizer, scheduler, groups, state.get("config"), config_lr)
        states = state["rng"]
        if not isinstance(states, list) or not states:
            raise ValueError("no random-number generator states")
        set_rng_state(states[rank] if rank < len(states) else states[0])
        best = state["best"]
        if best is not None and (isinstance(best, bool) or not isinstance(best, numbers.Real)):
            raise ValueError(f"best metric {short(best)}")
    except _STATE_ERRORS as error:
        raise InputFileError(f"the checkpoint does not fit this run ({type(error).__name__}: "
                             f"{one_line(error, 100)})", path) from None
    return state["step"], best


def _follow_config_optim(optimizer, scheduler, groups: list[dict], saved_config, config_lr: float) -> None:
    """Make a restored optimizer follow the run's ``optim`` section, so that a run stopped by a
    non-finite loss can be resumed after editing its ``config.yaml`` (e.g. a lower ``optim.lr``).

    ``groups`` are the settings before loading (from the config). The learning rate keeps its
    schedule: the restored rate is scaled by ``config_lr`` / the checkpoint's ``optim.lr``. With
    an unchanged config nothing changes (exact resume).
    """
    for group, fresh in zip(optimizer.param_groups, groups):
        for key, value in fresh.items():
            if key not in ("lr", "initial_lr"):
                group[key] = value
    saved_lr = (saved_config or {}).get("optim", {}).get("lr") if isinstance(saved_config, dict) else None
    if not isinstance(saved_lr, float) or not math.isfinite(saved_lr) or saved_lr <= 0 or saved_lr == config_lr:
        return
    ratio = config_lr / saved_lr
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * ratio
        if "initial_lr" in group:
            group["initial_lr"] = config_lr
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [config_lr for _ in scheduler.base_lrs]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _same_kind(saved, current) -> bool:
    """Values of one kind: numbers (not bools) count as one kind, None matches anything, lists
    and tuples match item by item."""
    if saved is None or current is None:
        return True
    if isinstance(saved, bool) or isinstance(current, bool):
        return type(saved) is type(current)
    if isinstance(saved, numbers.Real) and isinstance(current, numbers.Real):
        return True
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        return len(saved) == len(current) and all(_same_kind(a, b) for a, b in zip(saved, current))
    return type(saved) is type(current)


def _check_optimizer_state(optimizer, groups: list[dict]) -> None:
    """The loaded settings are of the kinds of ``groups`` (the settings before loading), and every
    per-parameter state tensor (moments) has its parameter's shape."""
    for group, before in zip(optimizer.param_groups, groups):
        for key, value in before.items():
            if not _same_kind(group.get(key), value):
                raise ValueError(f"optimizer setting {key!r} is {short(group.get(key))}")
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != parameter.shape:
                    raise ValueError(f"optimizer state {name!r} of shape {tuple(value.shape)} for a "
                                     f"parameter of shape {tuple(parameter.shape)}")


_KEPT = ("the last checkpoint, if any, is kept: edit the run's config.yaml, e.g. a lower optim.lr, "
         "and resume")


def _check_finite_weights(model: nn.Module, step: int, run_dir: Path) -> None:
    """Stop before a checkpoint or ``model.pt`` of non-finite weights is written."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise MeshposeError(f"the weights are not finite after step {step} ({short(name)}): stopped "
                                f"without writing them ({_KEPT})", run_dir)


def _open_logs(run_dir: Path, step: int, resuming: bool, total: int, desc: str):
    """``(metrics CSV, validation CSV, TensorBoard writer, progress bar)``; damaged logs of a
    resumed run are one-line errors."""
    csv, val_csv = CSVLogger(run_dir / "metrics.csv"), CSVLogger(run_dir / "validation.csv")
    if resuming:
        for logger in (csv, val_csv):
            try:
                logger.truncate_after(step)
            except (ValueError, OSError, UnicodeDecodeError) as error:
                raise InputFileError(f"damaged training log ({one_line(error, 80)})", logger.path) from None
    try:
        # On resume, TensorBoard drops the points of the replayed steps from earlier files.
        tensorboard = TensorBoardWriter(run_dir / "tensorboard", purge_step=step + 1 if resuming else None)
    except OSError as error:
        raise InputFileError(f"cannot write TensorBoard logs: {error.strerror or one_line(error, 60)}",
                             run_dir / "tensorboard") from None
    return csv, val_csv, tensorboard, ProgressBar(total=total, initial=step, desc=desc)


def _validation_metric(metrics: dict, key: str, name: str, config: Config) -> float | None:
    """``metrics[name]``; a name the task does not report is a config error (``key`` names it)."""
    if name not in metrics:
        raise MeshposeError(f"'{key}' is {short(name)}, not a validation metric of this task "
                            f"({', '.join(sorted(metrics))})", config.source or None)
    return metrics[name]


def _run(config, task, run_dir: Path, resuming: bool, dist: Distributed) -> Path:
    device = dist.device
    seed_everything(config.run.seed + dist.rank)
    total = config.train.epochs * config.train.steps_per_epoch
    if config.train.batch_size % dist.world_size:
        raise MeshposeError(
            f"train.batch_size {config.train.batch_size} does not split over {dist.world_size} processes"
        )

    manager = CheckpointManager(run_dir, keep=config.checkpoint.keep)
    state = path = None
    if resuming:  # read (and check) the checkpoint before building anything
        state, path = manager.load_last(map_location=device)
    model = task.build_model(config.model, config.data).to(device)
    optimizer = build_optimizer(model.parameters(), config.optim)
    scheduler, per_step = build_scheduler(optimizer, config, total)
    amp = config.train.amp if device.type == "cuda" else "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
                if amp != "fp32" else nullcontext())
    step, best = 0, None
    if resuming:
        step, best = _restore(state, path, model, optimizer, scheduler, scaler, dist.rank, config.optim.lr)
        del state

    trained = model
    if dist.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.train.compile:
        trained = torch.compile(trained)

    logs = (None, None, None, None)
    try:
        if dist.is_main:
            logs = _open_logs(run_dir, step, resuming, total, config.run.name)
        return _loop(config, task, run_dir, dist, model, trained, optimizer, scheduler, per_step, scaler,
                     autocast, manager, step, best, logs)
    finally:
        csv, val_csv, tensorboard, progress = logs
        for log in (progress, tensorboard, csv, val_csv):
            if log is not None:
                log.close()


def _loop(config, task, run_dir, dist, model, trained, optimizer, scheduler, per_step, scaler, autocast,
          manager, step, best, logs) -> Path:
    """The optimisation steps from ``step`` to the end, then the final files."""
    device = dist.device
    csv, val_csv, tensorboard, progress = logs
    steps_per_epoch, total = config.train.steps_per_epoch, config.train.epochs * config.train.steps_per_epoch

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
        if not dist.all_true(bool(torch.isfinite(loss.detach()).all())):
            value = float(loss.detach())
            what = value if not math.isfinite(value) else "not finite on another process"
            raise MeshposeError(f"the training loss is {what} at step {step + 1}: stopped without updating or "
                                f"writing the weights ({_KEPT})", run_dir)
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
                scheduler.step(_validation_metric(last_metrics, "schedule.metric", config.schedule.metric, config))
            metric = config.checkpoint.best_metric
            if metric:
                value = _validation_metric(last_metrics, "checkpoint.best_metric", metric, config)
                if _better(value, best, config.checkpoint.best_mode):
                    best, is_best = value, True
            if dist.is_main:
                val_csv.log({"step": step, **last_metrics})
                tensorboard.add_scalars(last_metrics, step)

        if step % config.checkpoint.every_steps == 0 or epoch_end or step == total or is_best:
            _check_finite_weights(model, step, run_dir)
            state = checkpoint_state()  # every rank joins the RNG gather
            if dist.is_main:
                manager.save(state, step, best=is_best)
            dist.barrier()

    if not last_metrics:  # resumed after the last step's checkpoint: validate the final weights
        model.eval()
        last_metrics = task.validate(model, config.data, device)
    _check_finite_weights(model, step, run_dir)
    if dist.is_main:
        progress.close()
        tensorboard.close()
        elapsed = time.perf_counter() - started
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, run_dir / "model.pt")
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
