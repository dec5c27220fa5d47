"""An up head for a trained mesh-keypoint model, fitted with the rest of the network frozen.

``meshpose fit-up MODEL --keypoint-dataset kpdata -o OUT`` turns a model that reads bodies
upright (any turn about y) into one that finds the body's up direction itself, without changing
a single joint it reads upright: the network's global feature (B, 4w) of a body in a random
rotation already differs with the rotation, so a small head on it is trained to give the up
direction (1 - cos loss), on features computed once:

1. draw ``samples`` training bodies (train split of the keypoint dataset and synthetic Anny
   bodies, :class:`~meshpose.meshkp.point_task.MeshKeypointTask`), ``any_rotation`` of them
   under a uniform 3D rotation, the others tilted by up to ``tilt_deg``, with rough surfaces and
   holes; keep their global features and true up directions;
2. train the head on them (AdamW, cosine schedule, batches of 256);
3. score it on held-out synthetic bodies in uniform rotations
   (:func:`~meshpose.meshkp.point_task.evaluate_up`) and write the model file: the input's
   weights and header, the head added, the training-data statement extended.

A second reading after turning the mesh by the answer (:func:`meshpose.mesh_keypoints`) refines
it: bodies near upright are what the frozen network knows best.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from meshpose.errors import MeshposeError
from meshpose.io.atomic import atomic_write, check_output_file
from meshpose.io.weights import read_model_file
from meshpose.meshkp.model_file import FORMAT, MODELS
from meshpose.meshkp.point_task import MeshKeypointTask, PointDataConfig, evaluate_up
from meshpose.meshkp.pointnet import MeshKeypointNet

__all__ = ["UpFitConfig", "fit_up_head", "up_training_data"]

_BATCH_DRAW = 32  # bodies drawn per forward pass while collecting features
_BATCH_FIT = 256


@dataclass
class UpFitConfig:
    """Settings of :func:`fit_up_head` (the defaults made the shipped head)."""

    samples: int = 25_600  #: training bodies drawn (their features are computed once)
    steps: int = 4_000  #: head training steps of 256 bodies
    lr: float = 1e-3
    any_rotation: float = 0.7  #: share of bodies under a uniform 3D rotation
    tilt_deg: float = 25.0  #: the others tilted by up to this many degrees
    hold_out: str = ""  #: a human_seg collection left out whole
    seed: int = 0

    def data(self, keypoint_dataset: str, points: int) -> PointDataConfig:
        """The bodies the head learns from (the point model's own augmentations); ``keypoint_dataset``
        "" for synthetic bodies only."""
        return PointDataConfig(dataset=keypoint_dataset, points=points, real_fraction=0.3, any_rotation=self.any_rotation,
                               tilt_deg=self.tilt_deg, mix_chains=0.2, flex_legs=0.2, surface_noise=0.002,
                               holes=0.2, hold_out=self.hold_out)


def up_training_data(statement: str, config: UpFitConfig) -> str:
    """The model file's training-data statement with the up head's data added."""
    held = f", the {config.hold_out} collection left out" if config.hold_out else ""
    statement = statement.split("; up head fitted")[0]  # a head fitted again replaces the old one
    return (f"{statement}; up head fitted with the rest frozen (meshpose fit-up) on {config.samples} bodies "
            f"from the same sources{held}, {round(100 * config.any_rotation)} % in uniform 3D rotations")


@torch.no_grad()
def _collect(network: MeshKeypointNet, task: MeshKeypointTask, data: PointDataConfig, count: int,
             generator: torch.Generator, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features (count, 4w) and true up directions (count, 3) of random training bodies."""
    features, ups = [], []
    for _ in tqdm(range(math.ceil(count / _BATCH_DRAW)), desc="bodies", unit="batch", disable=not progress):
        batch = task.make_batch(data, generator, _BATCH_DRAW, "cpu")
        features.append(network.features(batch["points"], batch["normals"])[1])
        ups.append(batch["up"])
    return torch.cat(features)[:count], torch.cat(ups)[:count]


def fit_up_head(model: str, keypoint_dataset: str, output: str | Path, config: UpFitConfig | None = None,
                progress: bool = True) -> dict[str, float]:
    """Fit an up head onto ``model`` (a shipped name or a mesh-keypoint model file) and write the
    result to ``output``; ``keypoint_dataset`` "" trains on synthetic bodies only. The metrics of :func:`~meshpose.meshkp.point_task.evaluate_up` (degrees).

    Raises:
        MeshposeError: an unreadable model or keypoint dataset, an output path that cannot be
            written, ``samples`` or ``steps`` out of range; nothing is written then.
    """
    config = config or UpFitConfig()
    if not 1 <= config.samples <= 10_000_000 or not 1 <= config.steps <= 10_000_000:
        raise MeshposeError(f"samples and steps must be from 1 to 10,000,000; got {config.samples} and {config.steps}")
    output = check_output_file(output, (".safetensors",))
    header, state = read_model_file(model, MODELS, FORMAT, "mesh-keypoint model")
    settings = json.loads(header["model"])
    torch.manual_seed(config.seed)  # the head's initial weights
    network = MeshKeypointNet(settings["neighbours"], settings["width"], up_head=True)
    kept = {name: value for name, value in state.items() if not name.startswith("up_head.")}
    missing, unexpected = network.load_state_dict(kept, strict=False)
    if unexpected or any(not name.startswith("up_head.") for name in missing):
        raise MeshposeError("the model file's weights do not match its settings", model)
    network.eval().requires_grad_(False)
    head = network.up_head
    head.requires_grad_(True).train()

    data = config.data(keypoint_dataset, int(header.get("points", 1024)))
    task = MeshKeypointTask()
    generator = torch.Generator().manual_seed(config.seed)
    features, ups = _collect(network, task, data, config.samples, generator, progress)

    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    for _ in tqdm(range(config.steps), desc="up head", unit="step", disable=not progress):
        rows = torch.randint(len(features), (_BATCH_FIT,), generator=generator)
        predicted = torch.nn.functional.normalize(head(features[rows]), dim=-1)
        loss = 1 - (predicted * ups[rows]).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    head.eval().requires_grad_(False)

    metrics = evaluate_up(network, data, "cpu", task=task, count=512)
    settings["up_head"] = True
    tensors = {k: v.half().contiguous() for k, v in network.state_dict().items()}
    new_header = dict(header, model=json.dumps(settings),
                      training_data=up_training_data(header.get("training_data", ""), config),
                      up_fit=json.dumps(asdict(config)), up_metrics=json.dumps(metrics))
    atomic_write(output, lambda temporary: save_file(tensors, temporary, metadata=new_header))
    return metrics
