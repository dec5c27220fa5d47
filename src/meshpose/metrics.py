"""Batched metrics for 3D/2D human pose and body-mesh evaluation.

Every function accepts :class:`torch.Tensor` or :class:`numpy.ndarray` inputs (or
array-likes) and returns the same kind: torch in, torch out (same dtype and device,
differentiable where the math is); numpy in, numpy out (``float64``), with the
``reduction="mean"`` scalar returned as a Python ``float``. If either of ``pred``/``gt``
is a tensor, the result is a tensor.

Conventions:

- Point sets are batch-first, ``(B, J, D)`` with ``D = 3`` (metres) or ``D = 2``
  (pixels). Any number of leading batch dimensions is accepted: ``(..., J, D)``, so an
  unbatched ``(J, D)`` pose works too (its per-sample result is then 0-dimensional).
- Errors are in the units of the input (metres in, metres out: multiply by 1000 for mm).
- ``reduction="mean"`` (default) gives one scalar; ``reduction="none"`` gives one value
  per sample, shape ``(...)`` (i.e. ``(B,)``).
- ``mask`` (also called visibility) is an optional ``(B, J)`` bool or non-negative float
  weight, broadcastable to ``pred.shape[:-1]``. Joints with zero weight are excluded:
  the per-sample value is the weighted average over joints, and ``"mean"`` is the
  weighted average over *all* (sample, joint) pairs, so a sample with no visible joint is
  NaN under ``"none"`` and simply ignored by ``"mean"``.

Shape problems raise :class:`ValueError` with a message naming the offending argument.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

__all__ = [
    "mpjpe",
    "root_aligned_mpjpe",
    "n_mpjpe",
    "procrustes_transform",
    "procrustes_align",
    "pa_mpjpe",
    "pve",
    "pa_pve",
    "pck",
    "auc",
    "pcm",
    "acceleration_error",
    "hungarian_match",
    "matched_mpjpe",
    "matched_pck",
    "matched_pcm",
    "DEFAULT_AUC_THRESHOLDS",
]

#: Default AUC thresholds, in metres: 0 to 150 mm in 31 evenly spaced steps (5 mm apart),
#: the MPI-INF-3DHP protocol.
DEFAULT_AUC_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.0, 0.15, 31))

# Tolerance used when comparing a per-sample PCK to the PCM ratio, so that e.g. 9 of 10
# joints counts as ">= 0.9" despite floating-point rounding of the weighted average.
_PCM_TOL = 1e-6

_REDUCTIONS = ("mean", "none")


# --------------------------------------------------------------------------------------
# Input / output plumbing
# --------------------------------------------------------------------------------------


class _Kind:
    """Remembers whether the caller passed numpy or torch, and the dtype/device to use."""

    def __init__(self, *primary):
        ref = next((x for x in primary if isinstance(x, torch.Tensor)), None)
        self.is_numpy = ref is None
        if ref is None:
            self.dtype, self.device = torch.float64, torch.device("cpu")
        else:
            self.dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            self.device = ref.device

    def tensor(self, x, name: str) -> torch.Tensor | None:
        """Converts ``x`` to a floating tensor of the working dtype/device (None passes)."""
        if x is None:
            return None
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array") from exc
        if arr.dtype == object:
            raise ValueError(f"{name}: cannot convert a ragged/object array to numbers")
        return torch.as_tensor(arr.astype(np.float64), dtype=self.dtype, device=self.device)

    def out(self, value: torch.Tensor, scalar: bool = False):
        """Converts a result back to the caller's kind."""
        if not self.is_numpy:
            return value
        arr = value.detach().cpu().numpy()
        return float(arr) if scalar else arr

    def out_index(self, value: torch.Tensor):
        """Converts an integer index result back to the caller's kind."""
        return value.cpu().numpy() if self.is_numpy else value.to(self.device)


