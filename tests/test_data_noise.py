"""Detector-like 2D noise: each error type measured against its configuration."""
from __future__ import annotations

import math
import time

import pytest
import torch

from meshpose.data.detector_noise import NoiseConfig, add_detector_noise
from meshpose.errors import MeshposeError
from meshpose.joints import flip_permutation, get_joint_set

COCO = get_joint_set("coco17")


def poses(batch: int, seed: int = 0, joints: int = 17):
    """(B, J, 2) random keypoints in a 200-600 px person box, and (B,) person sizes (bbox diagonal)."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(batch, joints, 2, generator=g) * 300 + 200
    size = (kp.amax(1) - kp.amin(1)).norm(dim=-1)
    return kp, size


def zero(**kw) -> NoiseConfig:
    """No noise except the given options."""
    cfg = NoiseConfig.none()
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    return cfg


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_zero_noise_is_identity():
    kp, size = poses(64)
    noisy, conf = add_detector_noise(kp, "coco17", size, NoiseConfig.none(), gen())
    assert torch.equal(noisy, kp)
    assert torch.equal(conf, torch.ones(64, 17))


def test_gaussian_std_matches_config():
    kp, size = poses(20000)
    noisy, conf = add_detector_noise(kp, "coco17", size, zero(gaussian_std=0.04), gen(1))
    ratio = ((noisy - kp) / size[:, None, None]).std() / 0.04  # per coordinate, 680k samples
    assert abs(ratio - 1) < 0.05
    assert ((conf > 0) & (conf <= 1)).all()


def test_jitter_and_miss_lengths_are_in_range():
    kp, size = poses(4000)
    for option, rng in [("jitter", (0.03, 0.08)), ("miss", (0.2, 0.5))]:
        cfg = zero(**{f"{option}_prob": 1.0, f"{option}_range": rng})
        noisy, _ = add_detector_noise(kp, "coco17", size, cfg, gen(2))
        frac = (noisy - kp).norm(dim=-1) / size[:, None]
        assert frac.min() >= rng[0] - 1e-5 and frac.max() <= rng[1] + 1e-5, option
        assert abs(frac.mean().item() - sum(rng) / 2) < 0.01 * sum(rng), option  # uniform length
        angle = torch.atan2(*(noisy - kp).unbind(-1)[::-1])
        assert abs(angle.cos().mean()) < 0.02 and abs(angle.sin().mean()) < 0.02  # any direction


def test_inversion_moves_onto_the_counterpart():
    kp, size = poses(256)
    lw, rw = COCO.index("left_wrist"), COCO.index("right_wrist")
    cfg = zero(inversion_prob={"left_wrist": 1.0, "nose": 1.0})  # nose has no counterpart
    noisy, conf = add_detector_noise(kp, "coco17", size, cfg, gen(3))
    assert torch.equal(noisy[:, lw], kp[:, rw])
    others = [j for j in range(17) if j != lw]
    assert torch.equal(noisy[:, others], kp[:, others])
    err = (kp[:, rw] - kp[:, lw]).norm(dim=-1)
    torch.testing.assert_close(conf[:, lw], torch.exp(-0.5 * (err / (0.1 * size)) ** 2))


def test_whole_body_flip_is_the_flip_permutation():
    for name in ("coco17", "h36m17", "mpii16"):
        js = get_joint_set(name)
        kp, size = poses(128, joints=len(js))
        noisy, _ = add_detector_noise(kp, name, size, zero(flip_prob=1.0), gen(4))
        assert torch.equal(noisy, kp[:, flip_permutation(name)]), name


def test_swap_uses_another_person():
    kp, size = (x.double() for x in poses(512))
    noisy, _ = add_detector_noise(kp, "coco17", size, zero(swap_prob=1.0, swap_offset=(0.3, 0.3)), gen(5))
    # every joint comes from one other person's pose, rescaled: the shape is that person's
    centre = (kp.amax(1) + kp.amin(1)) / 2
    new_centre = (noisy.amax(1) + noisy.amin(1)) / 2
    torch.testing.assert_close((new_centre - centre).norm(dim=-1) / size, torch.full((512,), 0.3, dtype=torch.float64))
    new_size = (noisy.amax(1) - noisy.amin(1)).norm(dim=-1)
    torch.testing.assert_close(new_size, size, rtol=1e-6, atol=0)
    normalised = lambda p, c, s: (p - c[:, None]) / s[:, None, None]  # noqa: E731
    a, b = normalised(noisy, new_centre, size), normalised(kp, centre, size)
    # matches some other sample's normalised pose, never its own
    d = torch.cdist(a.flatten(1), b.flatten(1))
    best = d.argmin(1)
    assert noisy.dtype == torch.float64 and (d.min(1).values < 1e-6).all() and (best != torch.arange(512)).all()


def test_dropout_fraction_is_binomial():
    kp, size = poses(5000)
    p = 0.2
    noisy, conf = add_detector_noise(kp, "coco17", size, zero(dropout_prob=p), gen(6))
    n = conf.numel()
    frac = (conf == 0).float().mean().item()
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(noisy, kp)  # dropout_fill None keeps the positions
    noisy, conf = add_detector_noise(kp, "coco17", size, zero(dropout_prob={"nose": 1.0}, dropout_fill=0.0), gen(6))
    assert (conf[:, 0] == 0).all() and (noisy[:, 0] == 0).all() and (conf[:, 1:] == 1).all()


def test_confidence_decreases_with_error():
    kp, size = poses(20000)
    cfg = NoiseConfig(confidence_noise=0.1, jitter_prob=0.2, miss_prob=0.1, inversion_prob=0.05)
    noisy, conf = add_detector_noise(kp, "coco17", size, cfg, gen(7))
    err = ((noisy - kp).norm(dim=-1) / size[:, None]).flatten()
    conf = conf.flatten()
    order = err.argsort()
    means = torch.stack([c.mean() for c in conf[order].chunk(20)])  # 20 error quantile bins
    assert (means[1:] <= means[:-1] + 0.01).all(), means
    assert means[0] > 0.85 and means[-1] < 0.1
    assert ((conf >= 0) & (conf <= 1)).all()


def test_same_seed_same_noise():
    kp, size = poses(100)
    cfg = NoiseConfig(swap_prob=0.05, dropout_prob=0.1, flip_prob=0.2)
    a = add_detector_noise(kp, "coco17", size, cfg, gen(8))
    b = add_detector_noise(kp, "coco17", size, cfg, gen(8))
    c = add_detector_noise(kp, "coco17", size, cfg, gen(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_non_finite_joints_stay_missing():
    kp, size = poses(8)
    kp[:, 3] = float("nan")
    noisy, conf = add_detector_noise(kp, "coco17", size, NoiseConfig(), gen(10))
    assert torch.isnan(noisy[:, 3]).all() and (conf[:, 3] == 0).all()
    assert torch.isfinite(noisy[:, :3]).all()


def test_bad_configs():
    kp, size = poses(4)
    with pytest.raises(MeshposeError, match="exceed 1"):
        add_detector_noise(kp, "coco17", size, zero(jitter_prob=0.6, miss_prob=0.5), gen())
    with pytest.raises(MeshposeError, match="not in 'coco17'"):
        add_detector_noise(kp, "coco17", size, zero(inversion_prob={"thorax": 1.0}), gen())
    with pytest.raises(MeshposeError, match="17 joints"):
        add_detector_noise(kp, "coco17", size, zero(dropout_prob=[0.1] * 16), gen())
    with pytest.raises(MeshposeError, match=r"\(B, 16, 2\)"):
        add_detector_noise(kp, "mpii16", size, NoiseConfig(), gen())
    with pytest.raises(MeshposeError, match="low <= high"):
        NoiseConfig(miss_range=(0.5, 0.1))


def test_large_batch_is_fast():
    """100k people in well under a second on one CPU thread.

    Timed single-threaded (best of 3): on a shared 2-core machine, torch's intra-op threads
    stall whenever another process holds a core, which measures the neighbours, not this code.
    """
    kp, size = poses(100_000)
    cfg = NoiseConfig(swap_prob=0.02, dropout_prob=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        add_detector_noise(kp[:1000], "coco17", size[:1000], cfg, gen())  # warm-up
        times = []
        for seed in range(3):
            start = time.perf_counter()
            noisy, conf = add_detector_noise(kp, "coco17", size, cfg, gen(seed))
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert noisy.shape == (100_000, 17, 2) and conf.shape == (100_000, 17)
    assert min(times) < 1.0, f"{min(times):.2f} s"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_with_a_cpu_generator():
    kp, size = poses(1000)
    cfg = NoiseConfig(swap_prob=0.05, dropout_prob=0.1, flip_prob=0.2)
    a = add_detector_noise(kp, "coco17", size, cfg, gen(12))
    b = add_detector_noise(kp.cuda(), "coco17", size.cuda(), cfg, gen(12))
    assert b[0].device.type == "cuda"
    torch.testing.assert_close(b[0].cpu(), a[0], equal_nan=True, rtol=1e-5, atol=1e-3)  # GPU sin/cos ulps
    torch.testing.assert_close(b[1].cpu(), a[1], rtol=1e-4, atol=1e-5)
    # a CUDA generator draws on the GPU
    g = torch.Generator(device="cuda").manual_seed(0)
    noisy, conf = add_detector_noise(kp.cuda(), "coco17", size.cuda(), cfg, g)
    assert noisy.device.type == "cuda" and torch.isfinite(noisy).all()
