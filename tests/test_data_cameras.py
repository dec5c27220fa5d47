"""Virtual cameras: hand-computed geometry, ranges, reproducibility."""
from __future__ import annotations

import math

import pytest
import torch

from meshpose.data.cameras import (
    CameraRanges,
    Cameras,
    look_at_rotation,
    project,
    sample_cameras,
    to_camera,
    visibility,
)
from meshpose.errors import MeshposeError

D64 = torch.float64


def fixed(distance=4.0, elevation=0.0, azimuth=0.0, roll=0.0, focal=1000.0, size=(1000, 800), jitter=0.0):
    """One camera with exactly these parameters (degenerate ranges)."""
    ranges = CameraRanges(
        focal=(focal, focal), image_sizes=(size,), distance=(distance, distance),
        elevation=(elevation, elevation), azimuth=(azimuth, azimuth), roll=(roll, roll),
        principal_jitter=jitter,
    )
    return sample_cameras(ranges, 1, torch.Generator().manual_seed(0), dtype=D64)


def cam_points(cams, offsets, root=(0.3, -0.2, 0.9)):
    """Camera coordinates and pixels of points root + offsets (J, 3) for a batch-1 camera."""
    root = torch.tensor([root], dtype=D64)
    pts = root[:, None] + torch.tensor(offsets, dtype=D64)[None]
    xc = to_camera(pts, cams, root)
    return xc, project(xc, cams)


def test_rotations_are_proper():
    g = torch.Generator().manual_seed(1)
    cams = sample_cameras(CameraRanges(), 500, g, dtype=D64)
    eye = torch.eye(3, dtype=D64).expand(500, 3, 3)
    torch.testing.assert_close(cams.R @ cams.R.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(cams.R), torch.ones(500, dtype=D64))
    assert cams.R.shape == (500, 3, 3) and cams.t.shape == (500, 3)
    assert cams.focal.shape == cams.principal.shape == cams.image_size.shape == (500, 2)


def test_root_straight_ahead_projects_to_principal_point():
    for az, el, ro in [(0, 0, 0), (37, 20, 8), (-120, -15, -30)]:
        cams = fixed(distance=5.0, azimuth=az, elevation=el, roll=ro, jitter=25.0)
        xc, uv = cam_points(cams, [[0.0, 0.0, 0.0]])
        torch.testing.assert_close(xc[0, 0], torch.tensor([0, 0, 5.0], dtype=D64))
        torch.testing.assert_close(uv[0, 0], cams.principal[0])
    cams = fixed()  # no jitter: the image centre
    torch.testing.assert_close(cams.principal[0], torch.tensor([500.0, 400.0], dtype=D64))


def test_azimuth_zero_sees_the_front():
    # Anny: +z up, faces -y, left = +x. Camera in front: at root - d*y; body's left on image right.
    cams = fixed(distance=4.0)
    torch.testing.assert_close(cams.centers(torch.zeros(1, 3, dtype=D64)), torch.tensor([[0, -4.0, 0]], dtype=D64))
    xc, uv = cam_points(cams, [[0.2, 0, 0], [0, -0.5, 0], [0, 0, 0.4]])
    torch.testing.assert_close(xc[0, 0], torch.tensor([0.2, 0, 4.0], dtype=D64))  # left -> image right
    torch.testing.assert_close(xc[0, 1], torch.tensor([0, 0, 3.5], dtype=D64))  # front -> closer
    torch.testing.assert_close(xc[0, 2], torch.tensor([0, -0.4, 4.0], dtype=D64))  # up -> image up
    torch.testing.assert_close(uv[0, 0], torch.tensor([500 + 1000 * 0.2 / 4, 400.0], dtype=D64))