def _check_points(pred: torch.Tensor, gt: torch.Tensor) -> None:
    """Checks that ``pred`` and ``gt`` are both ``(..., J, D)`` with identical shapes."""
    for name, x in (("pred", pred), ("gt", gt)):
        if x.ndim < 2:
            raise ValueError(f"{name} must have shape (B, J, D), got {tuple(x.shape)}")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape (B, J, D), "
            f"got pred {tuple(pred.shape)} and gt {tuple(gt.shape)}"
        )


def _check_weights(w: torch.Tensor | None, shape: torch.Size, name: str = "mask"):
    """Broadcasts a weight/mask to ``shape`` or raises ValueError."""
    if w is None:
        return None
    try:
        out = torch.broadcast_shapes(w.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (or broadcast to it), got {tuple(w.shape)}"
        )
    if torch.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    return w.expand(shape)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(values: torch.Tensor, weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Reduces per-joint ``values`` ``(..., J)`` with optional ``weights`` ``(..., J)``.

    ``"none"``: weighted mean over J, shape ``(...)``. ``"mean"``: weighted mean over all
    entries. Entries with zero weight never contribute (even if they are NaN).
    """
    if weights is None:
        return values.mean() if reduction == "mean" else values.mean(dim=-1)
    num = torch.where(weights > 0, weights * values, torch.zeros_like(values))
    if reduction == "mean":
        return num.sum() / weights.sum()
    return num.sum(dim=-1) / weights.sum(dim=-1)


def _joint_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per point, ``(..., J, D) -> (..., J)``."""
    return torch.linalg.vector_norm(pred - gt, dim=-1)


# --------------------------------------------------------------------------------------
# Position errors
# --------------------------------------------------------------------------------------


def mpjpe(pred, gt, mask=None, reduction: str = "mean"):
    """Mean per-joint position error (Euclidean), without any alignment.

    Args:
        pred: predicted joints, ``(B, J, D)``, metres (or pixels for ``D = 2``).
        gt: ground-truth joints, ``(B, J, D)``, same units.
        mask: optional ``(B, J)`` bool/float joint weights; zero-weight joints are excluded.
        reduction: ``"mean"`` (scalar) or ``"none"`` (per-sample, ``(B,)``).

    Returns:
        The error, in the units of the input.
    """
    _check_reduction(reduction)
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_points(pred, gt)
    mask = _check_weights(mask, pred.shape[:-1])
    return k.out(_reduce(_joint_errors(pred, gt), mask, reduction), reduction == "mean")


def _root_center(x: torch.Tensor, root_index) -> torch.Tensor:
    """Subtracts the root joint (or the mean of several root joints) from ``(..., J, D)``."""
    idx = [root_index] if isinstance(root_index, (int, np.integer)) else list(root_index)
    if len(idx) == 0:
        raise ValueError("root_index must be an int or a non-empty sequence of ints")
    J = x.shape[-2]
    for i in idx:
        if not -J <= int(i) < J:
            raise ValueError(f"root_index {i} is out of range for {J} joints")
    root = x[..., [int(i) for i in idx], :].mean(dim=-2, keepdim=True)
    return x - root


def root_aligned_mpjpe(pred, gt, root_index: int | Sequence[int] = 0, mask=None,
                       reduction: str = "mean"):
    """MPJPE after root (pelvis) alignment: the root joint of each pose is moved to the origin.

    Args:
        pred: predicted joints, ``(B, J, D)``, metres.
        gt: ground-truth joints, ``(B, J, D)``, metres.
        root_index: index of the root joint; a sequence of indices uses their mean (e.g. the
            two hips for a pelvis midpoint). The root is taken from each pose even if masked.
        mask: optional ``(B, J)`` joint weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        The error, in the units of the input.
    """
    _check_reduction(reduction)
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_points(pred, gt)
    mask = _check_weights(mask, pred.shape[:-1])
    err = _joint_errors(_root_center(pred, root_index), _root_center(gt, root_index))
    return k.out(_reduce(err, mask, reduction), reduction == "mean")


def n_mpjpe(pred, gt, root_index: int | Sequence[int] | None = None, mask=None,
            reduction: str = "mean"):
    """Scale-normalised MPJPE (N-MPJPE, Rhodin et al., CVPR 2018).

    Each prediction is rescaled by the least-squares optimal factor
    ``s = <pred, gt> / <pred, pred>`` (per sample, over the weighted joints) before the
    MPJPE is taken. Only the scale is fitted: no rotation, no translation.

    Args:
        pred: predicted joints, ``(B, J, D)``, metres.
        gt: ground-truth joints, ``(B, J, D)``, metres.
        root_index: if given, both poses are first root-centred (see
            :func:`root_aligned_mpjpe`); ``None`` (default) uses the poses as they are,
            which suits already root-relative predictions.
        mask: optional ``(B, J)`` joint weights (used for the scale fit and the average).
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        The error, in the units of ``gt``.
    """
    _check_reduction(reduction)
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_points(pred, gt)
    mask = _check_weights(mask, pred.shape[:-1])
    if root_index is not None:
        pred, gt = _root_center(pred, root_index), _root_center(gt, root_index)
    w = torch.ones_like(pred[..., 0]) if mask is None else mask
    num = (w * (pred * gt).sum(dim=-1)).sum(dim=-1)
    den = (w * (pred * pred).sum(dim=-1)).sum(dim=-1)
    scale = num / den.clamp_min(torch.finfo(den.dtype).tiny)
    err = _joint_errors(scale[..., None, None] * pred, gt)
    return k.out(_reduce(err, mask, reduction), reduction == "mean")


# --------------------------------------------------------------------------------------
# Procrustes
# --------------------------------------------------------------------------------------


def _procrustes(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor | None,
                scale: bool):
    """Weighted similarity Procrustes on tensors; returns ``(R, s, t)``.

    Minimises ``sum_j w_j || gt_j - (s R pred_j + t) ||^2`` over proper rotations R
    (``det R = +1``), ``s >= 0`` and t (Umeyama, 1991).
    """
    w = torch.ones_like(pred[..., 0]) if weights is None else weights  # (..., J)
    wsum = w.sum(dim=-1, keepdim=True)[..., None]  # (..., 1, 1)
    mu_p = (w[..., None] * pred).sum(dim=-2, keepdim=True) / wsum
    mu_g = (w[..., None] * gt).sum(dim=-2, keepdim=True) / wsum
    p, g = pred - mu_p, gt - mu_g
    # Cross-covariance sum_j w_j g_j p_j^T, (..., D, D).
    cov = torch.einsum("...j,...jd,...je->...de", w, g, p)
    U, S, Vh = torch.linalg.svd(cov)
    # Reflection fix: flip the last singular direction when U V^T would be a reflection.
    sign = torch.where(torch.linalg.det(U) * torch.linalg.det(Vh) < 0, -1.0, 1.0).to(pred.dtype)
    d = torch.ones_like(S)
    d = torch.cat([d[..., :-1], sign[..., None]], dim=-1)
    R = U @ (d[..., :, None] * Vh)
    if scale:
        var_p = (w * (p * p).sum(dim=-1)).sum(dim=-1)
        s = (S * d).sum(dim=-1) / var_p.clamp_min(torch.finfo(var_p.dtype).tiny)
    else:
        s = torch.ones_like(S[..., 0])
    t = mu_g[..., 0, :] - s[..., None] * (R @ mu_p[..., 0, :, None])[..., 0]
    return R, s, t


def _apply_similarity(x: torch.Tensor, R: torch.Tensor, s: torch.Tensor, t: torch.Tensor):
    """``s * R @ x_j + t`` for every point of ``x`` ``(..., J, D)``."""
    return s[..., None, None] * (x @ R.transpose(-1, -2)) + t[..., None, :]


def _prepare_procrustes(pred, gt, weights):
    k = _Kind(pred, gt)
    pred, gt, w = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(weights, "weights")
    _check_points(pred, gt)
    w = _check_weights(w, pred.shape[:-1], "weights")
    return k, pred, gt, w


def procrustes_transform(pred, gt, scale: bool = True, weights=None):
    """Similarity transform that best maps ``pred`` onto ``gt`` (least squares, per sample).

    Solves ``min_{R, s, t} sum_j w_j || gt_j - (s R pred_j + t) ||^2`` in closed form via
    an SVD of the cross-covariance (Umeyama 1991). ``R`` is always a proper rotation
    (``det R = +1``): a mirrored prediction is never "explained away" by a reflection.

    Args:
        pred: source points, ``(B, J, D)``.
        gt: target points, ``(B, J, D)``.
        scale: fit the uniform scale ``s``; if False, ``s = 1`` (rigid alignment).
        weights: optional ``(B, J)`` non-negative point weights (e.g. visibility).

    Returns:
        ``(R, s, t)``: rotation ``(B, D, D)``, scale ``(B,)``, translation ``(B, D)``, such
        that the aligned points are ``s * pred @ R.T + t``.
    """
    k, pred, gt, w = _prepare_procrustes(pred, gt, weights)
    R, s, t = _procrustes(pred, gt, w, scale)
    return k.out(R), k.out(s), k.out(t)


def procrustes_align(pred, gt, scale: bool = True, weights=None, return_transform: bool = False):
    """Aligns ``pred`` to ``gt`` with the optimal similarity (rotation, scale, translation).

    See :func:`procrustes_transform` for the problem solved.

    Args:
        pred: points to align, ``(B, J, D)``.
        gt: target points, ``(B, J, D)``.
        scale: fit a uniform scale (similarity); if False, a rigid transform.
        weights: optional ``(B, J)`` point weights for the fit.
        return_transform: also return ``(R, s, t)``.

    Returns:
        The aligned prediction ``(B, J, D)``, or ``(aligned, R, s, t)`` if
        ``return_transform``.
    """
    k, pred, gt, w = _prepare_procrustes(pred, gt, weights)
    R, s, t = _procrustes(pred, gt, w, scale)
    aligned = _apply_similarity(pred, R, s, t)
    if return_transform:
        return k.out(aligned), k.out(R), k.out(s), k.out(t)
    return k.out(aligned)


def _pa_error(pred, gt, mask, reduction, scale):
    _check_reduction(reduction)
    k, pred, gt, w = _prepare_procrustes(pred, gt, mask)
    R, s, t = _procrustes(pred, gt, w, scale)
    err = _joint_errors(_apply_similarity(pred, R, s, t), gt)
    return k.out(_reduce(err, w, reduction), reduction == "mean")


def pa_mpjpe(pred, gt, mask=None, reduction: str = "mean", scale: bool = True):
    """MPJPE after Procrustes alignment of each prediction to its ground truth (PA-MPJPE).

    Args:
        pred: predicted joints, ``(B, J, D)``, metres.
        gt: ground-truth joints, ``(B, J, D)``, metres.
        mask: optional ``(B, J)`` joint weights, used both for the alignment fit and the
            average (invisible joints neither drive the alignment nor count).
        reduction: ``"mean"`` or ``"none"``.
        scale: fit the scale (standard PA-MPJPE); False gives rigid-aligned MPJPE.

    Returns:
        The error, in the units of ``gt``.
    """
    return _pa_error(pred, gt, mask, reduction, scale)


def pve(pred_verts, gt_verts, mask=None, reduction: str = "mean"):
    """Per-vertex error (PVE / V2V): mean Euclidean vertex distance, no alignment.

    Args:
        pred_verts: predicted vertices, ``(B, V, 3)``, metres.
        gt_verts: ground-truth vertices, ``(B, V, 3)``, metres (same topology).
        mask: optional ``(B, V)`` vertex weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        The error, in the units of the input.
    """
    return mpjpe(pred_verts, gt_verts, mask=mask, reduction=reduction)


def pa_pve(pred_verts, gt_verts, mask=None, reduction: str = "mean", scale: bool = True):
    """Per-vertex error after Procrustes alignment fitted on the vertices (PA-PVE).

    Args:
        pred_verts: predicted vertices, ``(B, V, 3)``, metres.
        gt_verts: ground-truth vertices, ``(B, V, 3)``, metres.
        mask: optional ``(B, V)`` vertex weights (alignment fit and average).
        reduction: ``"mean"`` or ``"none"``.
        scale: fit the scale (default) or only a rigid transform.

    Returns:
        The error, in the units of ``gt_verts``.
    """
    return _pa_error(pred_verts, gt_verts, mask, reduction, scale)


# --------------------------------------------------------------------------------------
# PCK / AUC / PCM
# --------------------------------------------------------------------------------------


def _thresholds_per_sample(threshold, normalizer, batch_shape, k: _Kind, name="threshold"):
    """Effective per-sample threshold ``(..., 1)`` = threshold (* normalizer)."""
    thr = k.tensor(threshold, name)
    if thr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(thr.shape)}")
    if normalizer is not None:
        norm = k.tensor(normalizer, "normalizer")
        try:
            ok = torch.broadcast_shapes(norm.shape, batch_shape) == batch_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"normalizer must have shape {tuple(batch_shape)} (one value per sample), "
                f"got {tuple(norm.shape)}"
            )
        thr = thr * norm.expand(batch_shape)
    return thr.expand(batch_shape)[..., None]


