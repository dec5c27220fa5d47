"""Retarget motion capture onto the Anny body: fit the reduced pose (and a shape per clip) so
that the body's bone *directions* match the mocap skeleton's, frame by frame, batched.

Skeleton proportions differ between datasets and from Anny, so the fit matches unit vectors
along corresponding segments (thigh, shin, foot, upper arm, forearm, trunk, neck, hip and
shoulder lines, clavicles) rather than positions. A small scale-aligned position term lets the
per-clip shape follow the actor's proportions; a prior keeps the joints the mocap does not
observe (wrists, toes, head twist) near rest. Frames are optimised together on the CPU or GPU;
every frame then gets a second start from its predecessor's solution (warm start) and keeps
whichever fits better. Frames whose fit stays bad are dropped and counted.

Points are named by :data:`RETARGET_POINTS`; a per-source map (:data:`SOURCE_MAPS`) says which
mocap joint stands for each. A source that lacks some points (Human3.6M has no toes) fits the
points it has (``RetargetOptions.points``); segments with a missing end are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import roma
import torch
from tqdm import tqdm

from meshpose.body import POSE_JOINTS, AnnyBody
from meshpose.data.mocap_files import find_mocap_files, read_mocap
from meshpose.errors import InputFileError
from meshpose.io.atomic import atomic_write
from meshpose.viz import render_mesh, save_png

#: Points compared between a mocap skeleton and Anny, with their Anny definitions (joint centres).
RETARGET_POINTS: dict[str, str] = {
    "pelvis": "bone:root",
    "left_hip": "bone:upperleg01.L",
    "right_hip": "bone:upperleg01.R",
    "left_knee": "bone:lowerleg01.L",
    "right_knee": "bone:lowerleg01.R",
    "left_ankle": "bone:foot.L",
    "right_ankle": "bone:foot.R",
    "left_toe": "bone:toe3-1.L",
    "right_toe": "bone:toe3-1.R",
    "chest": "bone:spine01",
    "neck": "bone:neck01",
    "head": "bone:head",
    "left_shoulder": "bone:upperarm01.L",
    "right_shoulder": "bone:upperarm01.R",
    "left_elbow": "bone:lowerarm01.L",
    "right_elbow": "bone:lowerarm01.R",
    "left_wrist": "bone:wrist.L",
    "right_wrist": "bone:wrist.R",
}

#: Segments whose directions are matched.
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_toe"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_toe"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("pelvis", "chest"), ("chest", "neck"), ("neck", "head"),
    ("right_hip", "left_hip"), ("right_shoulder", "left_shoulder"),
    ("neck", "left_shoulder"), ("neck", "right_shoulder"),
)

#: Reduced-pose joints the segments above do not observe; a prior keeps them near rest.
UNOBSERVED = ("left_wrist", "right_wrist", "left_toes", "right_toes", "head")

def _sided(table: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expand ``{"hip": "{s}Thigh"}`` into left_/right_ entries with the source's side marks."""
    out = {}
    for point, pattern in table.items():
        if "{s}" in pattern:
            out[f"left_{point}"] = pattern.format(s=left)
            out[f"right_{point}"] = pattern.format(s=right)
        else:
            out[point] = pattern
    return out


#: Mocap joint standing for each retarget point, per source skeleton (``a+b``: their midpoint).
#: BVH positions are joint origins; ASF/AMC positions are bone *ends* (``lfemur`` is the knee).
#: The pelvis is the hip-joint midpoint everywhere, as on Anny (its root lies between the hips).
SOURCE_MAPS: dict[str, dict[str, str]] = {
    # CMU, cgspeed BVH conversion (43 joints); the toe is the foot's end site.
    "cmu": _sided({"hip": "{s}Thigh", "knee": "{s}Shin", "ankle": "{s}Foot", "toe": "{s}Foot_end",
                   "shoulder": "{s}Shldr", "elbow": "{s}ForeArm", "wrist": "{s}Hand",
                   "pelvis": "lThigh+rThigh", "chest": "chest", "neck": "neck", "head": "head"},
                  "l", "r"),
    # HDM05 ASF/AMC (31 bones).
    # Chosen among the plausible bones by the fit error on HDM05 takes (17 vs 36 mm median).
    "hdm05": _sided({"hip": "{s}hipjoint", "knee": "{s}femur", "ankle": "{s}tibia", "toe": "{s}foot",
                     "shoulder": "{s}clavicle", "elbow": "{s}humerus", "wrist": "{s}wrist",
                     "pelvis": "lhipjoint+rhipjoint", "chest": "thorax", "neck": "lowerneck",
                     "head": "upperneck"}, "l", "r"),
    # Bandai-Namco research motion dataset BVH (22 joints).
    "bandai": _sided({"hip": "UpperLeg_{s}", "knee": "LowerLeg_{s}", "ankle": "Foot_{s}",
                      "toe": "Toes_{s}", "shoulder": "UpperArm_{s}", "elbow": "LowerArm_{s}",
                      "wrist": "Hand_{s}", "pelvis": "UpperLeg_L+UpperLeg_R", "chest": "Chest", "neck": "Neck",
                      "head": "Head"}, "L", "R"),
}


