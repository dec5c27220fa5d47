"""Pictures of an adaptation run.

    meshpose plot RUN_DIR -o adaptation.png

Four panels: (1) the critic's Wasserstein estimate and the reprojection loss over training
(``metrics.csv``); (2) the validation errors over training (``validation.csv``); (3) the 2D
inputs of both domains, box-normalised (a few joints); (4) the features of the target
detections before (source extractor) and after (adapted extractor) against the source features,
projected on the source features' first two principal components. Needs matplotlib
(``pip install 'meshpose[plot]'``).

The run folder is read safely (its config checked, its weights loaded with ``weights_only``);
everything is computed before the PNG is written, atomically.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from meshpose.adapt.task import AdaptTask
from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line
from meshpose.io.atomic import atomic_write
from meshpose.joints import get_joint_set
from meshpose.models.regressor import normalise, slot_index, to_slots
from meshpose.train.checkpoint import load_model_weights, read_run_weights, require_file
from meshpose.train.config import read_run_config, require_run_dir

#: The columns each panel needs, per log file.
_COLUMNS = {"metrics.csv": ("step", "train/critic_turn", "train/wasserstein", "train/reprojection"),
            "validation.csv": ("step",)}


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """A training log as ``{column: (rows,) float array}`` (empty cells NaN); ``{}`` when missing.

    Raises:
        InputFileError: a damaged log (not text, a cell that is not a number, columns missing).
    """
    if not (path.exists() or path.is_symlink()):
        return {}
    require_file(path, "training log")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        columns = {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows])
                   for k in (rows[0] if rows else {})}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError) as error:
        raise InputFileError(f"damaged training log ({one_line(error, 80)})", path) from None
    missing = [k for k in _COLUMNS.get(path.name, ()) if rows and k not in columns]
    if missing:
        raise InputFileError(f"not an adapt run's log (no column {missing[0]!r})", path)
    return columns


@torch.no_grad()
def feature_projections(run_dir: Path, samples: int = 2000):
    """``(source (n, 2), target before (n, 2), target after (n, 2), inputs)``: features projected
    on the source features' first two principal components, and the box-normalised 2D inputs
    ``{"source": (n, J, 2), "target": (n, J, 2)}`` with the joint set's name."""
    task = AdaptTask()
    config = read_run_config(run_dir, {"adapt": task})
    state, step = read_run_weights(run_dir)
    model = task.build_model(config.model, config.data)
    load_model_weights(model, state, run_dir / ("model.pt" if step == "final" else "checkpoints"))
    model.eval()
    keypoints, joint_set = task._target(config.data)
    pool = task._source(config.data, joint_set, "cpu")
    generator = torch.Generator().manual_seed(0)
    target = to_slots(keypoints[torch.randint(len(keypoints), (samples,), generator=generator)], joint_set)
    source = to_slots(pool[torch.randint(len(pool), (samples,), generator=generator)], joint_set)
    fs = model.source.extract(source)[0]
    before, after = model.source.extract(target)[0], model.target.extract(target)[0]
    mean = fs.mean(0)
    _, _, v = torch.pca_lowrank(fs - mean, q=2, center=False)
    project = lambda f: ((f - mean) @ v).numpy()
    index = slot_index(joint_set)
    inputs = {name: normalise(slots)[0][:, index].numpy() for name, slots in (("source", source), ("target", target))}
    return project(fs), project(before), project(after), inputs, joint_set


def plot_run(run_dir: str | Path, out: str | Path) -> Path:
    """``meshpose plot RUN_DIR -o OUT.png``: the four panels of an adapt run (module docstring).

    Raises:
        MeshposeError: naming the path: not an adapt run folder, damaged or unsafe files, no
            matplotlib, ``out`` a folder or in a missing folder (``out`` is then unchanged).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MeshposeError("the plots need matplotlib: pip install 'meshpose[plot]'") from None
    run_dir, out = require_run_dir(run_dir), Path(out)
    if out.is_dir():
        raise MeshposeError("is a folder, expected a PNG file name", out)
    metrics, validation = _read_csv(run_dir / "metrics.csv"), _read_csv(run_dir / "validation.csv")
    fs, before, after, inputs, joint_set = feature_projections(run_dir)
    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    try:
        _draw(axes, metrics, validation, fs, before, after, inputs, joint_set)
        fig.tight_layout()
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90))
    finally:
        plt.close(fig)
    return out


def _draw(axes, metrics, validation, fs, before, after, inputs, joint_set) -> None:
    ax = axes[0]
    if metrics:
        critic = metrics["train/critic_turn"] == 1
        ax.plot(metrics["step"][critic], metrics["train/wasserstein"][critic], ".", ms=3, color="tab:red",
                label="critic: Wasserstein estimate")
        ax.set_ylabel("Wasserstein estimate (critic units)")
        twin = ax.twinx()
        extractor = ~critic
        twin.plot(metrics["step"][extractor], metrics["train/reprojection"][extractor], ".-", ms=3,
                  color="tab:blue", label="extractor: reprojection L1")
        twin.set_ylabel("reprojection L1 (box units)")
        ax.legend(loc="upper left", fontsize=8), twin.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("step"), ax.set_title("losses")

    ax = axes[1]
    for key, label in (("val/h36m_s1_pa_mpjpe_mm", "H36M S1 (SH) PA-MPJPE"),
                       ("val/motion_pa_mpjpe_mm", "held-out motion PA-MPJPE")):
        if key in validation:
            ax.plot(validation["step"], validation[key], "o-", label=label)
    ax.set_xlabel("step"), ax.set_ylabel("mm"), ax.set_title("validation"), ax.legend(fontsize=8)

    ax = axes[2]
    names = get_joint_set(joint_set).names
    shown = [i for i, n in enumerate(names) if any(k in n for k in ("hip", "shoulder", "pelvis", "head"))]
    for name, color in (("source", "tab:gray"), ("target", "tab:orange")):
        xy = inputs[name][:, shown].reshape(-1, 2)
        ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.15, color=color,
                   label="synthetic (source)" if name == "source" else "real detections (target)")
    ax.invert_yaxis(), ax.set_aspect("equal")
    ax.set_title("2D inputs, box units (hips, shoulders, pelvis, head)"), ax.legend(fontsize=8, markerscale=8)

    ax = axes[3]
    ax.scatter(fs[:, 0], fs[:, 1], s=2, alpha=0.3, color="tab:gray", label="source features")
    ax.scatter(before[:, 0], before[:, 1], s=2, alpha=0.3, color="tab:orange", label="target, before")
    ax.scatter(after[:, 0], after[:, 1], s=2, alpha=0.3, color="tab:green", label="target, after")
    ax.set_title("features (source PCA)"), ax.legend(fontsize=8, markerscale=5)
