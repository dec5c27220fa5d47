"""Crash-proof checkpoints with bounded disk use, and the safe reading of a run's weights.

A run folder holds ``checkpoints/step-00001200.pt`` files, a ``checkpoints/last`` text file
naming the newest complete one, and ``checkpoints/best.pt``. Every file is written to a
temporary name, flushed to disk and renamed, so a crash (even SIGKILL in the middle of a save)
leaves the previous checkpoint and pointer intact. At most ``keep`` step checkpoints are kept;
disk use is bounded by ``(keep + 1) x`` one checkpoint's size.

A checkpoint holds the model, optimizer, scheduler and AMP-scaler states, every RNG state
(python, numpy, torch CPU, torch CUDA), the step, epoch, best metric, the resolved config and
the code version -- tensors and plain Python values only, so that it loads with
``torch.load(weights_only=True)``: a run folder from someone else cannot run code. Every file of
a run folder is read through :func:`load_weights_file`, which never unpickles anything else,
and ``last`` may only name a ``step-<digits>.pt`` file of the checkpoints folder.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line
from meshpose.io.atomic import atomic_write, atomic_write_text
from meshpose.train.config import require_run_dir, short
from meshpose.version import __version__

_STEP_FILE = re.compile(r"step-([0-9]{1,12})\.pt")
_POINTER_BYTES = 64  #: "step-00001200.pt\n" is 17 bytes

def code_version() -> str:
    """meshpose's version, plus the git commit (and '+dirty') when run from a checkout."""
    version = __version__
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=source, capture_output=True,
            text=True, timeout=5,
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                capture_output=True, text=True, timeout=5,
            )
            version += f"+g{commit.stdout.strip()}" + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def rng_state() -> dict:
    """Every random-number generator state the engine depends on, as tensors and plain values
    (numpy's key array becomes an int64 tensor), so that it loads with ``weights_only=True``."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None or a float)
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s output. The generator states must be CPU byte tensors, but a
    checkpoint loaded with ``map_location="cuda"`` puts them on the GPU, so they are moved back.

    Raises:
        TypeError, ValueError, KeyError, RuntimeError: ``state`` is not of that form.
    """
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), None if gauss is None else float(gauss)))
    numpy = state["numpy"]
    keys = numpy["keys"].cpu().numpy()
    if keys.shape != (624,) or keys.min() < 0 or keys.max() >= 2**32:
        raise ValueError("numpy RNG keys must be 624 values of 32 bits")
    np.random.set_state((str(numpy["kind"]), keys.astype(np.uint32), int(numpy["position"]),
                         int(numpy["has_gauss"]), float(numpy["cached_gaussian"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def require_file(path: Path, kind: str) -> Path:
    """``path`` if it is a regular file (not a folder, device or pipe), else one-line error."""
    if not path.exists():
        raise InputFileError(f"{kind} not found", path)
    if path.is_dir():
        raise InputFileError(f"is a folder, expected a {kind}", path)
    if not path.is_file():
        raise InputFileError(f"not a regular file, expected a {kind}", path)
    return path


def load_weights_file(path: str | Path, map_location: Any = "cpu", kind: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain Python values, never code.

    Raises:
        InputFileError: naming ``path``: missing, not a regular file, not a PyTorch file, damaged,
            or holding other Python objects (a file from an older meshpose version, or a file
            crafted to run code when unpickled: it is not loaded).
    """
    path = require_file(Path(path), kind)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: not the user's concern
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():
            raise InputFileError(f"{kind} holds Python objects that meshpose does not load (a file from an "
                                 "older meshpose version, or not a meshpose file)", path) from None
        raise InputFileError(f"not a readable {kind} (not a PyTorch weights file)", path) from None
    except MemoryError:
        raise InputFileError(f"not a readable {kind} (too large for memory)", path) from None
    except Exception as error:  # noqa: BLE001 - a damaged zip or pickle raises almost anything
        raise InputFileError(f"not a readable {kind} ({type(error).__name__}: "
                             f"{one_line(error, 80)})", path) from None


def check_state_dict(state: Any, path: Path, what: str = "model weights") -> dict[str, torch.Tensor]:
    """``state`` if it is a mapping of names to finite tensors, else one-line error naming ``path``."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputFileError(f"holds no {what} (a mapping of names to tensors)", path)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputFileError(f"{what} hold non-finite values ({short(name)})", path)
    return state


def load_model_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``; weights of another shape or model are one-line errors."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise InputFileError(f"the weights do not fit this run's model ({one_line(error, 120)})", path) from None


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` through :func:`meshpose.io.atomic.atomic_write` (temporary file, fsync,
    rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            pause = os.environ.get("MESHPOSE_TEST_CHECKPOINT_PAUSE")
            if pause:  # lets tests kill a process in the middle of a save

                handle.flush()
                time.sleep(float(pause))

    atomic_write(path, write)


class CheckpointManager:
    """Saves and finds the checkpoints of one run folder.

    Args:
        run_dir: the run folder.
        keep: how many step checkpoints to keep (the newest ones).
    """

    def __init__(self, run_dir: str | Path, keep: int = 3):
        self.folder = Path(run_dir) / "checkpoints"
        self.keep = keep

    def save(self, state: dict, step: int, best: bool = False) -> Path:
        """Write ``step-N.pt``, point ``last`` at it, copy to ``best.pt`` if asked, prune."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{step:08d}.pt"
        atomic_torch_save(state, path)
        self._write_pointer(path.name)
        if best:
            atomic_torch_save(state, self.folder / "best.pt")
        self._prune()
        return path

    def save_best(self, state: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "best.pt"
        atomic_torch_save(state, path)
        return path

    def step_files(self) -> list[Path]:
        """Complete step checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _STEP_FILE.fullmatch(p.name)) and p.is_file()]
        return [p for _, p in sorted(found)]

    def last(self) -> Path | None:
        """The newest complete checkpoint (the one ``last`` names), or None.

        Raises:
            InputFileError: ``last`` is not a regular file or names anything but a
                ``step-<digits>.pt`` file of this folder.
        """
        pointer = self.folder / "last"
        if pointer.exists():  # written after its file, so the file it names must be there
            return self.folder / self._read_pointer(pointer)
        files = self.step_files()  # killed between the first save and its pointer
        return files[-1] if files else None

    @staticmethod
    def _read_pointer(pointer: Path) -> str:
        require_file(pointer, "pointer to the newest checkpoint")
        try:
            with open(pointer, "rb") as handle:
                data = handle.read(_POINTER_BYTES + 1)
        except OSError as error:
            raise InputFileError(f"cannot read: {error.strerror or one_line(error, 60)}", pointer) from None
        name = data.decode("utf-8", errors="replace").strip()
        if len(data) > _POINTER_BYTES or not _STEP_FILE.fullmatch(name):
            raise InputFileError(f"must name a step-<digits>.pt file of its folder, holds {short(name)}", pointer)
        return name

    def load_last(self, map_location=None) -> tuple[dict, Path]:
        """The newest checkpoint (checked: a mapping with model weights and an integer step) and
        its path.

        Raises:
            MeshposeError: no checkpoint; InputFileError: an unreadable or unsafe file, or a link
                out of the checkpoints folder.
        """
        path = self.last()
        if path is None:
            raise MeshposeError("no checkpoint to resume from", self.folder.parent)
        if path.resolve().parent != self.folder.resolve():
            raise InputFileError("leads out of the checkpoints folder (a link): not read", path)
        state = load_weights_file(path, map_location=map_location)
        return check_checkpoint(state, path), path

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file()) if self.folder.is_dir() else 0

    def _write_pointer(self, name: str) -> None:
        atomic_write_text(self.folder / "last", name + "\n")

    def _prune(self) -> None:
        files = self.step_files()
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)
        # Temporary files of a process killed while saving (only one process saves in a run
        # folder, and its own saves are complete by now).
        for stale in self.folder.glob(".*.tmp*"):
            stale.unlink(missing_ok=True)


def check_checkpoint(state: Any, path: Path) -> dict:
    """``state`` if it has a checkpoint's model weights and step, else one-line error."""
    if not isinstance(state, dict) or "model" not in state:
        raise InputFileError("not a meshpose checkpoint (no model weights)", path)
    check_state_dict(state["model"], path)
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputFileError(f"not a meshpose checkpoint (step {short(step)})", path)
    return state


def read_run_weights(run_dir: str | Path) -> tuple[dict, str]:
    """The model weights of a run folder and which step they are from: ``model.pt`` (``"final"``)
    when the run finished, else its newest checkpoint (the step number as text).

    Raises:
        MeshposeError: naming the path: not a run folder, no weights, unreadable or unsafe files.
    """
    run_dir = require_run_dir(run_dir)
    final = run_dir / "model.pt"
    if final.exists() or final.is_symlink():
        return check_state_dict(load_weights_file(final, kind="model file"), final), "final"
    manager = CheckpointManager(run_dir)
    if manager.last() is None:
        raise MeshposeError("no model.pt and no checkpoint", run_dir)
    checkpoint, _ = manager.load_last(map_location="cpu")
    return checkpoint["model"], str(checkpoint["step"])
