"""Tests for meshpose.metrics, each against an independent computation.

References used here: hand-derived numbers, brute-force Python loops, an independent
Umeyama implementation in numpy, scipy's Kabsch solver (Rotation.align_vectors), a
numerical optimisation (scipy.optimize.minimize), the complex-number closed form of 2D
similarity Procrustes, and exhaustive search over permutations.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import roma
import torch
from scipy.optimize import minimize, minimize_scalar
from scipy.spatial.transform import Rotation

from meshpose import metrics as M


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_similarity(rng, B):
    """Random proper rotations (B,3,3), scales (B,), translations (B,3), via roma."""
    torch.manual_seed(int(rng.integers(1 << 31)))
    R = roma.random_rotmat(B, dtype=torch.float64).numpy()
    s = rng.uniform(0.5, 2.0, size=B)
    t = rng.normal(size=(B, 3))
    return R, s, t


def apply_sim(x, R, s, t):
    return s[:, None, None] * np.einsum("bij,bkj->bki", R, x) + t[:, None, :]


def loop_mpjpe(pred, gt, w=None):
    """Brute-force per-sample weighted mean Euclidean error, with Python loops."""
    out = []
    for b in range(len(pred)):
        num = den = 0.0
        for j in range(len(pred[b])):
            wj = 1.0 if w is None else float(w[b][j])
            d = math.sqrt(sum((float(pred[b][j][c]) - float(gt[b][j][c])) ** 2
                              for c in range(len(pred[b][j]))))
            num += wj * d
            den += wj
        out.append(num / den)
    return np.array(out)


def umeyama_ref(X, Y, w=None):
    """Independent weighted Umeyama: (R, s, t) with Y ~ s R X + t, X/Y (J, D) numpy."""
    J, D = X.shape
    w = np.ones(J) if w is None else np.asarray(w, float)
    w = w / w.sum()
    mx, my = w @ X, w @ Y
    Xc, Yc = X - mx, Y - my
    sigma = (Yc * w[:, None]).T @ Xc
    U, S, Vt = np.linalg.svd(sigma)
    E = np.eye(D)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[-1, -1] = -1
    R = U @ E @ Vt
    var = np.sum(w * np.sum(Xc ** 2, axis=1))
    s = np.trace(np.diag(S) @ E) / var
    t = my - s * R @ mx
    return R, s, t


# --------------------------------------------------------------------------------------
# MPJPE family
# --------------------------------------------------------------------------------------


def test_mpjpe_hand_computed():
    gt = np.zeros((2, 4, 3))
    pred = np.array([
        [[3, 4, 0], [0, 0, 0], [0, 5, 12], [1, 2, 2]],    # errors 5, 0, 13, 3 -> 5.25
        [[6, 8, 0], [0, 0, 1], [2, 3, 6], [0, 0, 0]],     # errors 10, 1, 7, 0 -> 4.5
    ], dtype=float)
    gt = gt + np.arange(24).reshape(2, 4, 3)  # common offset does not change the errors
    pred = pred + np.arange(24).reshape(2, 4, 3)
    np.testing.assert_allclose(M.mpjpe(pred, gt, reduction="none"), [5.25, 4.5])
    assert M.mpjpe(pred, gt) == pytest.approx(4.875)
    assert isinstance(M.mpjpe(pred, gt), float)
    # pve is the same math on vertices
    assert M.pve(pred, gt) == pytest.approx(4.875)


def test_mpjpe_mask_matches_manual_average(rng):
    pred, gt = rng.normal(size=(5, 7, 3)), rng.normal(size=(5, 7, 3))
    mask = rng.random((5, 7)) > 0.4
    mask[:, 0] = True
    per = loop_mpjpe(pred, gt, mask)
    np.testing.assert_allclose(M.mpjpe(pred, gt, mask=mask, reduction="none"), per)
    # "mean" averages over all visible joints of the batch
    errs = np.linalg.norm(pred - gt, axis=-1)
    assert M.mpjpe(pred, gt, mask=mask) == pytest.approx(errs[mask].mean())
    # float weights
    wts = rng.random((5, 7))
    np.testing.assert_allclose(M.mpjpe(pred, gt, mask=wts, reduction="none"),
                               loop_mpjpe(pred, gt, wts))
    # a sample with no visible joints is NaN per sample and ignored by the mean
    mask[2] = False
    assert np.isnan(M.mpjpe(pred, gt, mask=mask, reduction="none")[2])
    assert M.mpjpe(pred, gt, mask=mask) == pytest.approx(errs[mask].mean())


def test_root_aligned_mpjpe(rng):
    gt = rng.normal(size=(3, 6, 3))
    shift = rng.normal(size=(3, 1, 3))
    assert M.mpjpe(gt + shift, gt) > 0.1
    assert M.root_aligned_mpjpe(gt + shift, gt) == pytest.approx(0.0, abs=1e-12)
    pred = rng.normal(size=(3, 6, 3))
    # brute force: subtract joint 2 of each pose, then loop
    ref = loop_mpjpe(pred - pred[:, 2:3], gt - gt[:, 2:3])
    np.testing.assert_allclose(M.root_aligned_mpjpe(pred, gt, root_index=2, reduction="none"), ref)
    # pelvis as the midpoint of two hips
    ref2 = loop_mpjpe(pred - pred[:, [1, 4]].mean(1, keepdims=True),
                      gt - gt[:, [1, 4]].mean(1, keepdims=True))
    np.testing.assert_allclose(
        M.root_aligned_mpjpe(pred, gt, root_index=[1, 4], reduction="none"), ref2)
    with pytest.raises(ValueError):
        M.root_aligned_mpjpe(pred, gt, root_index=6)


def test_n_mpjpe(rng):
    gt = rng.normal(size=(4, 8, 3))
    pred = 0.7 * gt
    assert M.mpjpe(pred, gt) > 0.1
    assert M.n_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-12)
    # against a 1-D numerical least-squares fit of the scale, per sample
    pred = gt * 1.3 + 0.1 * rng.normal(size=gt.shape)
    ref = []
    for b in range(4):
        res = minimize_scalar(lambda s: np.sum((s * pred[b] - gt[b]) ** 2),
                              bounds=(0.01, 10), method="bounded", options={"xatol": 1e-12})
        ref.append(np.linalg.norm(res.x * pred[b] - gt[b], axis=-1).mean())
    np.testing.assert_allclose(M.n_mpjpe(pred, gt, reduction="none"), ref, rtol=1e-6)
    # root-centred variant: translation no longer matters
    shifted = pred + rng.normal(size=(4, 1, 3))
    np.testing.assert_allclose(M.n_mpjpe(shifted, gt + 1.0, root_index=0, reduction="none"),
                               M.n_mpjpe(pred - pred[:, :1], gt - gt[:, :1], reduction="none"))


# --------------------------------------------------------------------------------------
# Procrustes
# --------------------------------------------------------------------------------------


def test_pa_mpjpe_zero_for_known_similarity(rng):
    gt = rng.normal(size=(6, 17, 3))
    R, s, t = random_similarity(rng, 6)
    pred = apply_sim(gt, R, s, t)
    assert M.mpjpe(pred, gt) > 0.3
    assert M.pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-10)
    # the recovered transform is the inverse of the applied one
    R2, s2, t2 = M.procrustes_transform(pred, gt)
    np.testing.assert_allclose(R2, np.transpose(R, (0, 2, 1)), atol=1e-10)
    np.testing.assert_allclose(s2, 1.0 / s, rtol=1e-10)
    np.testing.assert_allclose(apply_sim(pred, R2, s2, t2), gt, atol=1e-10)
    # same via torch / roma
    gt_t = torch.as_tensor(gt)
    pred_t = roma.RigidUnitQuat(roma.random_unitquat(6, dtype=torch.float64),
                                torch.randn(6, 3, dtype=torch.float64))[:, None].apply(gt_t)
    assert M.pa_mpjpe(pred_t, gt_t).item() == pytest.approx(0.0, abs=1e-10)
    # rigid variant: no scale fitted
    assert M.pa_mpjpe(pred, gt, scale=False) > 1e-3
    rigid = apply_sim(gt, R, np.ones(6), t)
    assert M.pa_mpjpe(rigid, gt, scale=False) == pytest.approx(0, abs=1e-10)


def test_reflection_is_not_explained_away(rng):
    gt = rng.normal(size=(4, 10, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    pa = M.pa_mpjpe(mirrored, gt, reduction="none")
    assert np.all(pa > 0.05)
    _, R, _, _ = M.procrustes_align(mirrored, gt, return_transform=True)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.einsum("bji,bjk->bik", R, R), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-10)
    # sanity: an orthogonal fit *allowing* reflections would reach zero error here
    for b in range(4):
        Xc, Yc = mirrored[b] - mirrored[b].mean(0), gt[b] - gt[b].mean(0)
        U, S, Vt = np.linalg.svd(Yc.T @ Xc)
        Q = U @ Vt
        assert np.linalg.det(Q) < 0
        s = S.sum() / np.sum(Xc ** 2)
        np.testing.assert_allclose(s * Xc @ Q.T, Yc, atol=1e-10)


def test_procrustes_matches_independent_umeyama(rng):
    pred, gt = rng.normal(size=(5, 9, 3)), rng.normal(size=(5, 9, 3))
    w = rng.random((5, 9))
    for weights in (None, w):
        aligned, R, s, t = M.procrustes_align(pred, gt, weights=weights, return_transform=True)
        for b in range(5):
            Rr, sr, tr = umeyama_ref(pred[b], gt[b], None if weights is None else w[b])
            np.testing.assert_allclose(R[b], Rr, atol=1e-10)
            np.testing.assert_allclose(s[b], sr, rtol=1e-10)
            np.testing.assert_allclose(t[b], tr, atol=1e-10)
            np.testing.assert_allclose(aligned[b], sr * pred[b] @ Rr.T + tr, atol=1e-10)
    ref = []
    for b in range(5):
        Rr, sr, tr = umeyama_ref(pred[b], gt[b])
        ref.append(np.linalg.norm(gt[b] - (sr * pred[b] @ Rr.T + tr), axis=-1).mean())
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt, reduction="none"), ref, rtol=1e-10)


def test_procrustes_rotation_matches_scipy_kabsch(rng):
    pred, gt = rng.normal(size=(4, 12, 3)), rng.normal(size=(4, 12, 3))
    R, s, _ = M.procrustes_transform(pred, gt)
    for b in range(4):
        Xc, Yc = pred[b] - pred[b].mean(0), gt[b] - gt[b].mean(0)
        rot, _ = Rotation.align_vectors(Yc, Xc)  # argmin_R sum ||Yc - R Xc||^2, det R = +1
        Rk = rot.as_matrix()
        np.testing.assert_allclose(R[b], Rk, atol=1e-8)
        sk = np.sum(Yc * (Xc @ Rk.T)) / np.sum(Xc ** 2)
        assert s[b] == pytest.approx(sk, rel=1e-8)


def test_procrustes_matches_numerical_optimisation(rng):
    pred, gt = rng.normal(size=(1, 5, 3)), rng.normal(size=(1, 5, 3))
    gt = apply_sim(pred, *random_similarity(rng, 1)) + 0.3 * gt  # a nearby target

    def objective(x):
        R = Rotation.from_rotvec(x[:3]).as_matrix()
        return np.sum((np.exp(x[3]) * pred[0] @ R.T + x[4:] - gt[0]) ** 2)

    best = None
    for start in Rotation.random(8, random_state=3).as_rotvec():
        res = minimize(objective, np.concatenate([start, [0.0], np.zeros(3)]), method="BFGS",
                       options={"gtol": 1e-10})
        best = res if best is None or res.fun < best.fun else best
    aligned = M.procrustes_align(pred, gt)
    closed = np.sum((aligned - gt) ** 2)
    assert closed <= best.fun + 1e-9
    assert closed == pytest.approx(best.fun, rel=1e-6)
    x = best.x
    opt = np.exp(x[3]) * pred[0] @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[4:]
    np.testing.assert_allclose(aligned[0], opt, atol=1e-4)


def test_procrustes_2d_matches_complex_closed_form(rng):
    # In 2D, a similarity without reflection is z -> a z + c with complex a, c; the
    # least-squares a is <p_c, g_c> / <p_c, p_c> with the Hermitian inner product.
    pred, gt = rng.normal(size=(3, 7, 2)), rng.normal(size=(3, 7, 2))
    aligned = M.procrustes_align(pred, gt)
    for b in range(3):
        p = pred[b, :, 0] + 1j * pred[b, :, 1]
        g = gt[b, :, 0] + 1j * gt[b, :, 1]
        pc, gc = p - p.mean(), g - g.mean()
        a = np.vdot(pc, gc) / np.vdot(pc, pc)
        z = a * pc + g.mean()
        np.testing.assert_allclose(aligned[b], np.stack([z.real, z.imag], -1), atol=1e-10)
    # two points can always be matched exactly by a 2D similarity
    two = rng.normal(size=(1, 2, 2))
    assert M.pa_mpjpe(rng.normal(size=(1, 2, 2)), two) == pytest.approx(0.0, abs=1e-10)


def test_pa_mask_fits_on_visible_joints_only(rng):
    gt = rng.normal(size=(3, 10, 3))
    R, s, t = random_similarity(rng, 3)
    pred = apply_sim(gt, R, s, t)
    pred[:, 7:] += 5.0  # corrupt joints 7..9
    mask = np.ones((3, 10), bool)
    mask[:, 7:] = False
    assert M.pa_mpjpe(pred, gt) > 0.5
    assert M.pa_mpjpe(pred, gt, mask=mask) == pytest.approx(0.0, abs=1e-10)
    # equals unmasked PA-MPJPE on the visible subset
    noisy = pred + 0.05 * rng.normal(size=pred.shape)
    np.testing.assert_allclose(M.pa_mpjpe(noisy, gt, mask=mask, reduction="none"),
                               M.pa_mpjpe(noisy[:, :7], gt[:, :7], reduction="none"), atol=1e-10)


def test_pa_pve_on_vertices(rng):
    verts = rng.normal(size=(2, 300, 3))
    R, s, t = random_similarity(rng, 2)
    noisy = apply_sim(verts, R, s, t) + 0.01 * rng.normal(size=verts.shape)
    assert M.pa_pve(noisy, verts) < 0.02 < M.pve(noisy, verts)
    ref = []
    for b in range(2):
        Rr, sr, tr = umeyama_ref(noisy[b], verts[b])
        ref.append(np.linalg.norm(sr * noisy[b] @ Rr.T + tr - verts[b], axis=-1).mean())
    np.testing.assert_allclose(M.pa_pve(noisy, verts, reduction="none"), ref, rtol=1e-9)


# --------------------------------------------------------------------------------------
# PCK / AUC / PCM
# --------------------------------------------------------------------------------------


def offsets(errors, dim=3, rng=None):
    """pred, gt pairs whose per-joint errors are exactly the given lengths (random directions)."""
    errors = np.asarray(errors, float)
    rng = rng or np.random.default_rng(0)
    dirs = rng.normal(size=errors.shape + (dim,))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    gt = rng.normal(size=errors.shape + (dim,))
    return gt + errors[..., None] * dirs, gt


def test_pck_hand_built():
    errs = [[0.01, 0.04, 0.06, 0.12, 0.2],     # < 0.05: 2/5; < 0.15: 4/5
            [0.001, 0.002, 0.3, 0.4, 0.149]]   # < 0.05: 2/5; < 0.15: 3/5
    pred, gt = offsets(errs)
    np.testing.assert_allclose(M.pck(pred, gt, 0.05, reduction="none"), [0.4, 0.4])
    np.testing.assert_allclose(M.pck(pred, gt, 0.15, reduction="none"), [0.8, 0.6])
    assert M.pck(pred, gt, 0.15) == pytest.approx(0.7)
    # normalizer: per-sample threshold = 0.5 * [0.1, 0.3] = [0.05, 0.15]
    np.testing.assert_allclose(M.pck(pred, gt, 0.5, normalizer=[0.1, 0.3], reduction="none"),
                               [0.4, 0.6])
    # mask: sample 0 keeps joints 0, 3, 4 -> 1/3 below 0.05
    mask = np.array([[1, 0, 0, 1, 1], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_allclose(M.pck(pred, gt, 0.05, mask=mask, reduction="none"), [1 / 3, 0.4])
    assert M.pck(pred, gt, 0.05, mask=mask) == pytest.approx(3 / 8)


def test_pck_is_strict_at_the_threshold():
    # errors exactly representable: 0, 0.5, 0.25 along x
    gt = np.zeros((1, 3, 3))
    pred = gt.copy()
    pred[0, 1, 0], pred[0, 2, 0] = 0.5, 0.25
    assert M.pck(pred, gt, 0.5) == pytest.approx(2 / 3)   # 0.5 is not < 0.5
    assert M.pck(pred, gt, 0.0) == pytest.approx(0.0)     # nothing is < 0
    # thresholds 0, 0.25, 0.5, 0.75: PCK 0, 1/3, 2/3, 1 -> AUC 0.5
    assert M.auc(pred, gt, [0.0, 0.25, 0.5, 0.75]) == pytest.approx(0.5)


def test_pcm_ratio_reached_despite_rounding():
    # 9 of 10 points correct with float weights 0.1 in float32: PCK ~ 0.9 must count as >= 0.9
    gt = torch.zeros(1, 10, 3)
    pred = gt.clone()
    pred[0, 0, 0] = 1.0
    w = torch.full((1, 10), 0.1)
    assert M.pcm(pred, gt, 0.5, ratio=0.9, mask=w).item() == 1.0
    assert M.pcm(pred, gt, 0.5, ratio=0.91, mask=w).item() == 0.0
    # float64 weights whose exact correct fraction is 1155/1390 but whose floating-point
    # weighted average rounds just below float(1155/1390)
    cents = [64, 28, 5, 3, 82, 91, 61, 73, 55, 94]
    w64 = np.array([c / 100 for c in cents])[::-1][None].copy()  # point 0 (wrong) gets 0.94
    ratio = sum(cents[:9]) / sum(cents)
    assert M.pcm(pred.double().numpy(), gt.double().numpy(), 0.5, ratio=ratio, mask=w64) == 1.0
    assert M.pcm(pred.double().numpy(), gt.double().numpy(), 0.5, ratio=ratio + 1e-3,
                 mask=w64) == 0.0


def test_pck_2d_pixels():
    errs = [[1.0, 4.0, 9.0, 11.0]]
    pred, gt = offsets(errs, dim=2)
    assert M.pck(pred * 100, gt * 100, 500.0) == pytest.approx(0.5)
    assert M.pck(pred, gt, 10.0) == pytest.approx(0.75)


def test_auc_hand_built():
    errs = [[0.0725, 0.0725], [0.0725, 0.2]]
    pred, gt = offsets(errs)
    # default thresholds 0, 5, ..., 150 mm: 0.0725 is below 16 of the 31 thresholds (75..150 mm)
    np.testing.assert_allclose(M.auc(pred, gt, reduction="none"), [16 / 31, 8 / 31])
    assert M.auc(pred, gt) == pytest.approx(12 / 31)
    # brute force over a custom threshold set
    ths = np.linspace(0.0, 0.3, 13)
    e = np.array(errs)
    ref = np.mean([(e < th).mean(-1) for th in ths], axis=0)
    np.testing.assert_allclose(M.auc(pred, gt, ths, reduction="none"), ref)
    np.testing.assert_allclose(M.auc(pred, gt, ths), np.mean([M.pck(pred, gt, th) for th in ths]))


def test_pcm_hand_built():
    # 4 samples x 10 points; correct counts (error < 0.1): 10, 9, 8, 0
    errs = np.full((4, 10), 0.05)
    errs[1, :1] = 0.5
    errs[2, :2] = 0.5
    errs[3] = 0.5
    pred, gt = offsets(errs)
    np.testing.assert_allclose(M.pcm(pred, gt, 0.1, ratio=0.9, reduction="none"), [1, 1, 0, 0])
    assert M.pcm(pred, gt, 0.1, ratio=0.9) == pytest.approx(0.5)
    assert M.pcm(pred, gt, 0.1, ratio=0.8) == pytest.approx(0.75)
    assert M.pcm(pred, gt, 0.1, ratio=1.0) == pytest.approx(0.25)
    assert M.pcm(pred, gt, 0.1, ratio=0.0) == pytest.approx(1.0)
    assert M.pcm(pred, gt, 0.6, ratio=1.0) == pytest.approx(1.0)
    # mask hides the two bad points of sample 2 -> 8/8 correct
    mask = np.ones((4, 10), bool)
    mask[2, :2] = False
    np.testing.assert_allclose(M.pcm(pred, gt, 0.1, mask=mask, reduction="none"), [1, 1, 1, 0])
    with pytest.raises(ValueError):
        M.pcm(pred, gt, 0.1, ratio=1.5)


# --------------------------------------------------------------------------------------
# Acceleration
# --------------------------------------------------------------------------------------


def test_acceleration_constant_velocity_is_zero(rng):
    x0, v = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    t = np.arange(9)[None, :, None, None]
    seq = x0[:, None] + t * v[:, None]          # (B, T, J, 3), constant velocity
    gt = x0[:, None] + 0.5 * t * v[:, None]     # a different constant velocity
    assert M.mpjpe(seq.reshape(-1, 5, 3), gt.reshape(-1, 5, 3)) > 0.1
    assert M.acceleration_error(seq, gt) == pytest.approx(0.0, abs=1e-12)
    assert M.acceleration_error(seq[0], gt[0]) == pytest.approx(0.0, abs=1e-12)


def test_acceleration_hand_computed():
    # one joint moving along x: 0, 0, 1, 0, 0 -> accelerations 1, -2, 1 -> mean |.| = 4/3
    x = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    pred = np.zeros((5, 2, 3))
    pred[:, 0, 0] = x
    gt = np.zeros((5, 2, 3))
    # joint 1 has zero error -> mean over 3 frames x 2 joints = 4 / 6
    assert M.acceleration_error(pred, gt) == pytest.approx(4 / 6)
    assert M.acceleration_error(pred, gt, mask=np.array([[1, 0]] * 5)) == pytest.approx(4 / 3)
    # fps scaling: per-frame^2 -> per-second^2
    assert M.acceleration_error(pred, gt, fps=30) == pytest.approx(4 / 6 * 900)
    # per-frame mask: frame 4 invalid -> only accelerations at t=1, 2 remain: (1 + 2) / 4
    fmask = np.array([1, 1, 1, 1, 0], bool)
    assert M.acceleration_error(pred, gt, mask=fmask) == pytest.approx(3 / 4)
    # batched: per-sequence results
    batch = np.stack([pred, 2 * pred])
    np.testing.assert_allclose(M.acceleration_error(batch, np.zeros_like(batch), reduction="none"),
                               [4 / 6, 8 / 6])


def test_acceleration_matches_loops(rng):
    pred, gt = rng.normal(size=(2, 6, 4, 3)), rng.normal(size=(2, 6, 4, 3))
    ref = []
    for b in range(2):
        vals = []
        for t in range(1, 5):
            for j in range(4):
                ap = pred[b, t + 1, j] - 2 * pred[b, t, j] + pred[b, t - 1, j]
                ag = gt[b, t + 1, j] - 2 * gt[b, t, j] + gt[b, t - 1, j]
                vals.append(math.dist(ap, ag))
        ref.append(sum(vals) / len(vals))
    np.testing.assert_allclose(M.acceleration_error(pred, gt, reduction="none"), ref)


# --------------------------------------------------------------------------------------
# Hungarian matching
# --------------------------------------------------------------------------------------


def test_hungarian_inverts_a_permutation(rng):
    gt = rng.normal(size=(4, 9, 3))
    perms = np.stack([rng.permutation(9) for _ in range(4)])
    pred = np.take_along_axis(gt, perms[..., None], axis=1)  # pred[b, i] = gt[b, perms[b, i]]
    assert M.mpjpe(pred, gt) > 0.5
    idx = M.hungarian_match(pred, gt)
    assert idx.dtype == np.int64 and idx.shape == (4, 9)
    for b in range(4):
        np.testing.assert_array_equal(perms[b][idx[b]], np.arange(9))  # idx = perms^-1
    np.testing.assert_allclose(np.take_along_axis(pred, idx[..., None], axis=1), gt)
    assert M.matched_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-12)
    assert M.matched_pck(pred + 0.01, gt, 0.05) == pytest.approx(1.0)
    assert M.matched_pcm(pred, gt, 0.01) == pytest.approx(1.0)


def test_hungarian_matches_brute_force(rng):
    J = 6
    pred, gt = rng.normal(size=(3, J, 3)), rng.normal(size=(3, J, 3))
    got = M.matched_mpjpe(pred, gt, reduction="none")
    idx = M.hungarian_match(pred, gt)
    for b in range(3):
        costs = {p: sum(math.dist(pred[b, p[j]], gt[b, j]) for j in range(J))
                 for p in itertools.permutations(range(J))}
        best = min(costs.values())
        assert got[b] == pytest.approx(best / J, rel=1e-12)
        assert costs[tuple(idx[b])] == pytest.approx(best, rel=1e-12)
    # matched PCK / PCM equal the PCK / PCM of the optimally reordered prediction
    reordered = np.take_along_axis(pred, idx[..., None], axis=1)
    np.testing.assert_allclose(M.matched_pck(pred, gt, 1.0, reduction="none"),
                               M.pck(reordered, gt, 1.0, reduction="none"))
    np.testing.assert_allclose(M.matched_pcm(pred, gt, 1.0, ratio=0.5, reduction="none"),
                               M.pcm(reordered, gt, 1.0, ratio=0.5, reduction="none"))


def test_hungarian_extra_predictions_and_mask(rng):
    gt = rng.normal(size=(2, 4, 3))
    distractors = rng.normal(size=(2, 3, 3)) + 10.0
    pred = np.concatenate([distractors, gt[:, ::-1]], axis=1)  # N = 7 > M = 4
    idx = M.hungarian_match(pred, gt)
    np.testing.assert_array_equal(idx, [[6, 5, 4, 3]] * 2)
    assert M.matched_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-12)
    # mask: invisible gt points neither count nor steer the matching
    pred2, gt2 = rng.normal(size=(1, 5, 3)), rng.normal(size=(1, 5, 3))
    mask = np.array([[1, 1, 0, 1, 0]], bool)
    got = M.matched_mpjpe(pred2, gt2, mask=mask)
    vis = [0, 1, 3]
    best = min(sum(math.dist(pred2[0, p[k]], gt2[0, j]) for k, j in enumerate(vis))
               for p in itertools.permutations(range(5), 3))
    assert got == pytest.approx(best / 3, rel=1e-12)


def test_matched_mpjpe_gradient_flows():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 5, 3, generator=g)
    pred = gt[:, torch.tensor([3, 0, 4, 1, 2])] + 0.1 * torch.randn(2, 5, 3, generator=g)
    pred.requires_grad_(True)
    M.matched_mpjpe(pred, gt).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------
# numpy / torch, reductions, errors
# --------------------------------------------------------------------------------------

ALL_FUNCS = [
    ("mpjpe", lambda p, g, **k: M.mpjpe(p, g, **k)),
    ("root_aligned_mpjpe", lambda p, g, **k: M.root_aligned_mpjpe(p, g, **k)),
    ("n_mpjpe", lambda p, g, **k: M.n_mpjpe(p, g, **k)),
    ("pa_mpjpe", lambda p, g, **k: M.pa_mpjpe(p, g, **k)),
    ("pve", lambda p, g, **k: M.pve(p, g, **k)),
    ("pa_pve", lambda p, g, **k: M.pa_pve(p, g, **k)),
    ("pck", lambda p, g, **k: M.pck(p, g, 1.0, **k)),
    ("pck_norm", lambda p, g, **k: M.pck(p, g, 0.5, normalizer=np.array([1.0, 2, 3, 4]), **k)),
    ("auc", lambda p, g, **k: M.auc(p, g, np.linspace(0, 2, 5), **k)),
    ("pcm", lambda p, g, **k: M.pcm(p, g, 1.5, ratio=0.5, **k)),
    ("matched_mpjpe", lambda p, g, **k: M.matched_mpjpe(p, g, **k)),
    ("matched_pck", lambda p, g, **k: M.matched_pck(p, g, 1.0, **k)),
    ("matched_pcm", lambda p, g, **k: M.matched_pcm(p, g, 1.5, ratio=0.5, **k)),
]


@pytest.mark.parametrize("name,fn", ALL_FUNCS, ids=[n for n, _ in ALL_FUNCS])
def test_numpy_torch_agree_and_shapes(name, fn, rng):
    pred, gt = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 3))
    mask = rng.random((4, 6)) > 0.3
    mask[:, :2] = True
    for kw in ({}, {"mask": mask}):
        m_np = fn(pred, gt, **kw)
        n_np = fn(pred, gt, reduction="none", **kw)
        assert isinstance(m_np, float)
        assert isinstance(n_np, np.ndarray) and n_np.shape == (4,)
        tkw = {k: torch.as_tensor(v) for k, v in kw.items()}
        m_t = fn(torch.as_tensor(pred), torch.as_tensor(gt), **tkw)
        n_t = fn(torch.as_tensor(pred), torch.as_tensor(gt), reduction="none", **tkw)
        assert isinstance(m_t, torch.Tensor) and m_t.shape == ()
        assert n_t.shape == (4,) and n_t.dtype == torch.float64
        assert m_t.item() == pytest.approx(m_np, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(n_t.numpy(), n_np, rtol=1e-10, atol=1e-12)
        # float32 in -> float32 out, same numbers up to float32 precision
        m_32 = fn(torch.as_tensor(pred, dtype=torch.float32),
                  torch.as_tensor(gt, dtype=torch.float32), **tkw)
        assert m_32.dtype == torch.float32
        assert m_32.item() == pytest.approx(m_np, rel=1e-4, abs=1e-5)
    # without a mask, "mean" is the mean of the per-sample values (equal joint counts)
    assert fn(pred, gt) == pytest.approx(float(np.mean(fn(pred, gt, reduction="none"))))


def test_acceleration_numpy_torch_agree(rng):
    pred, gt = rng.normal(size=(3, 7, 4, 3)), rng.normal(size=(3, 7, 4, 3))
    a_np = M.acceleration_error(pred, gt, reduction="none")
    a_t = M.acceleration_error(torch.as_tensor(pred), torch.as_tensor(gt), reduction="none")
    assert a_np.shape == (3,) and isinstance(a_t, torch.Tensor)
    np.testing.assert_allclose(a_t.numpy(), a_np, rtol=1e-12)


def test_procrustes_torch_output_and_gradient(rng):
    pred = torch.tensor(rng.normal(size=(3, 8, 3)), requires_grad=True)
    gt = torch.tensor(rng.normal(size=(3, 8, 3)))
    aligned, R, s, t = M.procrustes_align(pred, gt, return_transform=True)
    assert aligned.shape == (3, 8, 3) and R.shape == (3, 3, 3)
    assert s.shape == (3,) and t.shape == (3, 3)
    np.testing.assert_allclose(aligned.detach().numpy(),
                               M.procrustes_align(pred.detach().numpy(), gt.numpy()), atol=1e-12)
    M.pa_mpjpe(pred, gt).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_unbatched_and_extra_batch_dims(rng):
    pred, gt = rng.normal(size=(2, 3, 5, 3)), rng.normal(size=(2, 3, 5, 3))
    per = M.pa_mpjpe(pred, gt, reduction="none")
    assert per.shape == (2, 3)
    flat = M.pa_mpjpe(pred.reshape(6, 5, 3), gt.reshape(6, 5, 3), reduction="none")
    np.testing.assert_allclose(per.reshape(-1), flat)
    assert M.mpjpe(pred[0, 0], gt[0, 0]) == pytest.approx(loop_mpjpe(pred[0, :1], gt[0, :1])[0])
    assert M.hungarian_match(pred, gt).shape == (2, 3, 5)


def test_shape_errors(rng):
    a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 6, 3))
    for fn in (M.mpjpe, M.n_mpjpe, M.pa_mpjpe, M.pve, M.pa_pve, M.root_aligned_mpjpe,
               M.procrustes_align, M.procrustes_transform, lambda p, g: M.pck(p, g, 0.1),
               lambda p, g: M.auc(p, g), lambda p, g: M.pcm(p, g, 0.1)):
        with pytest.raises(ValueError, match="same shape"):
            fn(a, b)
    with pytest.raises(ValueError, match="same shape"):
        M.mpjpe(a, a[..., :2])
    with pytest.raises(ValueError, match="mask"):
        M.mpjpe(a, a, mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="normalizer"):
        M.pck(a, a, 0.1, normalizer=np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        M.mpjpe(a, a, reduction="sum")
    with pytest.raises(ValueError, match="shape"):
        M.mpjpe(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="at least 3 frames"):
        M.acceleration_error(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        M.acceleration_error(np.zeros((5, 4, 3)), np.zeros((6, 4, 3)))
    # Hungarian: more gt than pred points, or different batch / dimension
    with pytest.raises(ValueError, match="at least as many"):
        M.hungarian_match(a, b)
    with pytest.raises(ValueError, match="batch shape and D"):
        M.matched_mpjpe(b, a[..., :2])
    with pytest.raises(ValueError, match="batch shape and D"):
        M.matched_pck(b[:1], a, 0.1)