def test_azimuth_90_sees_the_left_side():
    d, a = 4.0, 0.3
    cams = fixed(distance=d, azimuth=90.0)
    torch.testing.assert_close(cams.centers(torch.zeros(1, 3, dtype=D64)), torch.tensor([[d, 0, 0]], dtype=D64))
    xc, uv = cam_points(cams, [[a, 0, 0], [0, -a, 0]])
    # a point on the body's left (+x) moves towards the camera: depth d - a, straight ahead
    torch.testing.assert_close(xc[0, 0], torch.tensor([0, 0, d - a], dtype=D64))
    # the body's front (-y) is on the image left seen from its left side
    torch.testing.assert_close(xc[0, 1], torch.tensor([-a, 0, d], dtype=D64))


def test_elevation_30_looks_down():
    d, h, f, el = 4.0, 1.0, 1000.0, 30.0
    cams = fixed(distance=d, elevation=el, focal=f)
    s, c = math.sin(math.radians(el)), math.cos(math.radians(el))
    torch.testing.assert_close(cams.centers(torch.zeros(1, 3, dtype=D64)), torch.tensor([[0, -d * c, d * s]], dtype=D64))
    xc, uv = cam_points(cams, [[0, 0, h]])
    # hand computation: the up axis is (0, -cos el, -sin el) in the camera frame
    torch.testing.assert_close(xc[0, 0], torch.tensor([0, -h * c, d - h * s], dtype=D64))
    expected_shift = f * h * c / (d - h * s)  # 247.43 px upwards
    assert expected_shift == pytest.approx(247.4358, abs=1e-3)
    torch.testing.assert_close(uv[0, 0], torch.tensor([500.0, 400.0 - expected_shift], dtype=D64))
    # and the camera looks down: the optical axis has a downward world component
    assert cams.R[0, 2, 2] == pytest.approx(-s)


def test_roll_rotates_about_the_principal_point():
    offsets = [[0.3, 0.1, 0.5], [-0.4, -0.2, -0.3], [0.0, 0.3, 0.8]]
    base = fixed(azimuth=25, elevation=10, jitter=40.0)
    for roll in (15.0, -70.0):
        rolled = fixed(azimuth=25, elevation=10, roll=roll, jitter=40.0)
        torch.testing.assert_close(rolled.principal, base.principal)  # same generator draws
        _, uv0 = cam_points(base, offsets)
        _, uv1 = cam_points(rolled, offsets)
        r = math.radians(roll)
        rot = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]], dtype=D64)
        p = base.principal[0]
        torch.testing.assert_close(uv1[0], (uv0[0] - p) @ rot.T + p)


