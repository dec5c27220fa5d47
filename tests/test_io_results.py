"""Tests for meshpose.io.results: the predict .npz schema and the mesh-keypoints JSON."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.io import (
    read_mesh_keypoints_json,
    read_results_npz,
    result_joint_sets,
    write_mesh_keypoints_json,
    write_results_npz,
)
from meshpose.joints import get_joint_set


def _results(n: int = 2, v: int = 8, with_cam: bool = True) -> dict:
    rng = np.random.default_rng(0)
    out = {
        "joints3d_coco17": rng.normal(size=(n, 17, 3)),  # float64: stored as float32
        "joint_names_coco17": np.array(get_joint_set("coco17").names),
        "joints3d_h36m17": rng.normal(size=(n, 17, 3)).astype(np.float32),
        "vertices": rng.normal(size=(n, v, 3)).astype(np.float32),
        "faces": np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7]], dtype=np.int32),
        "pose": rng.normal(size=(n, 24, 3)),
        "shape": rng.normal(size=(n, 10)),
        "frame_ids": np.array([3, 4][:n]),
        "person_ids": np.array([0, 0][:n], dtype=np.int32),
    }
    if with_cam:
        out["cam_t"] = rng.normal(size=(n, 3))
    return out


def _assert_error(exc_info, path, *fragments):
    msg = str(exc_info.value)
    assert os.path.basename(str(path)) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert "\n" not in msg


def test_results_round_trip(tmp_path):
    res = _results()
    path = tmp_path / "out.npz"
    write_results_npz(path, res)
    back = read_results_npz(path)
    assert set(back) == set(res) | {"joint_names_h36m17"}  # missing names are filled in
    assert sorted(result_joint_sets(back)) == ["coco17", "h36m17"]
    for key in ("joints3d_coco17", "joints3d_h36m17", "vertices", "pose", "shape", "cam_t"):
        assert back[key].dtype == np.float32, key
        np.testing.assert_array_equal(back[key], np.asarray(res[key]).astype(np.float32))
    for key in ("faces", "frame_ids", "person_ids"):
        assert back[key].dtype == np.int64, key
        np.testing.assert_array_equal(back[key], res[key])
    assert tuple(back["joint_names_h36m17"].tolist()) == get_joint_set("h36m17").names
    assert tuple(back["joint_names_coco17"].tolist()) == get_joint_set("coco17").names
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_results_any_file_name(tmp_path):
    path = tmp_path / "results.out"  # np.savez alone would write "results.out.npz"
    write_results_npz(path, _results())
    assert [p.name for p in tmp_path.iterdir()] == ["results.out"]
    np.testing.assert_array_equal(read_results_npz(path)["frame_ids"], [3, 4])


def test_results_without_cam_t_and_with_nan_joints(tmp_path):
    res = _results(with_cam=False)
    res["joints3d_coco17"][0, 3] = np.nan  # a joint that cannot be derived
    res["image_size"] = np.array([640, 480])  # extra keys are kept
    path = tmp_path / "out.npz"
    write_results_npz(path, res)
    back = read_results_npz(path)
    assert "cam_t" not in back
    assert np.isnan(back["joints3d_coco17"][0, 3]).all()
    np.testing.assert_array_equal(back["image_size"], [640, 480])


def _drop(key):
    def edit(r):
        del r[key]
    return edit


def _set(key, value):
    def edit(r):
        r[key] = value(r) if callable(value) else value
    return edit


INVALID = {
    "missing_vertices": (_drop("vertices"), "missing 'vertices'"),
    "missing_frame_ids": (_drop("frame_ids"), "missing 'frame_ids'"),
    "no_joints": (lambda r: [r.pop(k) for k in list(r) if k.startswith("joint")], "no joints3d_"),
    "unknown_set": (_set("joints3d_foo", lambda r: r["joints3d_h36m17"]), "unknown joint set 'foo'"),
    "wrong_k": (_set("joints3d_h36m17", lambda r: r["joints3d_h36m17"][:, :16]), "(N, 17, 3)"),
    "wrong_n": (_set("vertices", lambda r: r["vertices"][:1]), "'vertices' has 1 rows"),
    "person_ids_n": (_set("person_ids", np.array([0])), "'person_ids' has 1 rows"),
    "inf_joints": (_set("joints3d_h36m17", lambda r: r["joints3d_h36m17"] * np.inf), "non-finite"),
    "nan_vertices": (_set("vertices", lambda r: r["vertices"] * np.nan), "'vertices' holds non-finite"),
    "nan_pose": (_set("pose", lambda r: r["pose"] * np.nan), "'pose' holds non-finite"),
    "str_vertices": (_set("vertices", lambda r: r["vertices"].astype(str)), "'vertices' must be a float array"),
    "float_faces": (_set("faces", lambda r: r["faces"].astype(float)), "'faces' must be an integer array"),
    "face_range": (_set("faces", np.array([[0, 1, 8]])), "'faces' indices span 0..8"),
    "cam_t_shape": (_set("cam_t", lambda r: r["cam_t"][:, :2]), "'cam_t' must have shape (N, 3)"),
    "names_wrong": (_set("joint_names_coco17", np.array(["a"] * 17)), "not the joint names of 'coco17'"),
    "names_stray": (_set("joint_names_smpl24", np.array(get_joint_set("smpl24").names)), "no matching joints3d_"),
    "duplicate_rows": (_set("frame_ids", np.array([0, 0])), "duplicate rows for frame 0, person 0"),
    "float_ids": (_set("frame_ids", np.array([0.5, 1.0])), "'frame_ids' must be an integer array"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_write_results_rejects_invalid(tmp_path, case):
    edit, fragment = INVALID[case]
    res = _results()
    edit(res)
    path = tmp_path / "out.npz"
    with pytest.raises(ValueError) as exc:
        write_results_npz(path, res)
    assert fragment in str(exc.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["missing_vertices", "wrong_n", "nan_vertices", "face_range", "names_wrong"])
def test_read_results_rejects_invalid_file(tmp_path, case):
    edit, fragment = INVALID[case]
    res = _results()
    edit(res)
    path = tmp_path / "bad.npz"
    np.savez(path, **res)
    with pytest.raises(InputFileError) as exc:
        read_results_npz(path)
    _assert_error(exc, path, fragment)


@pytest.mark.parametrize(
    "name, content, fragment",
    [("empty.npz", b"", "file is empty"), ("junk.npz", b"not a zip", "not a .npz file")],
)
def test_read_results_bad_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError) as exc:
        read_results_npz(path)
    _assert_error(exc, path, fragment)


def test_read_results_missing(tmp_path):
    with pytest.raises(InputFileError) as exc:
        read_results_npz(tmp_path / "nope.npz")
    _assert_error(exc, tmp_path / "nope.npz", "not found")


def test_failing_results_writer_leaves_nothing(tmp_path, monkeypatch):
    def broken_savez(file, **arrays):
        file.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    path = tmp_path / "out.npz"
    with pytest.raises(MeshposeError) as exc:
        write_results_npz(path, _results())
    _assert_error(exc, path, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# mesh keypoints JSON


def test_mesh_keypoints_round_trip(tmp_path):
    names = ["pelvis", "neck", "left_wrist"]
    points = np.array([[0.0, 0.9, 0.01], [0.0, 1.5, -0.02], [0.4, 0.8, 0.1234567890123]])
    conf = np.array([1.0, 0.5, 0.0])
    path = tmp_path / "kp.json"
    write_mesh_keypoints_json(path, "seed12", names, points, conf)
    doc = json.loads(path.read_text())
    assert doc["joint_set"] == "seed12" and doc["units"] == "metres"
    assert list(doc["keypoints"]) == names
    assert doc["keypoints"]["neck"] == [0.0, 1.5, -0.02]
    assert doc["confidence"] == {"pelvis": 1.0, "neck": 0.5, "left_wrist": 0.0}
    back = read_mesh_keypoints_json(path)
    assert back.joint_set == "seed12" and back.units == "metres" and back.names == tuple(names)
    np.testing.assert_array_equal(back.points, points)
    np.testing.assert_array_equal(back.confidence, conf)
    assert back.source.endswith("kp.json")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"names": ["nose"]}, ValueError, "not a joint of joint set 'seed12'"),
        ({"names": ["neck", "neck"]}, ValueError, "duplicate"),
        ({"points": np.zeros((2, 3))}, ValueError, r"\(1, 3\)"),
        ({"points": np.full((1, 3), np.nan)}, ValueError, "non-finite"),
        ({"confidence": np.array([1.5])}, ValueError, "confidence 1.5"),
        ({"confidence": np.array([-0.1])}, ValueError, "confidence -0.1"),
        ({"units": ""}, ValueError, "units"),
        ({"joint_set": "nope"}, UnknownNameError, "nope"),
    ],
)
def test_write_mesh_keypoints_rejects_invalid(tmp_path, kwargs, error, match):
    args = {"joint_set": "seed12", "names": ["neck"], "points": np.zeros((1, 3)), "confidence": np.ones(1)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        write_mesh_keypoints_json(tmp_path / "kp.json", **args)
    assert list(tmp_path.iterdir()) == []


_GOOD_DOC = {"joint_set": "seed12", "units": "metres", "keypoints": {"neck": [0, 1, 2]}, "confidence": {"neck": 1}}


def _doc(**changes):
    d = json.loads(json.dumps(_GOOD_DOC))
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("", "file is empty"),
        ("{", "malformed JSON"),
        ("[]", "expected a JSON object"),
        (_doc(joint_set="bogus"), "unknown joint set 'bogus'"),
        (_doc(keypoints={"neck": [0, 1]}), "'neck' must be [x, y, z]"),
        (_doc(keypoints={"neck": [0, 1, "2"]}), "'neck' must be [x, y, z]"),
        (_doc(confidence={"neck": 1.5}), "confidence 1.5"),
        (_doc(confidence={"pelvis": 1}), "name different joints"),
        (_doc(keypoints={"nose": [0, 1, 2]}, confidence={"nose": 1}), "'nose' is not a joint"),
        (json.dumps({"joint_set": "seed12"}), "missing 'units', 'keypoints', 'confidence'"),
        (_doc(keypoints={"neck": [0, 1, float("nan")]}), "non-finite"),
    ],
)
def test_read_mesh_keypoints_rejects_bad_files(tmp_path, content, fragment):
    path = tmp_path / "kp.json"
    path.write_text(content)
    with pytest.raises(InputFileError) as exc:
        read_mesh_keypoints_json(path)
    _assert_error(exc, path, fragment)
