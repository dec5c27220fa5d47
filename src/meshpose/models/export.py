"""Export a trained ``key2mesh``, ``adapt`` or ``pose2mesh`` (second stage) run as a
shipped-style model file.

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

import yaml

TRAINING_DATA = ("CMU motion capture (free for any use) retargeted to Anny (Apache-2.0/CC0); "
                 "CMU subjects 13 and 14 held out")


def export_regressor(run_dir: str | Path, out: str | Path) -> Path:
    from safetensors.torch import save_file

    from meshpose.train.checkpoint import read_run_weights

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    state, step = read_run_weights(run_dir)
    settings = config["model"]
    if config.get("task") == "adapt":  # the adapted regressor, in the format of the one it started from
        from meshpose.adapt.task import export_adapted
        from meshpose.io.weights import read_model_file
        from meshpose.predict import MODELS

        state = export_adapted(state)
        settings = json.loads(read_model_file(config["model"]["init"], MODELS, "meshpose-regressor-1",
                                              "regressor")[0]["model"])
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    metrics = (run_dir / "metrics.json").read_text() if (run_dir / "metrics.json").exists() else "{}"
    training_data = TRAINING_DATA
    if config.get("task") == "adapt":
        training_data += (f"; then adapted, without labels, to the 2D detections of {config['data']['target']} "
                          "(their licence applies to these weights)")
    header = {"format": "meshpose-regressor-1", "model": json.dumps(settings),
              "config": json.dumps(config), "training_data": training_data, "metrics": metrics,
              "step": step}
    if config.get("task") == "pose2mesh":
        from meshpose.pose2mesh.inference import pose2mesh_file_extras

        extra_header, extra_state = pose2mesh_file_extras(config)
        header.update(extra_header)
        state.update({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in extra_state.items()})
    save_file(state, str(out), metadata=header)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m meshpose.models.export RUN_DIR OUT.safetensors")
    print(export_regressor(sys.argv[1], sys.argv[2]))
