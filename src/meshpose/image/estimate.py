"""One image in, bodies out: detect 2D keypoints, estimate each person's body, place it in the
camera, and measure how well it re-projects onto the detections.

    estimator = ImageBodyEstimator()            # MediaPipe + the shipped regressor
    people = estimator(meshpose.io.images.read_image("photo.jpg"))
    people["vertices"] + people["cam_t"][:, None]   # (P, V, 3) in the camera frame, metres
"""
from __future__ import annotations

import numpy as np
import torch

from meshpose.body import body_joints
from meshpose.errors import UnknownNameError
from meshpose.estimators import load_estimator_and_body
from meshpose.geometry.camera import fit_translation, focal_from_field_of_view, project
from meshpose.image.detectors import MediaPipePose, to_joint_set
from meshpose.io.keypoints import visible_people
from meshpose.models.regressor import INPUT_SETS

#: Detections at or above this confidence count in the translation fit and the re-projection
#: error; MediaPipe's visibility is about 0.5 where a joint is as likely hidden as not.
CONFIDENT = 0.5


def reprojection_errors(projected, keypoints, threshold: float = CONFIDENT):
    """Median re-projection error per person, in pixels and as a fraction of the diagonal of
    the bounding box of the person's confident detections.

    Args:
        projected: (P, J, 2) pixels. keypoints: (P, J, 3) detected pixels and confidence.
    Returns:
        ``(pixels (P,), fraction (P,))``, NaN for a person with fewer than 2 confident joints.
    """
    projected, keypoints = np.asarray(projected, np.float64), np.asarray(keypoints, np.float64)
    pixels = np.full(len(keypoints), np.nan)
    fraction = np.full(len(keypoints), np.nan)
    for p, (guess, found) in enumerate(zip(projected, keypoints)):
        confident = found[:, 2] >= threshold
        if confident.sum() < 2:
            continue
        points = found[confident, :2]
        diagonal = np.linalg.norm(points.max(0) - points.min(0))
        pixels[p] = np.median(np.linalg.norm(guess[confident] - points, axis=-1))
        fraction[p] = pixels[p] / max(diagonal, 1.0)
    return pixels, fraction


