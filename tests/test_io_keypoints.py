"""Tests for meshpose.io.keypoints: every input format, validation errors, atomic writing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.io import Keypoints2D, atomic_write, read_keypoints, write_keypoints
from meshpose.joints import get_joint_set


def _write_json(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def _flat(points) -> list[float]:
    """(J, 3) -> flat [x, y, c, ...] list."""
    return [float(v) for v in np.asarray(points, dtype=np.float64).reshape(-1)]


def _person(j: int, seed: float, conf: float = 0.5) -> np.ndarray:
    """A deterministic (J, 3) person: x = seed + joint, y = 2 * seed + joint, c = conf."""
    idx = np.arange(j, dtype=np.float64)
    return np.stack([seed + idx, 2 * seed + idx, np.full(j, conf)], axis=1)


def _assert_error(exc_info, path, *fragments):
    """The error names the file, says each fragment and is one line."""
    msg = str(exc_info.value)
    assert os.path.basename(str(path)) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert "\n" not in msg


def _make_kp(n=3, joint_set="coco17", seed=0) -> Keypoints2D:
    rng = np.random.default_rng(seed)
    j = len(get_joint_set(joint_set))
    pts = np.concatenate([rng.uniform(0, 640, (n, j, 2)), rng.uniform(0, 1, (n, j, 1))], -1).astype(np.float32)
    return Keypoints2D(
        keypoints=pts,
        joint_set=joint_set,
        frame_ids=np.array([0, 0, 5][:n], dtype=np.int64),
        person_ids=np.array([0, 3, 1][:n], dtype=np.int64),
        image_size=(640, 480),
        focal_length=1000.0,
    )


# --------------------------------------------------------------------------------------------
# COCO


def test_coco_annotations_parse(tmp_path):
    a = _person(17, 10.0)
    a[:, 2] = 2
    a[3, 2] = 0  # not labelled
    a[4, 2] = 1  # labelled, occluded
    b = _person(17, 100.0)
    b[:, 2] = 1
    nobody = np.zeros((17, 3))  # num_keypoints == 0: skipped
    doc = {
        "images": [{"id": 7, "width": 640, "height": 480}, {"id": 9, "width": 640, "height": 480}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "keypoints": _flat(a), "num_keypoints": 16},
            {"id": 2, "image_id": 7, "category_id": 1, "keypoints": _flat(nobody), "num_keypoints": 0},
            {"id": 3, "image_id": 9, "category_id": 1, "keypoints": _flat(b), "num_keypoints": 17},
            {"id": 4, "image_id": 7, "category_id": 1, "keypoints": _flat(b), "num_keypoints": 17},
            {"id": 5, "image_id": 9, "category_id": 1, "iscrowd": 1},  # no keypoints: skipped
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    kp = read_keypoints(_write_json(tmp_path / "ann.json", doc))
    assert kp.joint_set == "coco17"
    assert kp.keypoints.dtype == np.float32 and kp.keypoints.shape == (3, 17, 3)
    expected_a = a.copy()
    expected_a[:, 2] = 1
    expected_a[3, 2] = 0
    expected_b = b.copy()
    np.testing.assert_array_equal(kp.keypoints, np.stack([expected_a, expected_b, expected_b]).astype(np.float32))
    np.testing.assert_array_equal(kp.frame_ids, [7, 9, 7])
    np.testing.assert_array_equal(kp.person_ids, [0, 0, 1])  # position among the image's kept annotations
    assert kp.frame_ids.dtype == np.int64 and kp.person_ids.dtype == np.int64
    assert kp.image_size == (640, 480)
    assert kp.focal_length is None
    assert kp.source.endswith("ann.json")


def test_coco_annotations_image_size_unknown_when_sizes_differ(tmp_path):
    a = _person(17, 1.0, conf=2)
    doc = {
        "images": [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [{"image_id": 1, "keypoints": _flat(a)}, {"image_id": 2, "keypoints": _flat(a)}],
    }
    assert read_keypoints(_write_json(tmp_path / "a.json", doc)).image_size is None


def test_coco_results_parse_and_clip(tmp_path):
    a = _person(17, 5.0, conf=0.25)
    a[0, 2] = 1.2  # heatmap scores can exceed 1: clipped
    a[1, 2] = -0.05  # ... or go below 0
    b = _person(17, 50.0, conf=0.75)
    doc = [
        {"image_id": 3, "category_id": 1, "keypoints": _flat(a), "score": 0.9},
        {"image_id": 3, "category_id": 1, "keypoints": _flat(b), "score": 0.8},
        {"image_id": 1, "category_id": 1, "keypoints": _flat(b), "score": 0.7, "track_id": 42},
    ]
    kp = read_keypoints(_write_json(tmp_path / "res.json", doc))
    expected_a = a.copy()
    expected_a[0, 2], expected_a[1, 2] = 1.0, 0.0
    np.testing.assert_array_equal(kp.keypoints, np.stack([expected_a, b, b]).astype(np.float32))
    np.testing.assert_array_equal(kp.frame_ids, [3, 3, 1])
    np.testing.assert_array_equal(kp.person_ids, [0, 1, 42])
    assert kp.joint_set == "coco17"


def test_coco_wholebody23_by_count(tmp_path):
    doc = [{"image_id": 0, "category_id": 1, "keypoints": _flat(_person(23, 1.0)), "score": 1.0}]
    assert read_keypoints(_write_json(tmp_path / "r.json", doc)).joint_set == "coco_wholebody23"


# --------------------------------------------------------------------------------------------
# OpenPose


def _openpose(people) -> dict:
    return {
        "version": 1.3,
        "people": [{"person_id": [-1], "pose_keypoints_2d": _flat(p), "face_keypoints_2d": []} for p in people],
    }


def test_openpose_single_file_body25(tmp_path):
    p0, p1 = _person(25, 3.0, 0.9), _person(25, 30.0, 0.0)
    kp = read_keypoints(_write_json(tmp_path / "f_keypoints.json", _openpose([p0, p1])))
    assert kp.joint_set == "body25"
    np.testing.assert_array_equal(kp.keypoints, np.stack([p0, p1]).astype(np.float32))
    np.testing.assert_array_equal(kp.frame_ids, [0, 0])
    np.testing.assert_array_equal(kp.person_ids, [0, 1])


def test_openpose_single_file_openpose18(tmp_path):
    kp = read_keypoints(_write_json(tmp_path / "f.json", _openpose([_person(18, 1.0)])))
    assert kp.joint_set == "openpose18" and kp.keypoints.shape == (1, 18, 3)


def test_openpose_folder_two_frames_two_people(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    people = {
        "clip_000000000000_keypoints.json": [_person(25, 1.0, 0.1), _person(25, 2.0, 0.2)],
        "clip_000000000001_keypoints.json": [_person(25, 3.0, 0.3), _person(25, 4.0, 0.4)],
    }
    for name, ps in people.items():
        _write_json(folder / name, _openpose(ps))
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.json").write_text("ignored, not even JSON")
    kp = read_keypoints(folder)
    assert kp.joint_set == "body25"
    expected = np.stack(people["clip_000000000000_keypoints.json"] + people["clip_000000000001_keypoints.json"])
    np.testing.assert_array_equal(kp.keypoints, expected.astype(np.float32))
    np.testing.assert_array_equal(kp.frame_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(kp.person_ids, [0, 1, 0, 1])


def test_openpose_folder_natural_order_and_empty_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_json(folder / "f10.json", _openpose([_person(18, 10.0)]))
    _write_json(folder / "f2.json", _openpose([_person(18, 2.0)]))
    _write_json(folder / "f1.json", _openpose([]))  # nobody in frame 0
    kp = read_keypoints(folder)
    np.testing.assert_array_equal(kp.frame_ids, [1, 2])  # f1, f2, f10
    np.testing.assert_array_equal(kp.keypoints[:, 0, 0], [2.0, 10.0])


def test_openpose_folder_errors_name_the_frame_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_json(folder / "a.json", _openpose([_person(18, 1.0)]))
    _write_json(folder / "b.json", _openpose([_person(25, 1.0)]))
    with pytest.raises(InputFileError) as exc:
        read_keypoints(folder)
    _assert_error(exc, folder / "b.json", "wrong keypoint count")


def test_folder_without_json_files(tmp_path):
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    with pytest.raises(InputFileError) as exc:
        read_keypoints(folder)
    _assert_error(exc, folder, "no .json")


def test_folder_with_nobody(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_json(folder / "0.json", _openpose([]))
    with pytest.raises(InputFileError) as exc:
        read_keypoints(folder)
    _assert_error(exc, folder, "no keypoints found")


# --------------------------------------------------------------------------------------------
# MMPose


def _mm_instance(xy_seed: float, scores=None, j=17) -> dict:
    idx = np.arange(j, dtype=np.float64)
    inst = {"keypoints": [[xy_seed + i, xy_seed * 2 + i] for i in idx], "bbox": [[0.0, 0.0, 10.0, 10.0]],
            "bbox_score": 0.99}
    if scores is not None:
        inst["keypoint_scores"] = list(scores)
    return inst


def _mm_expected(xy_seed: float, scores=None, j=17) -> np.ndarray:
    idx = np.arange(j, dtype=np.float64)
    c = np.ones(j) if scores is None else np.clip(np.asarray(scores, dtype=np.float64), 0, 1)
    return np.stack([xy_seed + idx, xy_seed * 2 + idx, c], axis=1)


def test_mmpose_image_instances(tmp_path):
    scores = np.linspace(0.0, 1.3, 17)  # RTMPose scores can exceed 1: clipped
    doc = [_mm_instance(1.0, scores), _mm_instance(9.0)]
    kp = read_keypoints(_write_json(tmp_path / "img.json", doc))
    assert kp.joint_set == "coco17"
    np.testing.assert_allclose(kp.keypoints, np.stack([_mm_expected(1.0, scores), _mm_expected(9.0)]), rtol=1e-6)
    np.testing.assert_array_equal(kp.frame_ids, [0, 0])
    np.testing.assert_array_equal(kp.person_ids, [0, 1])


def test_mmpose_video_frames(tmp_path):
    s = [0.5] * 17
    doc = [
        {"frame_id": 0, "instances": [_mm_instance(1.0, s), _mm_instance(2.0, s)]},
        {"frame_id": 1, "instances": []},
        {"frame_id": 2, "instances": [_mm_instance(3.0, s)]},
    ]
    kp = read_keypoints(_write_json(tmp_path / "video.json", doc))
    np.testing.assert_allclose(kp.keypoints, np.stack([_mm_expected(v, s) for v in (1.0, 2.0, 3.0)]))
    np.testing.assert_array_equal(kp.frame_ids, [0, 0, 2])
    np.testing.assert_array_equal(kp.person_ids, [0, 1, 0])


def test_mmpose_demo_layout_with_meta(tmp_path):
    s = [0.25] * 17
    doc = {
        "meta_info": {"dataset_name": "h36m", "num_keypoints": 17},
        "instance_info": [{"frame_id": 1, "instances": [_mm_instance(4.0, s)]}],
    }
    path = _write_json(tmp_path / "demo.json", doc)
    kp = read_keypoints(path)
    assert kp.joint_set == "h36m17"
    np.testing.assert_allclose(kp.keypoints, _mm_expected(4.0, s)[None])
    np.testing.assert_array_equal(kp.frame_ids, [1])
    with pytest.raises(InputFileError) as exc:  # the file declares h36m, the caller says coco
        read_keypoints(path, joint_set="coco17")
    _assert_error(exc, path, "h36m17", "coco17")


def test_mmpose_unknown_dataset_needs_joint_set(tmp_path):
    doc = {"meta_info": {"dataset_name": "ap10k"}, "instance_info": [_mm_instance(1.0)]}
    path = _write_json(tmp_path / "animal.json", doc)
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path)
    _assert_error(exc, path, "pass joint_set")
    assert read_keypoints(path, joint_set="h36m17").joint_set == "h36m17"


# --------------------------------------------------------------------------------------------
# npz / npy / csv


def test_npz_minimal_defaults(tmp_path):
    pts = _person(16, 1.0)[:, :2][None].repeat(2, axis=0)  # (2, 16, 2): no confidence column
    path = tmp_path / "k.npz"
    np.savez(path, keypoints=pts, joint_set="mpii16", image_size=np.array([1920, 1080]), focal_length=1500.0)
    kp = read_keypoints(path)
    assert kp.joint_set == "mpii16"
    np.testing.assert_array_equal(kp.keypoints[..., :2], pts.astype(np.float32))
    np.testing.assert_array_equal(kp.keypoints[..., 2], 1.0)
    np.testing.assert_array_equal(kp.frame_ids, [0, 1])
    np.testing.assert_array_equal(kp.person_ids, [0, 0])
    assert kp.image_size == (1920, 1080) and kp.focal_length == 1500.0


def test_npy_needs_joint_set(tmp_path):
    path = tmp_path / "k.npy"
    pts = np.stack([_person(24, 1.0), _person(24, 2.0)])
    np.save(path, pts)
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path)
    _assert_error(exc, path, "pass joint_set")
    kp = read_keypoints(path, joint_set="smpl24")
    np.testing.assert_array_equal(kp.keypoints, pts.astype(np.float32))
    np.testing.assert_array_equal(kp.frame_ids, [0, 1])
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path, joint_set="coco17")
    _assert_error(exc, path, "wrong keypoint count", "24", "17")


def test_csv_parse_without_confidence(tmp_path):
    names = get_joint_set("seed12").names
    header = ",".join(["frame", "person"] + [f"{n}_{c}" for n in names for c in "xy"])
    row0 = ",".join(["4", "1"] + [str(float(i)) for i in range(24)])
    row1 = ",".join(["5", "0"] + [str(float(-i)) for i in range(24)])
    path = tmp_path / "k.csv"
    path.write_text(f"{header}\n{row0}\n\n{row1}\n")
    kp = read_keypoints(path)
    assert kp.joint_set == "seed12"
    expected_xy = np.stack([np.arange(24.0).reshape(12, 2), -np.arange(24.0).reshape(12, 2)])
    np.testing.assert_array_equal(kp.keypoints[..., :2], expected_xy)
    np.testing.assert_array_equal(kp.keypoints[..., 2], 1.0)
    np.testing.assert_array_equal(kp.frame_ids, [4, 5])
    np.testing.assert_array_equal(kp.person_ids, [1, 0])
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path, joint_set="coco17")
    _assert_error(exc, path, "coco17")


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("ext", [".npz", ".json", ".csv"])
@pytest.mark.parametrize("joint_set", ["coco17", "coco_wholebody23"])
def test_write_read_round_trip(tmp_path, ext, joint_set):
    kp = _make_kp(joint_set=joint_set)
    path = tmp_path / f"out{ext}"
    write_keypoints(path, kp)
    back = read_keypoints(path)
    assert back.joint_set == joint_set
    np.testing.assert_array_equal(back.keypoints, kp.keypoints)
    np.testing.assert_array_equal(back.frame_ids, kp.frame_ids)
    np.testing.assert_array_equal(back.person_ids, kp.person_ids)
    if ext == ".npz":  # only npz stores the intrinsics
        assert back.image_size == (640, 480) and back.focal_length == 1000.0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


@pytest.mark.parametrize("ext", [".npz", ".json", ".csv"])
@pytest.mark.parametrize("joint_set", ["h36m17", "body25", "smpl24", "mpii16"])
def test_round_trip_keeps_the_joint_set_name(tmp_path, ext, joint_set):
    kp = _make_kp(joint_set=joint_set, seed=3)
    path = tmp_path / f"{joint_set}{ext}"
    write_keypoints(path, kp)
    back = read_keypoints(path)  # no joint_set argument: the file says it (h36m17 has 17 joints like coco17)
    assert back.joint_set == joint_set
    np.testing.assert_array_equal(back.keypoints, kp.keypoints)


def test_coco_results_items_must_agree_on_joint_set(tmp_path):
    item = {"image_id": 0, "keypoints": _flat(_person(17, 1.0)), "joint_set": "h36m17"}
    path = _write_json(tmp_path / "mixed.json", [item, dict(item, image_id=1, joint_set="coco17")])
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path)
    _assert_error(exc, path, "disagree", "coco17", "h36m17")


def test_write_rejects_invalid_and_unsupported(tmp_path):
    kp = _make_kp()
    kp.keypoints[0, 0, 2] = 1.5
    with pytest.raises(ValueError, match="confidence 1.5"):
        write_keypoints(tmp_path / "bad.npz", kp)
    with pytest.raises(MeshposeError, match="unsupported"):
        write_keypoints(tmp_path / "bad.txt", _make_kp())
    assert list(tmp_path.iterdir()) == []


def test_failing_writer_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "out.npz"

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("disk exploded")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(RuntimeError, match="disk exploded"):
        write_keypoints(path, _make_kp())
    assert list(tmp_path.iterdir()) == []


def test_failing_writer_keeps_old_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def writer(tmp):
        with open(tmp, "w") as f:
            f.write("new but ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, writer)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(MeshposeError) as exc:
        atomic_write(tmp_path / "nope" / "out.json", lambda tmp: None)
    assert "out.json" in str(exc.value) and "does not exist" in str(exc.value)


# --------------------------------------------------------------------------------------------
# joint-set argument


def test_joint_set_argument(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, keypoints=np.stack([_person(17, 1.0)]), joint_set="coco17")
    assert read_keypoints(path, joint_set="COCO17").joint_set == "coco17"  # names are case-insensitive
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path, joint_set="h36m17")  # same J, different declared set
    _assert_error(exc, path, "coco17", "h36m17")
    with pytest.raises(UnknownNameError):
        read_keypoints(path, joint_set="nonsense")
    op = _write_json(tmp_path / "op.json", _openpose([_person(25, 1.0)]))
    with pytest.raises(InputFileError) as exc:
        read_keypoints(op, joint_set="coco17")
    _assert_error(exc, op, "wrong keypoint count")
    # COCO results do not name a set: a set with the same joint count may be requested
    res = _write_json(tmp_path / "res.json", [{"image_id": 0, "keypoints": _flat(_person(17, 1.0))}])
    assert read_keypoints(res, joint_set="h36m17").joint_set == "h36m17"


# --------------------------------------------------------------------------------------------
# bad input


def _npz_bytes(tmp_path, **arrays) -> bytes:
    p = tmp_path / "_tmp_source.npz"
    np.savez(p, **arrays)
    data = p.read_bytes()
    p.unlink()
    return data


_GOOD17 = np.stack([_person(17, 1.0)])


def _with(value, joint=2, channel=2, base=None):
    a = (base if base is not None else _GOOD17).copy()
    a[0, joint, channel] = value
    return a


BAD_INPUTS = {
    # name: (file name, content builder(tmp_path) -> bytes|str, expected fragments)
    "malformed_json": ("bad.json", lambda t: '{"people": [ {"pose_keypoints_2d": [1, 2', ["malformed JSON", "line 1"]),
    "trailing_comma": ("comma.json", lambda t: '[{"image_id": 1, "keypoints": [1,2,1],}]', ["malformed JSON"]),
    "wrong_count_npz": (
        "count.npz", lambda t: _npz_bytes(t, keypoints=np.stack([_person(18, 1.0)]), joint_set="coco17"),
        ["wrong keypoint count", "18", "coco17"],
    ),
    "wrong_count_flat": (
        "flat.json", lambda t: json.dumps([{"image_id": 1, "keypoints": [1.0, 2.0, 1.0, 4.0]}]),
        ["wrong keypoint count", "3*J"],
    ),
    "ragged_people": (
        "ragged.json", lambda t: json.dumps(_openpose([_person(25, 1.0), _person(18, 1.0)])),
        ["wrong keypoint count", "people[1]"],
    ),
    "unknown_count_openpose": (
        "op20.json", lambda t: json.dumps(_openpose([_person(20, 1.0)])), ["20 joints", "pass joint_set"],
    ),
    "nan_npz": ("nan.npz", lambda t: _npz_bytes(t, keypoints=_with(np.nan, channel=0), joint_set="coco17"),
                ["non-finite", "nan", "joint 2 (right_eye)"]),
    "nan_json_literal": (
        "nan.json", lambda t: json.dumps(_openpose([_with(np.nan, 0, 1, np.stack([_person(25, 1.0)]))[0]])),
        ["non-finite", "nan", "joint 0 (nose)"],
    ),
    "inf_csv": (
        "inf.csv",
        lambda t: "frame,person," + ",".join(f"{n}_{c}" for n in get_joint_set("seed12").names for c in "xyc")
        + "\n0,0," + ",".join(["1"] * 5 + ["inf"] + ["1"] * 30) + "\n",
        ["non-finite", "inf", "confidence"],
    ),
    "inf_npz": ("inf.npz", lambda t: _npz_bytes(t, keypoints=_with(-np.inf, channel=1), joint_set="coco17"),
                ["non-finite", "-inf"]),
    "confidence_negative": (
        "neg.json", lambda t: json.dumps(_openpose([_with(-0.1, 3, 2, np.stack([_person(25, 1.0)]))[0]])),
        ["confidence -0.1 outside [0, 1]", "joint 3"],
    ),
    "confidence_above_one": (
        "big.npz", lambda t: _npz_bytes(t, keypoints=_with(1.5), joint_set="coco17"),
        ["confidence 1.5 outside [0, 1]"],
    ),
    "unknown_joint_set": (
        "unk.npz", lambda t: _npz_bytes(t, keypoints=_GOOD17, joint_set="coco18"), ["unknown joint set 'coco18'"],
    ),
    "empty_json": ("empty.json", lambda t: "", ["file is empty"]),
    "whitespace_json": ("blank.json", lambda t: "  \n", ["file is empty"]),
    "empty_npz": ("empty.npz", lambda t: b"", ["file is empty"]),
    "empty_csv": ("empty.csv", lambda t: "", ["file is empty"]),
    "no_people_openpose": ("nobody.json", lambda t: json.dumps(_openpose([])), ["no keypoints found"]),
    "no_people_list": ("nobody2.json", lambda t: "[]", ["no keypoints found"]),
    "no_people_npz": (
        "nobody.npz", lambda t: _npz_bytes(t, keypoints=np.zeros((0, 17, 3)), joint_set="coco17"),
        ["no keypoints found"],
    ),
    "no_people_csv": (
        "nobody.csv",
        lambda t: "frame,person," + ",".join(f"{n}_{c}" for n in get_joint_set("seed12").names for c in "xy") + "\n",
        ["no keypoints found"],
    ),
    "wrong_rank": ("rank.npz", lambda t: _npz_bytes(t, keypoints=_GOOD17[0], joint_set="coco17"),
                   ["shape (N, J, 2) or (N, J, 3)", "(17, 3)"]),
    "wrong_channels": ("chan.npz", lambda t: _npz_bytes(t, keypoints=np.zeros((1, 17, 4)), joint_set="coco17"),
                       ["(1, 17, 4)"]),
    "not_an_npz": ("junk.npz", lambda t: b"this is not a zip file", ["not a .npz file"]),
    "truncated_npz": (
        "cut.npz", lambda t: _npz_bytes(t, keypoints=_GOOD17, joint_set="coco17")[:200], ["not a readable .npz"],
    ),
    "object_npz": (
        "obj.npz", lambda t: _npz_bytes(t, keypoints=np.array([None, 1], dtype=object), joint_set="coco17"),
        ["holds Python objects"],
    ),
    "npz_without_keypoints": ("nokp.npz", lambda t: _npz_bytes(t, points=_GOOD17), ["no 'keypoints' array"]),
    "unsupported_extension": ("k.txt", lambda t: "1 2 3", ["unsupported", ".txt"]),
    "string_values": (
        "str.json", lambda t: json.dumps([{"image_id": 1, "keypoints": ["1", 2, 1] * 17}]), ["list of numbers"],
    ),
    "visibility_flag": (
        "vis.json",
        lambda t: json.dumps({"annotations": [{"image_id": 1, "keypoints": _flat(_with(3, base=np.stack([_person(17, 1.0, 2)]))[0])}]}),
        ["visibility flag 3"],
    ),
    "unrecognised_layout": ("other.json", lambda t: json.dumps({"hello": 1}), ["unrecognised JSON layout"]),
    "duplicate_ids": (
        "dup.json",
        lambda t: json.dumps([{"image_id": 1, "keypoints": _flat(_person(17, 1)), "track_id": 4}] * 2),
        ["duplicate", "frame 1, person 4"],
    ),
    "bad_csv_header": ("head.csv", lambda t: "a,b,c\n1,2,3\n", ["frame,person"]),
    "bad_csv_number": (
        "num.csv",
        lambda t: "frame,person," + ",".join(f"{n}_{c}" for n in get_joint_set("seed12").names for c in "xy")
        + "\n0,0," + ",".join(["1"] * 23 + ["abc"]) + "\n",
        ["line 2", "'abc' is not a number"],
    ),
    "bad_image_size": (
        "size.npz", lambda t: _npz_bytes(t, keypoints=_GOOD17, joint_set="coco17", image_size=np.array([640, -1])),
        ["image_size"],
    ),
    "not_utf8": ("latin.json", lambda t: b'{"people": "\xff"}', ["not UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_input_file_error(tmp_path, case):
    name, build, fragments = BAD_INPUTS[case]
    content = build(tmp_path)
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path)
    _assert_error(exc, path, *fragments)


def test_missing_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(InputFileError) as exc:
        read_keypoints(path)
    _assert_error(exc, path, "not found")