def _pck_values(err, thr):
    """1.0 where the error is strictly below the threshold, else 0.0."""
    return (err < thr).to(err.dtype)


def _pcm_from_pck(per_sample_pck: torch.Tensor, ratio: float, reduction: str):
    """Per-sample 0/1 (NaN where PCK is undefined) and its reduction."""
    hit = (per_sample_pck >= ratio - _PCM_TOL).to(per_sample_pck.dtype)
    hit = torch.where(torch.isnan(per_sample_pck), per_sample_pck, hit)
    return torch.nanmean(hit) if reduction == "mean" else hit


def _check_ratio(ratio) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return ratio


def pck(pred, gt, threshold, normalizer=None, mask=None, reduction: str = "mean"):
    """Percentage of correct keypoints: fraction of joints with error ``< threshold``.

    Works in 2D (pixels) and 3D (metres). The comparison is strict.

    Args:
        pred: predicted joints, ``(B, J, D)``.
        gt: ground-truth joints, ``(B, J, D)``.
        threshold: scalar distance threshold, in the units of the input; or, when
            ``normalizer`` is given, a fraction of it (e.g. 0.5 of the head size).
        normalizer: optional per-sample scale ``(B,)`` (bbox diagonal, head size, ...);
            the effective threshold of sample b is ``threshold * normalizer[b]``.
        mask: optional ``(B, J)`` joint weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        A fraction in ``[0, 1]`` (not a percentage).
    """
    _check_reduction(reduction)
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_points(pred, gt)
    mask = _check_weights(mask, pred.shape[:-1])
    thr = _thresholds_per_sample(threshold, normalizer, pred.shape[:-2], k)
    hits = _pck_values(_joint_errors(pred, gt), thr)
    return k.out(_reduce(hits, mask, reduction), reduction == "mean")