def test_ranges_are_respected():
    ranges = CameraRanges(distance=(2.5, 6.0), focal=(800, 1200), elevation=(-5, 25), azimuth=(-90, 90),
                          roll=(-10, 10), image_sizes=((640, 480), (1000, 1000)), principal_jitter=10.0)
    cams = sample_cameras(ranges, 20000, torch.Generator().manual_seed(3))
    for name, (lo, hi) in [("distance", ranges.distance), ("elevation", ranges.elevation),
                           ("azimuth", ranges.azimuth), ("roll", ranges.roll)]:
        v = getattr(cams, name)
        assert lo <= v.min() and v.max() <= hi, name
        assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo), name  # covers the range
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.02 * (hi - lo), name
    torch.testing.assert_close(cams.t[:, 2], cams.distance)
    assert ((cams.focal >= 800) & (cams.focal <= 1200)).all() and (cams.focal[:, 0] == cams.focal[:, 1]).all()
    sizes = {tuple(s) for s in cams.image_size.tolist()}
    assert sizes == {(640.0, 480.0), (1000.0, 1000.0)}
    assert ((cams.principal - cams.image_size / 2).abs() <= 10.0).all()
    # camera-to-root distance really is the sampled distance
    root = torch.randn(20000, 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close((cams.centers(root) - root).norm(dim=-1), cams.distance)


def test_same_seed_same_cameras():
    a = sample_cameras(CameraRanges(principal_jitter=5.0), 64, torch.Generator().manual_seed(7))
    b = sample_cameras(CameraRanges(principal_jitter=5.0), 64, torch.Generator().manual_seed(7))
    c = sample_cameras(CameraRanges(principal_jitter=5.0), 64, torch.Generator().manual_seed(8))
    for name in ("R", "t", "focal", "principal", "image_size"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.R, c.R)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_generator_gives_same_cameras_on_gpu():
    a = sample_cameras(CameraRanges(), 16, torch.Generator().manual_seed(7))
    b = sample_cameras(CameraRanges(), 16, torch.Generator().manual_seed(7), device="cuda")
    assert b.R.device.type == "cuda"
    torch.testing.assert_close(b.R.cpu(), a.R)
    g = torch.Generator(device="cuda").manual_seed(0)
    c = sample_cameras(CameraRanges(), 16, g)  # draws and lives on the GPU
    root = torch.zeros(16, 3, device="cuda")
    uv = project(to_camera(root[:, None], c, root), c)
    torch.testing.assert_close(uv[:, 0], c.principal)
    assert visibility(uv, c).all()


def test_visibility_truncation_and_behind():
    cams = fixed(distance=4.0, size=(1000, 800))
    # x offsets: inside, beyond the right border (u = 500 + 1000 * 2.2 / 4 = 1050), behind the camera
    xc, uv = cam_points(cams, [[0.5, 0, 0], [2.2, 0, 0], [0, -4.5, 0], [0, 0, 1.7]])
    vis = visibility(uv, cams)
    assert vis.tolist() == [[True, False, False, False]]  # 4th: v = 400 - 1000 * 1.7 / 4 = -25
    assert torch.isnan(uv[0, 2]).all()
    assert visibility(uv, cams, margin=-60.0).tolist() == [[True, True, False, True]]
    # depth check for pixels that did not come from project()
    fake = torch.tensor([[[500.0, 400.0]]], dtype=D64)
    assert visibility(fake, cams, depth=torch.tensor([[-1.0]], dtype=D64)).tolist() == [[False]]


def test_project_gradients_are_finite_behind_camera():
    cams = fixed()
    pts = torch.tensor([[[0.0, 0.0, 0.5], [0.1, 0.0, -1.0]]], dtype=D64, requires_grad=True)
    uv = project(pts, cams)
    uv[:, :1].sum().backward()
    assert torch.isfinite(pts.grad).all()


def test_other_world_frames():
    # y-up body facing +z (SMPL convention): left = up x front = +x
    R = look_at_rotation(torch.tensor([0.0, 90.0], dtype=D64), torch.zeros(2, dtype=D64),
                         torch.zeros(2, dtype=D64), up="+y", front="+z")
    torch.testing.assert_close(R[0, 2], torch.tensor([0, 0, -1.0], dtype=D64))  # looks along -z at the front
    torch.testing.assert_close(R[1, 2], torch.tensor([-1.0, 0, 0], dtype=D64))  # from the left (+x)
    torch.testing.assert_close(R[0, 1], torch.tensor([0, -1.0, 0], dtype=D64))  # image down = -up
    with pytest.raises(MeshposeError, match="perpendicular"):
        look_at_rotation(torch.zeros(1), torch.zeros(1), torch.zeros(1), up="+z", front="+z")


def test_bad_ranges():
    with pytest.raises(MeshposeError, match="low <= high"):
        CameraRanges(distance=(5.0, 2.0))
    with pytest.raises(MeshposeError, match="elevation"):
        CameraRanges(elevation=(0.0, 90.0))
    with pytest.raises(MeshposeError, match="image_sizes"):
        CameraRanges(image_sizes=((640.5, 480),))
    with pytest.raises(MeshposeError, match="positive"):
        CameraRanges(distance=(0.0, 1.0))


def test_cameras_to_device_and_dtype():
    cams = sample_cameras(CameraRanges(), 4, torch.Generator().manual_seed(0))
    assert cams.R.dtype == torch.float32 and len(cams) == 4
    c64 = cams.to(dtype=D64)
    assert isinstance(c64, Cameras) and c64.R.dtype == D64 and c64.distance.dtype == D64
