"""Crash-proof checkpoints with bounded disk use.

A run folder holds ``checkpoints/step-00001200.pt`` files, a ``checkpoints/last`` text file
naming the newest complete one, and ``checkpoints/best.pt``. Every file is written to a
temporary name, flushed to disk and renamed, so a crash (even SIGKILL in the middle of a save)
leaves the previous checkpoint and pointer intact. At most ``keep`` step checkpoints are kept;
disk use is bounded by ``(keep + 1) x`` one checkpoint's size.

A checkpoint holds the model, optimizer, scheduler and AMP-scaler states, every RNG state
(python, numpy, torch CPU, torch CUDA), the step, epoch, best metric, the resolved config and
the code version.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from meshpose.errors import MeshposeError
from meshpose.io.atomic import atomic_write, atomic_write_text
from meshpose.version import __version__

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


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
    """Every random-number generator state the engine depends on."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s output. The generator states must be CPU byte tensors, but a
    checkpoint loaded with ``map_location="cuda"`` puts them on the GPU, so they are moved back."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def last(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        pointer = self.folder / "last"
        if pointer.exists():
            candidate = self.folder / pointer.read_text().strip()
            if candidate.exists():
                return candidate
        files = self.step_files()  # the pointer is rewritten right after each save
        return files[-1] if files else None

    def load_last(self, map_location=None) -> dict:
        path = self.last()
        if path is None:
            raise MeshposeError("no checkpoint to resume from", self.folder.parent)
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as error:  # a file we wrote atomically should always load
            raise MeshposeError(f"cannot read checkpoint {path.name} ({error})", self.folder.parent) from None

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


def read_run_weights(run_dir: str | Path) -> tuple[dict, str]:
    """The model weights of a run folder and which step they are from: ``model.pt`` (``"final"``)
    when the run finished, else its newest checkpoint (the step number as text)."""
    run_dir = Path(run_dir)
    if (run_dir / "model.pt").exists():
        return torch.load(run_dir / "model.pt", weights_only=True, map_location="cpu"), "final"
    manager = CheckpointManager(run_dir)
    if manager.last() is None:
        raise MeshposeError("no model.pt and no checkpoint", run_dir)
    checkpoint = manager.load_last(map_location="cpu")
    return checkpoint["model"], str(checkpoint["step"])
