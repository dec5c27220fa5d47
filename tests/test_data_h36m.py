"""Human3.6M readers: synthetic files always; the shared S1 data when /work/shared/data exists."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from meshpose.data.h36m import (
    DEFAULT_IMAGE_SIZE,
    Camera,
    load_h36m_2d,
    load_h36m_3d,
    load_h36m_cameras,
    project,
    world_to_camera,
)
from meshpose.errors import InputFileError
from meshpose.joints import get_joint_set

DATA = Path(os.environ.get("MESHPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
H36M = DATA / "h36m"

# Joints whose definitions agree between H36M mocap and the Stacked-Hourglass labels.
# Excluded: spine (the H36M marker is ~40 px from SH's mid-torso "Spine") and head_top (the H36M
# "Head" marker sits ~20 px from SH's head-top label: a systematic offset, not calibration error).
COMPARABLE = (
    "pelvis", "thorax",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)

LABELS_3D = ["Pelvis", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
             "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist"]
LABELS_2D = ["RFoot", "RKnee", "RHip", "LHip", "LKnee", "LFoot", "Hip", "Spine", "Thorax", "Head",
             "RWrist", "RElbow", "RShoulder", "LShoulder", "LElbow", "LWrist"]


def _camera(**kw) -> Camera:
    args = dict(
        subject="S9", name="cam", R=np.eye(3), T=np.zeros(3), f=np.array([1000.0, 1000.0]),
        c=np.array([500.0, 500.0]), k=np.zeros(3), p=np.zeros(2),
    )
    args.update(kw)
    return Camera(**args)


# ---------------------------------------------------------------------------------------------
# synthetic files


@pytest.fixture
def synthetic(tmp_path):
    """A joints JSON with shuffled 3D labels, a 3D and a 2D archive."""
    rng = np.random.default_rng(0)
    perm3 = rng.permutation(17)
    labels3 = [LABELS_3D[i] for i in perm3]
    (tmp_path / "joints.json").write_text(json.dumps({"joints_3d": labels3, "joints_2d_sh": LABELS_2D}))
    # column i of the file holds joint labels3[i]; value = its h36m17 index, so reordering is visible
    h36m = get_joint_set("h36m17")
    from meshpose.data.h36m import LABEL_TO_JOINT

    col_value = np.array([h36m.index(LABEL_TO_JOINT[lab]) for lab in labels3], dtype=np.float32)
    arr3 = np.broadcast_to(col_value[None, :, None], (5, 17, 3)).copy()
    np.savez(tmp_path / "3d.npz", **{"S9/Walking 1": arr3})
    mpii = get_joint_set("mpii16")
    col2 = np.array([mpii.index(LABEL_TO_JOINT[lab]) for lab in LABELS_2D], dtype=np.float32)
    arr2 = np.broadcast_to(col2[None, :, None], (5, 16, 2)).copy()
    np.savez(tmp_path / "2d.npz", **{"S9/Walking 1/cam": arr2})
    return tmp_path


def test_3d_reorders_by_label(synthetic):
    out = load_h36m_3d(synthetic / "3d.npz", synthetic / "joints.json")
    assert list(out) == [("S9", "Walking 1")]
    arr = out[("S9", "Walking 1")]
    assert arr.shape == (5, 17, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0, :, 0], np.arange(17))


def test_2d_reorders_by_label(synthetic):
    out = load_h36m_2d(synthetic / "2d.npz", synthetic / "joints.json")
    arr = out[("S9", "Walking 1", "cam")]
    assert arr.shape == (5, 16, 2) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0, :, 1], np.arange(16))


def test_bad_inputs_name_the_file(tmp_path, synthetic):
    with pytest.raises(InputFileError, match="file not found"):
        load_h36m_3d(tmp_path / "nope.npz", synthetic / "joints.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"joints_3d": LABELS_3D[:-1] + ["Tail"]}))
    with pytest.raises(InputFileError, match="unknown joint label 'Tail'") as e:
        load_h36m_3d(synthetic / "3d.npz", bad)
    assert str(e.value).startswith(str(bad))
    bad.write_text(json.dumps({"joints_3d": LABELS_3D[:-1] + ["RShoulder"]}))
    with pytest.raises(InputFileError, match="same joint twice"):
        load_h36m_3d(synthetic / "3d.npz", bad)
    with pytest.raises(InputFileError, match="shape"):  # 2D archive read as 3D: wrong key depth/shape
        np.savez(tmp_path / "x.npz", **{"S9/A": np.zeros((3, 17, 2))})
        load_h36m_3d(tmp_path / "x.npz", synthetic / "joints.json")
    with pytest.raises(InputFileError, match="<subject>/<action>/<camera id>"):
        load_h36m_2d(synthetic / "3d.npz", synthetic / "joints.json")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="npz"):
        load_h36m_3d(tmp_path / "junk.npz", synthetic / "joints.json")


def test_cameras_file(tmp_path):
    cam = {"R": np.eye(3).tolist(), "T": [1000.0, -2000.0, 1500.0], "f": [1100, 1110], "c": [500, 510],
           "k": [0.1, 0.0, 0.0], "p": [0.0, 0.0]}
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({"S9": {"a": cam, "b": dict(cam, res_w=1000, res_h=1000)}}))
    cams = load_h36m_cameras(path)
    assert set(cams) == {("S9", "a"), ("S9", "b")}
    np.testing.assert_allclose(cams[("S9", "a")].T, [1.0, -2.0, 1.5])  # metres
    assert cams[("S9", "a")].image_size == DEFAULT_IMAGE_SIZE == (1000, 1002)
    assert cams[("S9", "b")].image_size == (1000, 1000)
    path.write_text(json.dumps({"S9": {"a": dict(cam, R=(2 * np.eye(3)).tolist())}}))
    with pytest.raises(InputFileError, match="not a rotation"):
        load_h36m_cameras(path)
    path.write_text(json.dumps({"S9": {"a": {k: v for k, v in cam.items() if k != "f"}}}))
    with pytest.raises(InputFileError, match="no 'f'"):
        load_h36m_cameras(path)


def test_world_to_camera_and_project_by_hand():
    # camera at (0, -3, 1) m looking along world +y (world z up -> camera y down)
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    cam = _camera(R=R, T=np.array([0.0, -3.0, 1.0]))
    pts = np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 2.0]])
    xc = world_to_camera(pts, cam)
    np.testing.assert_allclose(xc, [[0, 0, 3], [0.5, -1.0, 3]])
    uv = project(xc, cam)
    np.testing.assert_allclose(uv, [[500, 500], [500 + 1000 * 0.5 / 3, 500 - 1000 / 3]])
    assert np.isnan(project(np.array([0.0, 0.0, -1.0]), cam)).all()  # behind the camera


def test_distortion_by_hand():
    k = np.array([0.1, 0.01, 0.001])
    p = np.array([0.002, 0.003])
    cam = _camera(k=k, p=p)
    x, y = 0.2, -0.1
    r2 = x * x + y * y
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p[0] * y + p[1] * x
    expect = np.array([x * (radial + tan) + p[1] * r2, y * (radial + tan) + p[0] * r2]) * 1000 + 500
    np.testing.assert_allclose(project(np.array([x * 2, y * 2, 2.0]), cam, distort=True), expect)
    np.testing.assert_allclose(project(np.array([0.0, 0.0, 2.0]), cam, distort=True), [500, 500])


# ---------------------------------------------------------------------------------------------
# real S1 data


@pytest.fixture(scope="module")
def s1():
    if not H36M.is_dir():
        pytest.skip(f"shared H36M data not found at {H36M}")
    joints = H36M / "h36m_S1_joints.json"
    return (
        load_h36m_3d(H36M / "h36m_S1_3d.npz", joints),
        load_h36m_2d(H36M / "h36m_S1_2d_sh.npz", joints),
        load_h36m_cameras(H36M / "h36m_S1_cameras.json"),
    )


def _errors(p3, p2, cams, joints, distort=False, swap_sides=False):
    """{camera: (N, len(joints)) pixel distances} between projected 3D and SH detections."""
    h36m, mpii = get_joint_set("h36m17"), get_joint_set("mpii16")
    names3 = list(joints)
    if swap_sides:
        names3 = [n.replace("left_", "@").replace("right_", "left_").replace("@", "right_") for n in names3]
    i3 = [h36m.index(n) for n in names3]
    i2 = [mpii.index(n) for n in joints]
    out = {}
    for (subject, cam_id), cam in sorted(cams.items()):
        errs = []
        for (subj, action), xyz in p3.items():
            if subj != subject:
                continue
            det = p2[(subject, action, cam_id)]
            assert len(det) == len(xyz)
            uv = project(world_to_camera(xyz[:, i3], cam), cam, distort=distort)
            errs.append(np.linalg.norm(uv - det[:, i2], axis=-1))
        out[cam_id] = np.concatenate(errs)
    return out


def test_s1_contents(s1):
    p3, p2, cams = s1
    assert len(p3) == 30 and len(p2) == 120 and len(cams) == 4
    h36m = get_joint_set("h36m17")
    heights = []
    for (subject, action), xyz in p3.items():
        assert subject == "S1" and xyz.shape[1:] == (17, 3) and xyz.dtype == np.float32
        heights.append(xyz[:, h36m.index("head_top"), 2] - xyz[:, h36m.index("left_ankle"), 2])
    # metres, z up: standing head top is a person's height above the ankles (sitting lowers it)
    assert 1.4 < np.percentile(np.concatenate(heights), 90) < 2.0


def test_s1_reprojection_matches_detections(s1):
    p3, p2, cams = s1
    errors = _errors(p3, p2, cams, COMPARABLE)
    medians = {cam: float(np.median(e)) for cam, e in errors.items()}
    overall = float(np.median(np.concatenate(list(errors.values()))))
    print("\nS1 median reprojection error (px), joints:", ", ".join(COMPARABLE))
    for cam, m in medians.items():
        print(f"  {cam}: {m:.2f}")
    print(f"  all cameras: {overall:.2f}")
    assert all(m < 15.0 for m in medians.values()), medians
    # with distortion it stays within the same bound (the subject is near the image centre)
    dist = {cam: float(np.median(e)) for cam, e in _errors(p3, p2, cams, COMPARABLE, distort=True).items()}
    print("  with distortion:", {c: round(m, 2) for c, m in dist.items()})
    assert all(m < 15.0 for m in dist.values()), dist
    # the left/right mapping is right: swapping sides makes the match much worse
    swapped = float(np.median(np.concatenate(list(_errors(p3, p2, cams, COMPARABLE, swap_sides=True).values()))))
    assert swapped > 2 * overall
