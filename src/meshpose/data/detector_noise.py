"""Detector-like errors for clean 2D keypoints, batched in torch.

Training a 2D-to-3D lifter on perfect projections leaves it brittle on real detections. This
module corrupts clean keypoints the way a 2D detector does, following the error taxonomy of
Ronchi & Perona (2017) that PoseFix (Moon et al., CVPR 2019) uses to synthesise inputs:

* **jitter**: a small displacement near the right joint;
* **miss**: a large displacement, somewhere around the body;
* **inversion**: confusion with the *other side's* same joint of the same person (a left wrist
  detected on the right wrist); joints without a left/right counterpart are unaffected;
* **swap**: confusion with the same joint of *another person*: here a different sample of the
  batch, rescaled to this person's size and placed next to it like a nearby second person.

Each joint suffers at most one of these (drawn with per-joint probabilities), on top of

* a **whole-body left-right flip** of the labels (the detector sees a mirrored person),
* isotropic **Gaussian noise** on every joint,
* **dropout**: the joint is not detected (confidence 0).

All displacements are fractions of the person size (``person_size``, e.g. the bounding-box
diagonal in pixels). Order of operations, per sample ``b`` and joint ``j``::

    base   = keypoints[b, flip_perm] with probability flip_prob, else keypoints[b]
    error  = jitter | miss | inversion | swap | none      (categorical, per-joint probabilities)
    noisy  = base moved by the error, + N(0, (gaussian_std * size)^2) per coordinate
    e      = |noisy - keypoints[b, j]|                    (distance from the true joint, px)
    conf   = clamp(exp(-e^2 / (2 (confidence_falloff * size)^2)) + confidence_noise * N(0, 1), 0, 1)
    dropout: conf = 0 (and noisy = dropout_fill when that is set)

Confidence therefore decreases with the error in expectation (it is an OKS-like similarity),
and equals 1 for an error-free joint without confidence noise. Joints that are not finite in the
input, or whose flipped source joint is not, come out NaN with confidence 0.

The defaults are a rough match to Stacked-Hourglass detections on Human3.6M S1 (median error
about 2.4 % of the bounding-box diagonal, 5 % of joints off by more than 10 %, 2 % by more than
20 %); :meth:`NoiseConfig.none` disables everything.

Every random draw uses the caller's :class:`torch.Generator`, on the generator's device, and the
number of draws does not depend on the configuration, so a seed fixes the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import torch

from meshpose.errors import MeshposeError
from meshpose.joints import JointSet, flip_permutation, get_joint_set

__all__ = ["NoiseConfig", "add_detector_noise", "ERROR_TYPES"]

#: Per-joint error types, in the order of the categorical draw.
ERROR_TYPES = ("jitter", "miss", "inversion", "swap")

#: A probability for every joint, a sequence with one per joint, or ``{joint name: probability}``
#: (other joints get the ``"default"`` entry, or 0).
PerJoint = Union[float, Sequence[float], Mapping[str, float]]


@dataclass
class NoiseConfig:
    """How to corrupt 2D keypoints (module docstring). Lengths are fractions of person size.

    Attributes:
        gaussian_std: standard deviation of the Gaussian noise on each coordinate (x and y
            independently), as a fraction of the person size.
        jitter_prob: per-joint probability of a *jitter* error.
        jitter_range: (low, high) displacement length of a jitter error, uniform, random direction.
        miss_prob: per-joint probability of a *miss* error.
        miss_range: (low, high) displacement length of a miss error.
        inversion_prob: per-joint probability of an *inversion* (moved exactly onto the other
            side's same joint; centre joints are unaffected).
        swap_prob: per-joint probability of a *swap* (moved onto the same joint of another
            person of the batch, placed next to this one).
        swap_offset: (low, high) distance between this person's and the other person's
            bounding-box centres for a swap.
        flip_prob: per-sample probability of a whole-body left-right label flip.
        dropout_prob: per-joint probability that the joint is not detected (confidence 0).
        dropout_fill: coordinate value written into dropped joints (e.g. ``0.0`` or
            ``float("nan")``); ``None`` keeps the noisy position.
        confidence_falloff: error (fraction of person size) at which the noiseless confidence
            is ``exp(-1/2) ~ 0.61``; must be > 0.
        confidence_noise: standard deviation of Gaussian noise added to the confidence before
            clamping to [0, 1].

    The four error probabilities of each joint must sum to at most 1.
    """

    gaussian_std: float = 0.015
    jitter_prob: PerJoint = 0.05
    jitter_range: tuple[float, float] = (0.04, 0.1)
    miss_prob: PerJoint = 0.02
    miss_range: tuple[float, float] = (0.15, 0.5)
    inversion_prob: PerJoint = 0.02
    swap_prob: PerJoint = 0.0
    swap_offset: tuple[float, float] = (0.2, 0.6)
    flip_prob: float = 0.01
    dropout_prob: PerJoint = 0.0
    dropout_fill: float | None = None
    confidence_falloff: float = 0.1
    confidence_noise: float = 0.05

    @classmethod
    def none(cls) -> "NoiseConfig":
        """A configuration that changes nothing (keypoints unchanged, confidence 1)."""
        return cls(gaussian_std=0.0, jitter_prob=0.0, miss_prob=0.0, inversion_prob=0.0, swap_prob=0.0,
                   flip_prob=0.0, dropout_prob=0.0, confidence_noise=0.0)

    def __post_init__(self) -> None:
        for name in ("jitter_range", "miss_range", "swap_offset"):
            value = getattr(self, name)
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise MeshposeError(f"noise option {name!r} must be two numbers (low, high), got {value!r}") from None
            if not (0 <= low <= high < math.inf):
                raise MeshposeError(f"noise option {name!r} needs 0 <= low <= high, got {value!r}")
            setattr(self, name, (low, high))
        for name in ("gaussian_std", "confidence_noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise MeshposeError(f"noise option {name!r} must be a number >= 0, got {value!r}")
        if not (isinstance(self.confidence_falloff, (int, float)) and 0 < self.confidence_falloff < math.inf):
            raise MeshposeError(f"noise option 'confidence_falloff' must be > 0, got {self.confidence_falloff!r}")
        if not (isinstance(self.flip_prob, (int, float)) and 0 <= self.flip_prob <= 1):
            raise MeshposeError(f"noise option 'flip_prob' must be in [0, 1], got {self.flip_prob!r}")

    def per_joint(self, name: str, joint_set: str | JointSet) -> list[float]:
        """The per-joint probabilities of option ``name`` for ``joint_set``, one per joint.

        Raises:
            MeshposeError: wrong length, unknown joint names, probabilities outside [0, 1].
        """
        js = get_joint_set(joint_set)
        value = getattr(self, name)
        if isinstance(value, Mapping):
            unknown = [k for k in value if k != "default" and k not in js.names]
            if unknown:
                raise MeshposeError(
                    f"noise option {name!r} names joints not in {js.name!r}: {', '.join(map(str, unknown))}; "
                    f"its joints are: {', '.join(js.names)}"
                )
            default = value.get("default", 0.0)
            probs = [value.get(n, default) for n in js.names]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            probs = [value] * len(js)
        else:
            probs = list(value)
            if len(probs) != len(js):
                raise MeshposeError(f"noise option {name!r} has {len(probs)} values, joint set {js.name!r} has {len(js)} joints")
        try:
            probs = [float(p) for p in probs]
        except (TypeError, ValueError):
            raise MeshposeError(f"noise option {name!r} must hold numbers, got {value!r}") from None
        if not all(0 <= p <= 1 for p in probs):
            raise MeshposeError(f"noise option {name!r} must hold probabilities in [0, 1], got {value!r}")
        return probs


def _bbox_center(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, 2) centre of the bounding box of the valid points (0 where none is valid)."""
    big = torch.finfo(points.dtype).max
    lo = torch.where(valid[..., None], points, torch.full_like(points, big)).amin(-2)
    hi = torch.where(valid[..., None], points, torch.full_like(points, -big)).amax(-2)
    return torch.where(valid.any(-1, keepdim=True), (lo + hi) / 2, torch.zeros_like(lo))


def add_detector_noise(
    keypoints_2d: torch.Tensor,
    joint_set: str | JointSet,
    person_size: torch.Tensor,
    config: NoiseConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt clean keypoints like a 2D detector (module docstring).

    Args:
        keypoints_2d: (B, J, 2) clean keypoints, pixels, in the order of ``joint_set``.
        joint_set: the keypoints' joint set (name or JointSet); its flip pairs define inversions
            and whole-body flips.
        person_size: (B,) person size in pixels, e.g. the bounding-box diagonal.
        config: the error model.
        generator: source of every random draw (draws are made on its device).

    Returns:
        ``(noisy, confidence)``: (B, J, 2) pixels in the input's dtype and device, and (B, J)
        confidences in [0, 1].

    Raises:
        MeshposeError: shapes that do not match the joint set, bad per-joint probabilities.
    """
    js = get_joint_set(joint_set)
    kp = keypoints_2d
    if kp.ndim != 3 or kp.shape[1:] != (len(js), 2):
        raise MeshposeError(f"expected keypoints of shape (B, {len(js)}, 2) for joint set {js.name!r}, got {tuple(kp.shape)}")
    if not kp.is_floating_point():
        kp = kp.to(torch.get_default_dtype())
    B, J, _ = kp.shape
    device, dtype = kp.device, kp.dtype
    size = torch.as_tensor(person_size, dtype=dtype, device=device).reshape(-1)
    if size.shape != (B,):
        raise MeshposeError(f"person_size must have shape ({B},), got {tuple(torch.as_tensor(person_size).shape)}")
    size = size.clamp_min(0).unsqueeze(-1)  # (B, 1)
    gdev = generator.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=gdev, dtype=dtype).to(device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)

    def direction(angle: torch.Tensor) -> torch.Tensor:
        """Unit 2D vectors (..., 2) for angles in radians."""
        return torch.stack([torch.cos(angle), torch.sin(angle)], -1)

    probs = torch.tensor(
        [config.per_joint(f"{t}_prob", js) for t in ERROR_TYPES], dtype=torch.float64
    ).T  # (J, 4)
    if (probs.sum(-1) > 1 + 1e-9).any():
        bad = [js.names[j] for j in torch.nonzero(probs.sum(-1) > 1 + 1e-9).flatten().tolist()]
        raise MeshposeError(f"error probabilities (jitter + miss + inversion + swap) exceed 1 for: {', '.join(bad)}")
    cum = probs.cumsum(-1).to(device=device, dtype=dtype)  # (J, 4)
    drop_p = torch.tensor(config.per_joint("dropout_prob", js), dtype=dtype, device=device)  # (J,)
    perm = torch.tensor(flip_permutation(js), device=device)

    # -- every random draw, in a fixed order and number (independent of the configuration) ----
    u_flip = rand(B)
    u_type = rand(B, J)
    u_length = rand(B, J)  # jitter / miss displacement length
    u_angle = rand(B, J)  # ... and direction
    partner_shift = torch.randint(1, max(B, 2), (B,), generator=generator, device=gdev).to(device)
    u_swap = rand(B, 2)  # neighbour distance and direction for swaps
    gauss = randn(B, J, 2)
    conf_noise = randn(B, J)
    u_drop = rand(B, J)

    valid = torch.isfinite(kp).all(-1)  # (B, J)
    all_valid = bool(valid.all())
    clean = kp if all_valid else torch.where(valid.unsqueeze(-1), kp, torch.zeros_like(kp))

    # -- whole-body flip (only the flipped rows are rewritten) ---------------------------------
    flipped = torch.nonzero(u_flip < config.flip_prob).flatten()
    base, base_valid = clean, valid
    if flipped.numel():
        base, base_valid = clean.clone(), valid.clone()
        base[flipped] = clean[flipped][:, perm]
        base_valid[flipped] = valid[flipped][:, perm]

    # -- per-joint error type: 0 jitter, 1 miss, 2 inversion, 3 swap, 4 none -----------------
    # Errors are rare, so they are applied sparsely at the affected (sample, joint) indices.
    kind = (u_type.unsqueeze(-1) >= cum).sum(-1)  # (B, J)
    noisy = base.clone()
    b, j = torch.nonzero(kind < 2, as_tuple=True)
    if b.numel():
        is_jitter = kind[b, j] == 0
        (jlo, jhi), (mlo, mhi) = config.jitter_range, config.miss_range
        low = torch.where(is_jitter, jlo, mlo).to(dtype)
        high = torch.where(is_jitter, jhi, mhi).to(dtype)
        length = (low + (high - low) * u_length[b, j]) * size[b, 0]
        noisy[b, j] = base[b, j] + direction(2 * math.pi * u_angle[b, j]) * length.unsqueeze(-1)
    b, j = torch.nonzero(kind == 2, as_tuple=True)
    if b.numel():
        counterpart = perm[j]
        keep = base_valid[b, counterpart]  # a missing counterpart cannot be confused with
        b, j, counterpart = b[keep], j[keep], counterpart[keep]
        noisy[b, j] = base[b, counterpart]
    b, j = torch.nonzero(kind == 3, as_tuple=True)
    if b.numel():
        # the other person is another sample, rescaled to this size, standing beside this one
        partner = (b + partner_shift[b]) % B
        keep = valid[partner, j]
        b, j, partner = b[keep], j[keep], partner[keep]
        center = _bbox_center(clean, valid)  # (B, 2)
        slo, shi = config.swap_offset
        offset = direction(2 * math.pi * u_swap[b, 1]) * ((slo + (shi - slo) * u_swap[b, 0]) * size[b, 0]).unsqueeze(-1)
        scale = size[b, 0] / size[partner, 0].clamp_min(torch.finfo(dtype).tiny)
        noisy[b, j] = (clean[partner, j] - center[partner]) * scale.unsqueeze(-1) + center[b] + offset

    # -- Gaussian noise, confidence, dropout -----------------------------------------------------
    if config.gaussian_std > 0:
        noisy = noisy + gauss * (config.gaussian_std * size).unsqueeze(-1)
    error2 = (noisy - clean).square().sum(-1)  # (B, J) squared px from the true joint
    width2 = (config.confidence_falloff * size).square().clamp_min(torch.finfo(dtype).tiny)
    conf = torch.exp(error2 / (-2 * width2))
    if config.confidence_noise > 0:
        conf = conf + config.confidence_noise * conf_noise
    conf = conf.clamp(0.0, 1.0)
    drop = u_drop < drop_p
    conf = conf.masked_fill(drop, 0.0)
    if config.dropout_fill is not None:
        noisy = noisy.masked_fill(drop.unsqueeze(-1), config.dropout_fill)

    if not (all_valid and flipped.numel() == 0):
        missing = ~(base_valid & valid)
        noisy = noisy.masked_fill(missing.unsqueeze(-1), float("nan"))
        conf = conf.masked_fill(missing, 0.0)
    return noisy, conf