class ImageBodyEstimator:
    """A 2D detector and a keypoints-to-body model, for images.

    Args:
        detector: a detector (see :mod:`meshpose.image.detectors`); default: MediaPipe's pose
            landmarker, made on first use (``video`` picks its tracking mode).
        model: a shipped model name (``default``, ``research``, ``pose2mesh``) or a model file.
        joint_set: the model's input set the detections are converted to (coco17, body25, ...).
        focal_length: pixels. When given, the camera is the model's (the root translation from
            its weak-perspective camera); when not, the focal length is guessed from a 55 degree
            field of view and the root translation is fitted to the detections (Gauss-Newton on
            the pixel error of the confident joints).
        device: "cpu" or "cuda".
        video: see ``detector``.
    """

    def __init__(self, detector=None, model: str = "default", joint_set: str = "coco17",
                 focal_length: float | None = None, device: str = "cpu", video: bool = False):
        if joint_set not in INPUT_SETS:
            raise UnknownNameError(f"the models read {', '.join(INPUT_SETS)}; got joint set {joint_set!r}")
        self._detector = detector
        self._video = video
        self.joint_set = joint_set
        self.focal_length = focal_length
        self.device = device
        self._estimate, self.faces, self.body = load_estimator_and_body(model, device, joint_set, (joint_set,))

    @property
    def detector(self):
        if self._detector is None:
            self._detector = MediaPipePose(video=self._video)
        return self._detector

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(P, J, 3) keypoints of the people in ``image``, in this estimator's joint set."""
        found = np.asarray(self.detector(image), dtype=np.float32)
        return to_joint_set(found, self.detector.joint_set, self.joint_set)

    def intrinsics(self, image_size) -> tuple[np.ndarray, np.ndarray]:
        """``(focal (2,), principal (2,))`` pixels for an image of ``image_size`` (W, H)."""
        w, h = image_size
        focal = self.focal_length if self.focal_length is not None else focal_from_field_of_view((w, h))
        return np.array([focal, focal], np.float64), np.array([w / 2.0, h / 2.0], np.float64)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, keypoints: np.ndarray | None = None) -> dict:
        """Bodies of the people in one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            keypoints: (P, J, 3) detections in this estimator's joint set; default: detect.
        Returns:
            dict with ``joint_set`` (name), ``keypoints2d`` (P, J, 3); ``joints3d`` (P, J, 3) and ``vertices``
            (P, V, 3), metres, root-relative, camera axes; ``pose`` and ``shape`` (the model's
            parameters; (P, 0) for Pose2Mesh); ``cam_t`` (P, 3) the root in the camera frame;
            ``focal`` (2,), ``principal`` (2,), ``image_size`` (2,) = (W, H) pixels;
            ``camera_source`` "model" or "fit"; ``projected`` (P, J, 2) pixels of ``joints3d +
            cam_t``; ``reprojection_px`` and ``reprojection`` (P,) their median error against
            the confident detections, pixels and fraction of the bounding-box diagonal;
            ``people`` (P,) the index of each person among the detections, and ``skipped`` the
            number of detections left out because they show too little for a body
            (:func:`~meshpose.io.keypoints.visible_people`).
        """
        height, width = image.shape[:2]
        if keypoints is None:
            keypoints = self.detect(image)
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, *np.shape(keypoints)[-2:])
        keep = visible_people(keypoints)
        kept, skipped = np.flatnonzero(keep), int((~keep).sum())
        keypoints = keypoints[keep]
        focal, principal = self.intrinsics((width, height))
        people = len(keypoints)
        batch = torch.as_tensor(keypoints, device=self.device)
        f = torch.tensor(focal, dtype=torch.float32, device=self.device).expand(people, 2)
        c = torch.tensor(principal, dtype=torch.float32, device=self.device).expand(people, 2)
        if people:
            out = self._estimate(batch, (f, c))
        else:
            out = {"vertices": torch.zeros(0, int(self.faces.max()) + 1, 3),
                   "pose": torch.zeros(0, 0), "shape": torch.zeros(0, 0),
                   f"joints3d_{self.joint_set}": torch.zeros(0, keypoints.shape[1], 3),
                   "cam_t": torch.zeros(0, 3)}
        joints = out[f"joints3d_{self.joint_set}"]
        cam_t = out["cam_t"]
        source = "model"
        if self.focal_length is None and people:
            confident = (batch[..., 2] >= CONFIDENT).float()
            cam_t = fit_translation(joints, batch[..., :2], f, c, confident, init=cam_t)
            source = "fit"
        projected = project(joints + cam_t[:, None], f, c) if people else torch.zeros(0, keypoints.shape[1], 2)
        result = {key: value.float().cpu().numpy() for key, value in out.items() if key != f"joints3d_{self.joint_set}"}
        result.update(
            joint_set=self.joint_set, keypoints2d=keypoints, joints3d=joints.float().cpu().numpy(), cam_t=cam_t.float().cpu().numpy(),
            focal=focal, principal=principal, image_size=np.array([width, height]),
            camera_source=source, projected=projected.float().cpu().numpy(), people=kept, skipped=skipped)
        result.pop("camera", None)
        result["reprojection_px"], result["reprojection"] = reprojection_errors(result["projected"], keypoints)
        return result

    @torch.no_grad()
    def pose_body(self, pose: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Root-relative ``(vertices (N, V, 3), joints (N, J, 3))`` of body-model parameters
        (for the regressor's outputs after smoothing)."""
        bodies = self.body(torch.as_tensor(pose, dtype=torch.float32, device=self.device),
                           torch.as_tensor(shape, dtype=torch.float32, device=self.device))
        root = bodies.joint("bone:root")[:, None]
        return ((bodies.vertices - root).cpu().numpy(),
                (body_joints(bodies, self.joint_set) - root).cpu().numpy())