def auc(pred, gt, thresholds=DEFAULT_AUC_THRESHOLDS, normalizer=None, mask=None,
        reduction: str = "mean"):
    """Area under the PCK curve, as the mean PCK over a set of thresholds.

    Convention (MPI-INF-3DHP): ``AUC = mean_k PCK(thresholds[k])``, i.e. the normalised
    area under the PCK-vs-threshold curve sampled at the given thresholds (a Riemann
    mean, not the trapezoid rule). The default is 0 to 150 mm in 31 steps of 5 mm
    (:data:`DEFAULT_AUC_THRESHOLDS`, in metres). Pass evenly spaced thresholds for a
    true area.

    Args:
        pred: predicted joints, ``(B, J, D)``.
        gt: ground-truth joints, ``(B, J, D)``.
        thresholds: 1-D sequence of thresholds, units of the input (or fractions of
            ``normalizer``).
        normalizer: optional per-sample scale ``(B,)``, as in :func:`pck`.
        mask: optional ``(B, J)`` joint weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        A fraction in ``[0, 1]``.
    """
    _check_reduction(reduction)
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_points(pred, gt)
    mask = _check_weights(mask, pred.shape[:-1])
    ths = k.tensor(thresholds, "thresholds")
    if ths.ndim != 1 or ths.numel() == 0:
        raise ValueError(
            f"thresholds must be a non-empty 1-D sequence, got shape {tuple(ths.shape)}"
        )
    err = _joint_errors(pred, gt)
    hits = torch.zeros_like(err)
    for th in ths:
        hits = hits + _pck_values(err, _thresholds_per_sample(th, normalizer, pred.shape[:-2], k))
    return k.out(_reduce(hits / ths.numel(), mask, reduction), reduction == "mean")