def detect_source(joint_names) -> str:
    """Which :data:`SOURCE_MAPS` entry fits a skeleton (by its joint names)."""
    names = set(joint_names)
    for source, table in SOURCE_MAPS.items():
        if all(part in names for name in table.values() for part in name.split("+")):
            return source
    raise ValueError("unknown skeleton: no joint-name map fits it (known: " + ", ".join(SOURCE_MAPS) + ")")


def clip_points(clip, source: str | None = None, stride: int = 1) -> tuple[np.ndarray, np.ndarray, str]:
    """(T', P, 3) retarget points of a :class:`~meshpose.data.mocap.MocapClip` in metres, z up,
    every ``stride``-th frame, with the frame numbers (T',) and the source name."""
    source = source or detect_source(clip.joint_names)
    table = SOURCE_MAPS[source]
    frames = np.arange(0, clip.positions.shape[0], stride)
    positions = clip.positions[frames]
    points = np.stack([
        np.mean([positions[:, clip.joint_names.index(part)] for part in table[name].split("+")], axis=0)
        for name in RETARGET_POINTS
    ], axis=1)
    return to_z_up(points.astype(np.float32), clip.up_axis), frames, source


@dataclass
class RetargetOptions:
    iterations: int = 300
    warm_iterations: int = 100
    lr: float = 0.05
    fit_shape: bool = True
    prior_weight: float = 1e-3  #: on unobserved joints' rotation (rad^2)
    position_weight: float = 30.0  #: scale-aligned position term (per m^2), drives the shape
    drop_error_mm: float = 80.0  #: frames with a mean scale-aligned joint error above are dropped
    age_range: tuple[float, float] = (0.55, 1.0)  #: adults (Anny age 2/3 = young adult)
    device: str = "cpu"
    #: The :data:`RETARGET_POINTS` the source has, in the order of the points given to ``fit``
    #: (None: all). Must start with the pelvis and hold the hips, shoulders and neck.
    points: tuple[str, ...] | None = None


@dataclass
class RetargetResult:
    """One clip's fit.

    Attributes:
        rotations: (T, 22, 3, 3) reduced pose, ``POSE_JOINTS`` order.
        shape: (6,) phenotypes of the clip.
        errors_mm: (T, P) scale-aligned per-point error, mm.
        kept: (T,) bool, frames whose mean error is under the drop threshold.
    """

    rotations: torch.Tensor
    shape: torch.Tensor
    errors_mm: torch.Tensor
    kept: torch.Tensor
    point_names: tuple[str, ...] = field(default_factory=tuple)


def _body_frame(points: torch.Tensor, names: list[str]) -> torch.Tensor:
    """(B, 3, 3) body axes as columns: x = the body's left (hip line), z = up (pelvis to neck),
    y = z x x (the body's back)."""
    index = {n: i for i, n in enumerate(names)}
    left = points[:, index["left_hip"]] - points[:, index["right_hip"]]
    left = left + points[:, index["left_shoulder"]] - points[:, index["right_shoulder"]]
    up = points[:, index["neck"]] - points[:, index["pelvis"]]
    return roma.special_gramschmidt(torch.stack([up, left], dim=-1))[..., [1, 2, 0]]


