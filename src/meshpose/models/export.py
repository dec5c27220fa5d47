"""Export a trained key2mesh run as a shipped-style regressor file.

    python -m meshpose.models.export RUN_DIR OUT.safetensors

Weights in float16 (inference precision is unaffected in practice; the file is half the size),
the model settings, the resolved config, the training-data statement and the final metrics in
the header. A run stopped before its end (no ``model.pt``) is exported from its last checkpoint,
and the header says which step.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml

TRAINING_DATA = ("CMU motion capture (free for any use) retargeted to Anny (Apache-2.0/CC0); "
                 "CMU subjects 13 and 14 held out")


def export_regressor(run_dir: str | Path, out: str | Path) -> Path:
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    if (run_dir / "model.pt").exists():
        state, step = torch.load(run_dir / "model.pt", weights_only=True, map_location="cpu"), "final"
    else:
        from meshpose.train.checkpoint import CheckpointManager

        if CheckpointManager(run_dir).last() is None:
            from meshpose.errors import MeshposeError

            raise MeshposeError("no model.pt and no checkpoint", run_dir)
        checkpoint = CheckpointManager(run_dir).load_last(map_location="cpu")
        state, step = checkpoint["model"], str(checkpoint["step"])
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    metrics = (run_dir / "metrics.json").read_text() if (run_dir / "metrics.json").exists() else "{}"
    header = {"format": "meshpose-regressor-1", "model": json.dumps(config["model"]),
              "config": json.dumps(config), "training_data": TRAINING_DATA, "metrics": metrics,
              "step": step}
    save_file(state, str(out), metadata=header)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m meshpose.models.export RUN_DIR OUT.safetensors")
    print(export_regressor(sys.argv[1], sys.argv[2]))