def pcm(pred, gt, threshold, ratio: float = 0.9, normalizer=None, mask=None,
        reduction: str = "mean"):
    """Percentage of correct meshes (PCM): fraction of samples whose PCK is ``>= ratio``.

    A sample (a mesh's keypoint set) is "correct" when at least ``ratio`` of its
    (visible) points lie closer than ``threshold`` to the ground truth, as in "A Simple
    Neural Network Approach for 3D Human Mesh Keypoints Estimation".

    Args:
        pred: predicted points, ``(B, J, D)``.
        gt: ground-truth points, ``(B, J, D)``.
        threshold: distance threshold (units of the input, or fraction of ``normalizer``).
        ratio: required per-sample fraction of correct points, in ``[0, 1]``.
        normalizer: optional per-sample scale ``(B,)``, as in :func:`pck`.
        mask: optional ``(B, J)`` point weights.
        reduction: ``"mean"`` (fraction of correct samples; samples with no visible point
            are ignored) or ``"none"`` (per-sample 1.0 / 0.0, NaN with no visible point).

    Returns:
        A fraction in ``[0, 1]``, or per-sample indicators.
    """
    _check_reduction(reduction)
    ratio = _check_ratio(ratio)
    k = _Kind(pred, gt)
    per_sample = pck(k.tensor(pred, "pred"), k.tensor(gt, "gt"), threshold,
                     normalizer=normalizer,
                     mask=None if mask is None else k.tensor(mask, "mask"),
                     reduction="none")
    return k.out(_pcm_from_pck(per_sample, ratio, reduction), reduction == "mean")