def _scale_aligned_error(anny: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """(B, P) distances after centring on the pelvis (point 0) and the best uniform scale."""
    a = anny - anny[:, :1]
    s = source - source[:, :1]
    scale = (a * s).sum((1, 2), keepdim=True) / (a * a).sum((1, 2), keepdim=True).clamp_min(1e-12)
    return (scale * a - s).norm(dim=-1)


def _check_points(names: list[str]) -> None:
    """The points a fit needs: known names, the pelvis first (errors are pelvis-centred), and
    those the body frame is built from."""
    unknown = [n for n in names if n not in RETARGET_POINTS]
    missing = [n for n in ("pelvis", "left_hip", "right_hip", "left_shoulder", "right_shoulder", "neck")
               if n not in names]
    if unknown or missing or names[0] != "pelvis" or len(set(names)) != len(names):
        raise ValueError(f"retarget points must be distinct known points, the pelvis first, with the hips, "
                         f"shoulders and neck; unknown {unknown}, missing {missing}")


class Retargeter:
    """Fits the reduced Anny pose to mocap points; one instance per device.

    Args:
        options: :class:`RetargetOptions`.
        body: an :class:`AnnyBody` (default: the shipped one on ``options.device``).
    """

    def __init__(self, options: RetargetOptions | None = None, body: AnnyBody | None = None):
        self.options = options or RetargetOptions()
        self.device = torch.device(self.options.device)
        self.body = (body or AnnyBody()).to(self.device)
        self.point_names = list(self.options.points or RETARGET_POINTS)
        _check_points(self.point_names)
        landmarks = [self.body.joint_names.index(RETARGET_POINTS[n]) for n in self.point_names]
        self.landmarks = torch.tensor(landmarks, device=self.device)
        self.segments = torch.tensor(
            [[self.point_names.index(a), self.point_names.index(b)] for a, b in SEGMENTS
             if a in self.point_names and b in self.point_names],
            device=self.device,
        )
        self.unobserved = torch.tensor([POSE_JOINTS.index(j) for j in UNOBSERVED], device=self.device)
        with torch.no_grad():
            rest = self._points(torch.zeros(1, len(POSE_JOINTS), 3, device=self.device),
                                torch.full((1, 6), 0.5, device=self.device))
        self.rest_frame = _body_frame(rest, self.point_names)[0]

    def _points(self, rotvec: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        output = self.body(roma.rotvec_to_rotmat(rotvec), shape.expand(rotvec.shape[0], -1), vertices=False)
        return output.joints[:, self.landmarks]

    def _shape(self, raw: torch.Tensor) -> torch.Tensor:
        shape = torch.sigmoid(raw)
        low, high = self.options.age_range
        return torch.cat([shape[:, :1], low + (high - low) * shape[:, 1:2], shape[:, 2:]], dim=1)

    def _directions(self, points: torch.Tensor) -> torch.Tensor:
        vectors = points[:, self.segments[:, 1]] - points[:, self.segments[:, 0]]
        return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-9)

    def _losses(self, rotvec, raw_shape, clip, target_dirs, target_points):
        points = self._points(rotvec, self._shape(raw_shape)[clip])
        direction = (self._directions(points) - target_dirs).square().sum(-1).mean(-1)
        position = _scale_aligned_error(points, target_points).square().mean(-1)
        prior = rotvec[:, self.unobserved].square().sum((-1, -2))
        options = self.options
        return direction + options.position_weight * position + options.prior_weight * prior

    def _optimise(self, rotvec, raw_shape, clip, target_dirs, target_points, iterations, fit_shape):
        rotvec = rotvec.clone().requires_grad_(True)
        raw_shape = raw_shape.clone().requires_grad_(fit_shape)
        optimizer = torch.optim.Adam([rotvec, raw_shape] if fit_shape else [rotvec], lr=self.options.lr)
        for _ in range(iterations):
            optimizer.zero_grad(set_to_none=True)
            loss = self._losses(rotvec, raw_shape, clip, target_dirs, target_points)
            loss.sum().backward()
            optimizer.step()
        with torch.no_grad():
            final = self._losses(rotvec, raw_shape, clip, target_dirs, target_points)
        return rotvec.detach(), raw_shape.detach(), final

    def fit(self, points, clip=None) -> RetargetResult:
        """Fit frames, optionally of several clips at once (one shape per clip).

        Args:
            points: (N, P, 3) metres, z up, the :data:`RETARGET_POINTS` in order (or
                ``options.points`` when given).
            clip: (N,) clip index of each frame (frames of a clip in time order); default one clip.
        Returns:
            a :class:`RetargetResult` over the N frames; ``shape`` is (C, 6), one row per clip.
        """
        target = (points if isinstance(points, torch.Tensor) else torch.from_numpy(np.asarray(points)))
        target = target.to(device=self.device, dtype=torch.float32)
        frames = target.shape[0]
        clip = torch.zeros(frames, dtype=torch.long) if clip is None else torch.as_tensor(np.asarray(clip)).long()
        clip = clip.to(self.device)
        n_clips = int(clip.max()) + 1 if frames else 0
        target_dirs = self._directions(target)
        # Initial global orientation: align Anny's rest body frame with each frame's.
        init = torch.zeros(frames, len(POSE_JOINTS), 3, device=self.device)
        frame_rotation = _body_frame(target, self.point_names) @ self.rest_frame.T
        init[:, 0] = roma.rotmat_to_rotvec(frame_rotation)
        raw_shape = torch.zeros(n_clips, 6, device=self.device)
        rotvec, raw_shape, loss = self._optimise(
            init, raw_shape, clip, target_dirs, target, self.options.iterations, self.options.fit_shape)
        if frames > 1 and self.options.warm_iterations:
            # Warm start: every frame restarts from its predecessor's solution (within its clip)
            # and keeps whichever fits better.
            previous = torch.arange(frames, device=self.device) - 1
            previous[0] = 0
            previous = torch.where(clip[previous] == clip, previous, previous + 1)
            warm_rotvec, _, warm_loss = self._optimise(
                rotvec[previous], raw_shape, clip, target_dirs, target, self.options.warm_iterations, False)
            better = warm_loss < loss
            rotvec = torch.where(better[:, None, None], warm_rotvec, rotvec)
        with torch.no_grad():
            shape = self._shape(raw_shape)
            fitted = self._points(rotvec, shape[clip])
            errors = _scale_aligned_error(fitted, target) * 1000.0
        kept = errors[:, 1:].mean(-1) <= self.options.drop_error_mm
        return RetargetResult(roma.rotvec_to_rotmat(rotvec).cpu(), shape.cpu(), errors.cpu(),
                              kept.cpu(), tuple(self.point_names))


def to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    """(..., 3) positions from a y-up (x, y, z) frame to z-up (x, -z, y); z-up is returned as is."""
    if up_axis == "z":
        return points
    if up_axis != "y":
        raise ValueError(f"unsupported up axis {up_axis!r}")
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


# ---------------------------------------------------------------------------------------------
# Files in, pose bank and report out.

#: Frame rate of the clips given to the fit (mocap at 30-120 fps repeats itself; 10 fps keeps
#: the motion and a tenth of the work).
BANK_FPS = 10.0


def read_clip_points(path, fps: float = BANK_FPS) -> dict:
    """One mocap file -> ``{"name", "source", "frames", "points" (T, P, 3)}`` at about ``fps``."""
    path = Path(path)
    is_hdm05 = path.suffix.lower() == ".amc"
    clip = read_mocap(path, include_end_sites=True) if path.suffix.lower() == ".bvh" else read_mocap(
        path, fps=30.0 if is_hdm05 else None)
    stride = max(1, round(clip.fps / fps))
    points, frames, source = clip_points(clip, stride=stride)
    parts = path.with_suffix("").parts
    name = f"{source}/{'/'.join(parts[-2:])}"
    return {"name": name, "source": source, "frames": frames, "points": points}


def save_points(clips: list[dict], path) -> None:
    """Clips' retarget points in one ``.npz`` (what ``retarget`` also accepts as input)."""
    def write(tmp: str) -> None:
        np.savez_compressed(
            tmp, points=np.concatenate([c["points"] for c in clips]).astype(np.float32),
            frame=np.concatenate([c["frames"] for c in clips]).astype(np.int32),
            clip=np.concatenate([np.full(len(c["frames"]), i, np.int32) for i, c in enumerate(clips)]),
            clip_names=np.array([c["name"] for c in clips]),
            clip_sources=np.array([c["source"] for c in clips]),
            point_names=np.array(list(RETARGET_POINTS)),
        )

    atomic_write(path, write)


def load_points(path) -> list[dict]:
    data = np.load(path, allow_pickle=False)
    if tuple(str(n) for n in data["point_names"]) != tuple(RETARGET_POINTS):
        raise ValueError(f"{path}: retarget points differ from this meshpose version")
    clips = []
    for i, name in enumerate(data["clip_names"]):
        mask = data["clip"] == i
        clips.append({"name": str(name), "source": str(data["clip_sources"][i]),
                      "frames": data["frame"][mask], "points": data["points"][mask]})
    return clips


def retarget_clips(clips: list[dict], options: RetargetOptions, max_frames: int = 50_000):
    """Fit every clip, many clips per batch (up to ``max_frames`` frames). Returns
    ``(bank_clips, report_rows, errors)``: the kept frames of each clip for
    :meth:`PoseBank.from_clips`, one report row per clip, and the (n, P-1) per-point errors (mm,
    pelvis excluded) of kept frames per source."""
    retargeter = Retargeter(options)
    groups, current, size = [], [], 0
    for clip in clips:
        if current and size + len(clip["frames"]) > max_frames:
            groups.append(current)
            current, size = [], 0
        current.append(clip)
        size += len(clip["frames"])
    if current:
        groups.append(current)
    bank, report, errors = [], [], {}
    for group in tqdm(groups, desc="retarget", unit="batch", disable=len(groups) < 2):
        points = np.concatenate([c["points"] for c in group])
        index = np.concatenate([np.full(len(c["frames"]), i) for i, c in enumerate(group)])
        result = retargeter.fit(points, index)
        for i, clip in enumerate(group):
            mask = torch.from_numpy(index == i)
            kept = result.kept[mask]
            clip_errors = result.errors_mm[mask][:, 1:]  # the pelvis is 0 by construction
            errors.setdefault(clip["source"], []).append(clip_errors[kept])
            bank.append({"name": clip["name"], "source": clip["source"],
                         "rotations": result.rotations[mask][kept], "frames": clip["frames"][kept.numpy()],
                         "shape": result.shape[i].numpy()})
            report.append({
                "clip": clip["name"], "source": clip["source"], "frames": int(mask.sum()),
                "kept": int(kept.sum()), "dropped": int((~kept).sum()),
                "median_mm": float(clip_errors.median()),
                "p95_mm": float(torch.quantile(clip_errors.flatten(), 0.95)),
            })
    return bank, report, errors


def error_table(errors: dict[str, list[torch.Tensor]]) -> list[dict]:
    """Per source: median and 95th percentile of the per-point errors (mm) of kept frames."""
    rows = []
    for source, parts in errors.items():
        values = torch.cat([p.flatten() for p in parts]) if parts else torch.zeros(0)
        rows.append({"source": source, "points": int(values.numel()),
                     "median_mm": float(values.median()) if values.numel() else float("nan"),
                     "p95_mm": float(torch.quantile(values, 0.95)) if values.numel() else float("nan")})
    return rows


def gather_clips(sources: list[str], fps: float) -> list[dict]:
    """Retarget points of every clip in ``sources`` (mocap files, folders or points ``.npz``)."""
    clips, mocap = [], []
    for source in sources:
        if source.endswith(".npz"):
            clips += load_points(source)
        else:
            mocap.append(source)
    if mocap:
        files = find_mocap_files(mocap)
        for path in tqdm(files, desc="read mocap", unit="file", disable=len(files) < 10):
            try:
                clips.append(read_clip_points(path, fps=fps))
            except ValueError as error:  # an unknown skeleton
                raise InputFileError(str(error), path) from None
    return clips


def retarget_picture(clip: dict, fitted: dict, path, frames: int = 4, device: str = "cpu") -> None:
    """Fitted meshes with the (scale-aligned) mocap skeleton drawn over them, a few frames."""
    body = AnnyBody()
    names = list(RETARGET_POINTS)
    landmarks = [body.joint_names.index(RETARGET_POINTS[n]) for n in names]
    edges = [(names.index(a), names.index(b)) for a, b in SEGMENTS]
    count = len(fitted["frames"])
    if count == 0:
        return
    picks = np.linspace(0, count - 1, min(frames, count)).round().astype(int)
    lookup = {int(f): i for i, f in enumerate(clip["frames"])}
    tiles = []
    with torch.no_grad():
        for k in picks:
            output = body(fitted["rotations"][k : k + 1].float(), torch.as_tensor(fitted["shape"])[None])
            anny = output.joints[0, landmarks].numpy()
            source = clip["points"][lookup[int(fitted["frames"][k])]]
            a, s = anny - anny[:1], source - source[:1]
            scale = (a * s).sum() / (s * s).sum()
            overlay = s * scale + anny[:1]
            tiles.append(render_mesh(output.vertices[0].numpy(), output.faces.numpy(), size=(300, 400),
                                     camera="front", joints=overlay, edges=edges))
    save_png(path, np.concatenate(tiles, axis=1))