# --------------------------------------------------------------------------------------
# Temporal
# --------------------------------------------------------------------------------------


def acceleration_error(pred_seq, gt_seq, mask=None, reduction: str = "mean",
                       fps: float | None = None):
    """Acceleration error: mean ``|| a_pred - a_gt ||`` over frames and joints.

    The acceleration is the second finite difference ``a_t = x_{t+1} - 2 x_t + x_{t-1}``,
    defined for the ``T - 2`` interior frames.

    Args:
        pred_seq: predicted sequence, ``(T, J, D)`` or ``(B, T, J, D)``, metres.
        gt_seq: ground-truth sequence, same shape.
        mask: optional validity, per frame ``(B, T)`` or per frame and joint ``(B, T, J)``;
            an acceleration counts only if its three frames are all valid (weights are
            multiplied).
        reduction: ``"mean"``, or ``"none"`` for one value per sequence (``(B,)``, or 0-d
            for a single ``(T, J, D)`` sequence).
        fps: if given, the result is divided by ``(1 / fps)^2``, i.e. in m/s^2;
            otherwise it is in metres per frame^2 (the usual reported "mm/frame^2" once
            scaled by 1000).

    Returns:
        The acceleration error.
    """
    _check_reduction(reduction)
    k = _Kind(pred_seq, gt_seq)
    pred, gt = k.tensor(pred_seq, "pred_seq"), k.tensor(gt_seq, "gt_seq")
    mask = k.tensor(mask, "mask")
    if pred.ndim < 3 or gt.ndim < 3:
        raise ValueError(
            f"sequences must have shape (T, J, D) or (B, T, J, D), got pred_seq "
            f"{tuple(pred.shape)} and gt_seq {tuple(gt.shape)}"
        )
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred_seq and gt_seq must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(gt.shape)}"
        )
    if pred.shape[-3] < 3:
        raise ValueError(f"acceleration needs at least 3 frames, got T={pred.shape[-3]}")
    if mask is not None:
        if mask.ndim == pred.ndim - 2:  # per frame (..., T)
            mask = _check_weights(mask, pred.shape[:-2])[..., None].expand(pred.shape[:-1])
        else:
            mask = _check_weights(mask, pred.shape[:-1])
        mask = mask[..., :-2, :] * mask[..., 1:-1, :] * mask[..., 2:, :]

    def accel(x):
        return x[..., 2:, :, :] - 2 * x[..., 1:-1, :, :] + x[..., :-2, :, :]

    err = _joint_errors(accel(pred), accel(gt))  # (..., T-2, J)
    if fps is not None:
        err = err * float(fps) ** 2
    # Flatten frames and joints so the per-sequence reduction spans both.
    flat = err.reshape(*err.shape[:-2], -1)
    fmask = None if mask is None else mask.reshape(*mask.shape[:-2], -1)
    return k.out(_reduce(flat, fmask, reduction), reduction == "mean")


# --------------------------------------------------------------------------------------
# Hungarian-matched metrics (unordered point sets)
# --------------------------------------------------------------------------------------


def _check_match_shapes(pred: torch.Tensor, gt: torch.Tensor) -> None:
    for name, x in (("pred", pred), ("gt", gt)):
        if x.ndim < 2:
            raise ValueError(f"{name} must have shape (B, N, D), got {tuple(x.shape)}")
    if pred.shape[:-2] != gt.shape[:-2] or pred.shape[-1] != gt.shape[-1]:
        raise ValueError(
            f"pred (B, N, D) and gt (B, M, D) must share batch shape and D, got pred "
            f"{tuple(pred.shape)} and gt {tuple(gt.shape)}"
        )
    if pred.shape[-2] < gt.shape[-2]:
        raise ValueError(
            f"pred must have at least as many points as gt, got N={pred.shape[-2]} < "
            f"M={gt.shape[-2]}"
        )


def _match(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Optimal assignment ``(..., M)`` of pred indices to gt points (no gradient)."""
    N, M, D = pred.shape[-2], gt.shape[-2], gt.shape[-1]
    p = pred.detach().reshape(-1, N, D).cpu().double().numpy()
    g = gt.detach().reshape(-1, M, D).cpu().double().numpy()
    vis = None if mask is None else (mask.detach().reshape(-1, M) > 0).cpu().numpy()
    perm = np.empty((p.shape[0], M), dtype=np.int64)
    for b in range(p.shape[0]):
        cost = cdist(g[b], p[b])  # (M, N) Euclidean distances
        if vis is not None:
            # Invisible gt points cost nothing: they take whatever predictions are left.
            cost[~vis[b]] = 0.0
        if not np.all(np.isfinite(cost)):
            raise ValueError(f"sample {b}: non-finite coordinates, cannot match")
        rows, cols = linear_sum_assignment(cost)
        perm[b, rows] = cols
    return torch.as_tensor(perm, device=pred.device).reshape(*gt.shape[:-1])


def _prepare_match(pred, gt, mask):
    k = _Kind(pred, gt)
    pred, gt, mask = k.tensor(pred, "pred"), k.tensor(gt, "gt"), k.tensor(mask, "mask")
    _check_match_shapes(pred, gt)
    mask = _check_weights(mask, gt.shape[:-1])
    return k, pred, gt, mask


def _gather(pred: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return torch.gather(pred, -2, perm[..., None].expand(*perm.shape, pred.shape[-1]))


def hungarian_match(pred, gt, mask=None):
    """Optimal one-to-one matching of unordered predicted points to ground-truth points.

    Minimises the sum of Euclidean distances ``sum_m || pred[perm[m]] - gt[m] ||`` per
    sample with :func:`scipy.optimize.linear_sum_assignment` (a loop over samples, on
    CPU; no gradient flows through the indices).

    Args:
        pred: predicted points, ``(B, N, D)`` with ``N >= M`` (extra predictions stay
            unmatched).
        gt: ground-truth points, ``(B, M, D)``.
        mask: optional ``(B, M)`` gt visibility: invisible gt points do not influence the
            matching and receive leftover predictions.

    Returns:
        ``perm``, integer ``(B, M)``: ``pred[b, perm[b, m]]`` is matched to ``gt[b, m]``,
        so ``pred[b, perm[b]]`` is ``pred`` reordered like ``gt``.
    """
    k, pred, gt, mask = _prepare_match(pred, gt, mask)
    return k.out_index(_match(pred, gt, mask))


def matched_mpjpe(pred, gt, mask=None, reduction: str = "mean"):
    """MPJPE after optimally re-ordering ``pred`` to ``gt`` (see :func:`hungarian_match`).

    Args:
        pred: unordered predicted points, ``(B, N, D)``, ``N >= M``.
        gt: ground-truth points, ``(B, M, D)``.
        mask: optional ``(B, M)`` gt weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        The error, in the units of the input (differentiable w.r.t. ``pred`` for tensors).
    """
    _check_reduction(reduction)
    k, pred, gt, mask = _prepare_match(pred, gt, mask)
    err = _joint_errors(_gather(pred, _match(pred, gt, mask)), gt)
    return k.out(_reduce(err, mask, reduction), reduction == "mean")


def matched_pck(pred, gt, threshold, normalizer=None, mask=None, reduction: str = "mean"):
    """PCK (see :func:`pck`) after Hungarian matching of ``pred`` to ``gt``.

    Args:
        pred: unordered predicted points, ``(B, N, D)``, ``N >= M``.
        gt: ground-truth points, ``(B, M, D)``.
        threshold: distance threshold (or fraction of ``normalizer``).
        normalizer: optional per-sample scale ``(B,)``.
        mask: optional ``(B, M)`` gt weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        A fraction in ``[0, 1]``.
    """
    _check_reduction(reduction)
    k, pred, gt, mask = _prepare_match(pred, gt, mask)
    matched = _gather(pred, _match(pred, gt, mask))
    thr = _thresholds_per_sample(threshold, normalizer, gt.shape[:-2], k)
    hits = _pck_values(_joint_errors(matched, gt), thr)
    return k.out(_reduce(hits, mask, reduction), reduction == "mean")


def matched_pcm(pred, gt, threshold, ratio: float = 0.9, normalizer=None, mask=None,
                reduction: str = "mean"):
    """PCM (see :func:`pcm`) after Hungarian matching of ``pred`` to ``gt``.

    Args:
        pred: unordered predicted points, ``(B, N, D)``, ``N >= M``.
        gt: ground-truth points, ``(B, M, D)``.
        threshold: distance threshold (or fraction of ``normalizer``).
        ratio: required per-sample fraction of correct points, in ``[0, 1]``.
        normalizer: optional per-sample scale ``(B,)``.
        mask: optional ``(B, M)`` gt weights.
        reduction: ``"mean"`` or ``"none"``.

    Returns:
        A fraction in ``[0, 1]``, or per-sample indicators.
    """
    _check_reduction(reduction)
    ratio = _check_ratio(ratio)
    k = _Kind(pred, gt)
    per_sample = matched_pck(k.tensor(pred, "pred"), k.tensor(gt, "gt"), threshold,
                             normalizer=normalizer,
                             mask=None if mask is None else k.tensor(mask, "mask"),
                             reduction="none")
    return k.out(_pcm_from_pck(per_sample, ratio, reduction), reduction == "mean")
