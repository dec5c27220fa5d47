"""Malformed input to the commands that turn 2D keypoints into bodies and convert their files:
``predict``, ``convert``, ``image --keypoints``, ``body --pose``, ``eval``.

Every refusal is checked with :func:`fuzzing.assert_refused`: exit code 2, one stderr line naming
the bad file, no traceback, and the outputs (the ``-o`` file, the ``--out-dir`` folder and the
folder holding them, hidden temporaries included) unchanged. The inputs are generated here, one
problem class per test function. Where meshpose flags instead of refusing (people with too few
visible joints), the flag is tested.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzzing import assert_refused, locked_folder, run_cli
from safetensors.torch import save_file

import meshpose
from meshpose.io import atomic
from meshpose.joints import convert, get_joint_set
from meshpose.models.regressor import KeypointRegressor

SAMPLE = Path(meshpose.__file__).parent / "assets" / "sample_coco.json"
COCO17 = np.array(json.loads(SAMPLE.read_text())[0]["keypoints"], np.float64).reshape(17, 3)
OPENPOSE18 = np.nan_to_num(convert(COCO17, "coco17", "openpose18", confidence_last=True))


# ---------------------------------------------------------------------------------------------
# the commands, each as (argv, outputs to watch) for an input file


def _out(tmp: Path) -> Path:
    folder = tmp / "out"
    folder.mkdir(exist_ok=True)
    return folder


def _tiny_png(tmp: Path) -> Path:
    from meshpose.viz import save_png

    path = tmp / "frame.png"
    if not path.exists():
        save_png(path, np.full((60, 80, 3), 90, np.uint8))
    return path


def cmd_predict(inp, tmp):
    out = _out(tmp)
    return ["predict", inp, "-o", out / "res.npz", "--out-dir", out / "people"], [out]


def cmd_convert(inp, tmp):
    out = _out(tmp)
    return ["convert", inp, "-o", out / "k.json"], [out]


def cmd_image(inp, tmp):
    out = _out(tmp)
    return ["image", _tiny_png(tmp), "--out-dir", out / "people", "--keypoints", inp], [out]


READERS = {"predict": cmd_predict, "convert": cmd_convert, "image": cmd_image}
ESTIMATORS = {"predict": cmd_predict, "image": cmd_image}


# ---------------------------------------------------------------------------------------------
# file makers


def _openpose(*people) -> dict:
    return {"version": 1.3, "people": [{"pose_keypoints_2d": [float(v) for v in np.ravel(p)]} for p in people]}


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


def _with(values, index, value):
    """OPENPOSE18 as a flat list with item ``index`` replaced (any JSON value)."""
    flat = [float(v) for v in values.reshape(-1)]
    flat[index] = value
    return flat


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_header(shape, descr="<f4") -> bytes:
    """A .npy header announcing ``shape`` followed by 64 bytes: far less than it claims."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def _zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _forged_sizes(data: bytes, size: int = 0x7FFFFFF0) -> bytes:
    """A zip whose directory claims ``size`` uncompressed bytes for every member."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + offset : start + offset + 4] = struct.pack("<I", size)
            start += 4
    return bytes(data)


def _flip_data_byte(data: bytes) -> bytes:
    """A stored zip with one byte of its first array's data changed (its CRC no longer fits)."""
    data = bytearray(data)
    data[data.find(b"\x93NUMPY") + 150] ^= 0xFF
    return bytes(data)


def _csv(header: str, *rows: str) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _coco_csv_header(confidence=True) -> str:
    names = get_joint_set("coco17").names
    return ",".join(["frame", "person"] + [f"{n}_{c}" for n in names for c in ("xyc" if confidence else "xy")])


def _coco_row(frame="0", person="0", values=None) -> str:
    values = COCO17.reshape(-1) if values is None else values
    return ",".join([frame, person] + [str(v) for v in values])


def _coco_results(*items) -> bytes:
    return _json([{"image_id": 0, "category_id": 1, "keypoints": COCO17.reshape(-1).tolist(), "score": 1.0}
                  | item for item in items])


GOOD_KEYPOINTS = COCO17.astype(np.float32)[None]

#: name -> (file name, content bytes); "folder:" names make folders (see _make).
MALFORMED = {
    "empty": ("k.json", b""),
    "whitespace": ("k.json", b"  \n\t\n"),
    "binary garbage json": ("k.json", bytes(range(256)) * 4),
    "binary garbage npz": ("k.npz", b"PK\x03\x04" + bytes(range(200))),
    "binary garbage npy": ("k.npy", b"\x93NUMPY" + bytes(range(200))),
    "binary garbage csv": ("k.csv", b"\x00\xff\xfe" * 50),
    "not a zip npz": ("k.npz", b"hello, not a zip"),
    "utf16 json": ("k.json", json.dumps(_openpose(OPENPOSE18)).encode("utf-16")),
    "truncated json": ("k.json", _json(_openpose(OPENPOSE18))[:150]),
    "top-level number": ("k.json", b"42"),
    "top-level string": ("k.json", b'"people"'),
    "unknown layout": ("k.json", _json({"persons": []})),
    "deep nesting": ("k.json", b"[" * 100000 + b"]" * 100000),
    "strings for numbers": ("k.json", _json({"people": [{"pose_keypoints_2d": [str(v) for v in OPENPOSE18.reshape(-1)]}]})),
    "one string number": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 4, "12")}]})),
    "booleans for numbers": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 0, True)}]})),
    "null for a number": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 1, None)}]})),
    "huge integer": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 0, 10**400)}]})),
    "nested list in flat list": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 3, [1, 2])}]})),
    "wrong length flat list": ("k.json", _json({"people": [{"pose_keypoints_2d": [1.0] * 55}]})),
    "people not a list": ("k.json", _json({"people": {"a": 1}})),
    "person not a dict": ("k.json", _json({"people": [[1, 2, 3]]})),
    "person without keypoints": ("k.json", _json({"people": [{"face": []}]})),
    "17 openpose joints": ("k.json", _json(_openpose(COCO17))),
    "mmpose triples": ("k.json", _json([{"keypoints": [[1.0, 2.0, 3.0]] * 17}])),
    "mmpose ragged": ("k.json", _json([{"keypoints": [[1.0, 2.0]] * 16 + [[3.0]]}])),
    "mmpose scores count": ("k.json", _json([{"keypoints": [[1.0, 2.0]] * 17, "keypoint_scores": [0.5] * 3}])),
    "mmpose unknown dataset": ("k.json", _json({"meta_info": {"dataset_name": "crowdpose"},
                                                "instance_info": [{"keypoints": [[1.0, 2.0]] * 14}]})),
    "negative confidence": ("k.json", _json(_openpose(np.where(np.arange(54).reshape(18, 3) == 2, -0.5, OPENPOSE18)))),
    "nan confidence": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("0.97", "NaN", 1).encode()),
    "confidence above one": ("k.json", _json({"people": [{"pose_keypoints_2d": _with(OPENPOSE18, 2, 1.5)}]})),
    "nan coordinate": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "NaN", 1).encode()),
    "infinite coordinate": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "Infinity", 1).encode()),
    "1e400 coordinate": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "1e400", 1).encode()),
    "float32 overflow 1e39": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "1e39", 1).encode()),
    "absurd 1e30 coordinate": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "1e30", 1).encode()),
    "coordinate beyond bound": ("k.json", json.dumps(_openpose(OPENPOSE18)).replace("417.18", "-2000000", 1).encode()),
    "coco visibility 3": ("k.json", _json({"annotations": [{"image_id": 0, "keypoints": [1, 2, 3] * 17}]})),
    "coco image id 2**63": ("k.json", _coco_results({"image_id": 2**63})),
    "coco image id 2**70": ("k.json", _coco_results({"image_id": 2**70})),
    "coco image id -2**63-1": ("k.json", _coco_results({"image_id": -(2**63) - 1})),
    "coco image id 1e19": ("k.json", _coco_results({"image_id": 1e19})),
    "coco image id string": ("k.json", _coco_results({"image_id": "0"})),
    "coco track id 2**64": ("k.json", _coco_results({"track_id": 2**64})),
    "coco duplicate person": ("k.json", _coco_results({"track_id": 1}, {"track_id": 1})),
    "coco joint sets disagree": ("k.json", _coco_results({"joint_set": "coco17"}, {"joint_set": "h36m17"})),
    "coco unknown joint set": ("k.json", _coco_results({"joint_set": "coco99"})),
    "csv empty header only": ("k.csv", _csv(_coco_csv_header())),
    "csv no frame column": ("k.csv", _csv(_coco_csv_header()[6:], _coco_row()[2:])),
    "csv missing y column": ("k.csv", _csv(_coco_csv_header().replace(",nose_y", ""), _coco_row())),
    "csv unknown joint names": ("k.csv", _csv(_coco_csv_header().replace("nose", "snout"), _coco_row())),
    "csv short row": ("k.csv", _csv(_coco_csv_header(), _coco_row()[:-10])),
    "csv not a number": ("k.csv", _csv(_coco_csv_header(), _coco_row().replace("417.18", "abc"))),
    "csv frame 2**63": ("k.csv", _csv(_coco_csv_header(), _coco_row(frame=str(2**63)))),
    "csv frame float": ("k.csv", _csv(_coco_csv_header(), _coco_row(frame="1.5"))),
    "csv nan": ("k.csv", _csv(_coco_csv_header(), _coco_row().replace("417.18", "nan"))),
    "csv 1e39": ("k.csv", _csv(_coco_csv_header(), _coco_row().replace("417.18", "1e39"))),
    "csv unterminated quote": ("k.csv", _csv(_coco_csv_header(), '0,0,"417.18')),
    "npz no keypoints": ("k.npz", _npz(points=GOOD_KEYPOINTS, joint_set="coco17")),
    "npz unknown joint set": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco99")),
    "npz joint set not a string": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set=np.arange(3))),
    "npz wrong joint count": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS[:, :12], joint_set="coco17")),
    "npz rank 2": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS[0], joint_set="coco17")),
    "npz strings": ("k.npz", _npz(keypoints=np.full((1, 17, 3), "x"), joint_set="coco17")),
    "npz pickled objects": ("k.npz", _zip({"keypoints.npy": _npy(np.array([{"a": 1}], dtype=object)),
                                           "joint_set.npy": _npy(np.array("coco17"))})),
    "npz zero people": ("k.npz", _npz(keypoints=np.zeros((0, 17, 3), np.float32), joint_set="coco17")),
    "npz float32 inf": ("k.npz", _npz(keypoints=np.where(GOOD_KEYPOINTS == GOOD_KEYPOINTS[0, 0, 0],
                                                         np.float32(np.inf), GOOD_KEYPOINTS), joint_set="coco17")),
    "npz frame ids uint64 2**63": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17",
                                                 frame_ids=np.array([2**63], np.uint64))),
    "npz frame ids 1e19": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", frame_ids=np.array([1e19]))),
    "npz frame ids wrong count": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", frame_ids=np.arange(3))),
    "npz image size huge": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", image_size=np.array([1e9, 1e9]))),
    "npz image size zero": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", image_size=np.array([0, 480]))),
    "npz focal zero": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", focal_length=np.array(0.0))),
    "npz focal negative": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", focal_length=np.array(-800.0))),
    "npz focal nan": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", focal_length=np.array(np.nan))),
    "npz focal 1e-30": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", focal_length=np.array(1e-30))),
    "npz focal 1e300": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17", focal_length=np.array(1e300))),
    "npy needs a joint set": ("k.npy", _npy(GOOD_KEYPOINTS)),
    "unsupported extension": ("k.txt", b"1,2,3"),
    "no extension": ("keypoints", b"{}"),
    "folder:no frames": ("frames", {"notes.txt": b"hello"}),
    "folder:one broken frame": ("frames", {"f0.json": _json(_openpose(OPENPOSE18)), "f1.json": b'{"people": [',
                                           "f2.json": _json(_openpose(OPENPOSE18))}),
    "folder:frame of another layout": ("frames", {"f0.json": _json(_openpose(OPENPOSE18)),
                                                  "f1.json": _coco_results({})}),
    "folder:frames of different joint counts": ("frames", {"f0.json": _json(_openpose(OPENPOSE18)),
                                                           "f1.json": _json(_openpose(np.ones((25, 3))))}),
    "folder:nobody in any frame": ("frames", {"f0.json": _json(_openpose()), "f1.json": _json(_openpose())}),
    "folder:frame symlink loop": ("frames", {"f0.json": _json(_openpose(OPENPOSE18)), "f1.json": "->f1.json"}),
    "folder:broken symlink frame": ("frames", {"f0.json": _json(_openpose(OPENPOSE18)), "f1.json": "->gone.json"}),
    "symlink loop": ("k.json", "->k.json"),
    "broken symlink": ("k.json", "->missing.json"),
    "missing file": ("k.json", None),
}

#: Files that announce more data than they hold, or members too big to be honest.
OVERSIZED = {
    "npy header 10**11 people": ("k.npy", _npy_header((10**11, 17, 3))),
    "npy header 2**62 bytes": ("k.npy", _npy_header((2**40, 2**20), "<f8")),
    "npz member header 10**11 people": ("k.npz", _zip({"keypoints.npy": _npy_header((10**11, 17, 3)),
                                                       "joint_set.npy": _npy(np.array("coco17"))})),
    "npz stored member forged size": ("k.npz", _forged_sizes(_zip({"keypoints.npy": _npy(GOOD_KEYPOINTS),
                                                                   "joint_set.npy": _npy(np.array("coco17"))},
                                                                  zipfile.ZIP_STORED))),
    "npz deflated member forged size": ("k.npz", _forged_sizes(_zip({"keypoints.npy": _npy(GOOD_KEYPOINTS),
                                                                     "joint_set.npy": _npy(np.array("coco17"))}))),
    "npz truncated member": ("k.npz", _zip({"keypoints.npy": _npy(np.zeros((50, 17, 3), np.float32))[:-300],
                                            "joint_set.npy": _npy(np.array("coco17"))})),
    "npz bad crc": ("k.npz", _flip_data_byte(_zip({"keypoints.npy": _npy(GOOD_KEYPOINTS),
                                                   "joint_set.npy": _npy(np.array("coco17"))}, zipfile.ZIP_STORED))),
    "npz member longer than its header": ("k.npz", _zip({"keypoints.npy": _npy(GOOD_KEYPOINTS) + bytes(400),
                                                         "joint_set.npy": _npy(np.array("coco17"))})),
}


def _make(tmp: Path, name: str, content, folder: str = "in") -> Path:
    """Write a case's file (or folder, or symbolic link) under ``tmp``/``folder``."""
    folder = tmp / folder
    folder.mkdir(exist_ok=True)
    path = folder / name
    if content is None:
        return path
    if isinstance(content, dict):
        path.mkdir()
        for member, data in content.items():
            _make(path, member, data, ".")
        return path
    if isinstance(content, str) and content.startswith("->"):
        os.symlink(content[2:], path)
        return path
    path.write_bytes(content)
    return path


def _case(cases: dict, key: str, tmp: Path) -> Path:
    name, content = cases[key]
    return _make(tmp, name, content)


# ---------------------------------------------------------------------------------------------
# 1. malformed keypoint files: every reading command refuses them


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_keypoint_files_are_refused(tmp_path, command, case):
    bad = _case(MALFORMED, case, tmp_path)
    argv, watch = READERS[command](bad, tmp_path)
    assert_refused(argv, bad, watch=watch)


# ---------------------------------------------------------------------------------------------
# 2. files that announce more than they hold (would allocate terabytes)


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_headers_are_refused_before_allocating(tmp_path, command, case):
    bad = _case(OVERSIZED, case, tmp_path)
    argv, watch = READERS[command](bad, tmp_path)
    if bad.suffix == ".npy":
        argv += ["--joint-set", "coco17"] if command != "image" else []
    assert_refused(argv, bad, watch=watch)


@pytest.mark.parametrize("unused", ["huge header", "corrupt bytes", "forged size"])
def test_unused_npz_members_are_not_read(tmp_path, unused):
    """A member no reader uses is not loaded: its size or content does not matter."""
    members = {"keypoints.npy": _npy(GOOD_KEYPOINTS), "joint_set.npy": _npy(np.array("coco17"))}
    junk = {"huge header": _npy_header((10**11, 1000)), "corrupt bytes": b"\x93NUMPY garbage",
            "forged size": _npy(np.zeros(10))}[unused]
    data = _zip(members | {"junk.npy": junk}, zipfile.ZIP_STORED)
    if unused == "forged size":  # forge the sizes of the junk member only (the last one written)
        head = data.rfind(b"PK\x03\x04")
        central = data.rfind(b"PK\x01\x02")
        data = bytearray(data)
        data[head + 22 : head + 26] = data[central + 24 : central + 28] = struct.pack("<I", 0x7FFFFFF0)
        data = bytes(data)
    path = tmp_path / "k.npz"
    path.write_bytes(data)
    outcome = run_cli("convert", path, "-o", tmp_path / "k.json")
    assert outcome.code == 0, outcome.stderr
    assert len(json.loads((tmp_path / "k.json").read_text())) == 1


# ---------------------------------------------------------------------------------------------
# 3. nobody visible enough for a body: refused (a file) or flagged (a person)

NOBODY = {
    "openpose not detected 0,0,0": ("k.json", _json(_openpose(np.zeros((18, 3)), np.zeros((18, 3))))),
    "all confidences 0": ("k.npz", _npz(keypoints=np.concatenate([COCO17[:, :2], np.zeros((17, 1))], -1)[None],
                                        joint_set="coco17")),
    "confidences below 0.1": ("k.npz", _npz(keypoints=np.concatenate([COCO17[:, :2], np.full((17, 1), 0.05)], -1)[None],
                                            joint_set="coco17")),
    "three visible joints": ("k.npz", _npz(keypoints=np.concatenate([COCO17[:, :2], (np.arange(17) < 3)[:, None]],
                                                                    -1)[None], joint_set="coco17")),
    "all joints at one point": ("k.npz", _npz(keypoints=np.tile([[100.0, 50.0, 1.0]], (1, 17, 1)), joint_set="coco17")),
    "coco annotations all v=0 but listed": ("k.json", _coco_results({"keypoints": [0.0, 0.0, 0.0] * 17})),
}


@pytest.mark.parametrize("command", sorted(ESTIMATORS))
@pytest.mark.parametrize("case", sorted(NOBODY))
def test_files_where_nobody_is_visible_are_refused(tmp_path, command, case):
    bad = _case(NOBODY, case, tmp_path)
    argv, watch = ESTIMATORS[command](bad, tmp_path)
    assert_refused(argv, bad, watch=watch, contains="no person has at least 4 joints")


@pytest.mark.parametrize("case", sorted(NOBODY))
def test_convert_keeps_people_without_visible_joints(tmp_path, case):
    """convert only changes the format: the same people come out."""
    path = _case(NOBODY, case, tmp_path)
    outcome = run_cli("convert", path, "-o", tmp_path / "k.npz")
    assert outcome.code == 0, outcome.stderr
    assert len(np.load(tmp_path / "k.npz")["keypoints"]) >= 1


def test_predict_flags_a_person_without_visible_joints(tmp_path):
    """One good person and one of OpenPose's 0,0,0 people: exit 0, valid == [True, False], NaN
    for the second, one warning line, files for the first only; the per-person JSON gives the
    input's confidence (0 for a joint the input did not see)."""
    good = OPENPOSE18.copy()
    good[7, 2] = 0.0  # openpose18 joint 7 is left_wrist: not seen
    path = tmp_path / "two.json"
    path.write_text(json.dumps(_openpose(good, np.zeros((18, 3)))))
    out = tmp_path / "res.npz"
    outcome = run_cli("predict", path, "-o", out, "--out-dir", tmp_path / "people", "--output-joints", "coco17")
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "skipped 1 of 2" in lines[0] and str(path) in lines[0]
    results = np.load(out)
    assert results["valid"].tolist() == [True, False]
    assert np.isfinite(results["joints3d_coco17"][0]).all() and np.isnan(results["joints3d_coco17"][1]).all()
    assert np.isnan(results["vertices"][1]).all() and np.isnan(results["pose"][1]).all()
    assert sorted(p.name for p in (tmp_path / "people").iterdir()) == [
        "frame000000_person00.json", "frame000000_person00.obj", "frame000000_person00.png"]
    document = json.loads((tmp_path / "people" / "frame000000_person00.json").read_text())
    assert document["confidence"]["left_wrist"] == 0.0
    assert document["confidence"]["nose"] == pytest.approx(good[0, 2])
    assert document["confidence"]["right_hip"] == pytest.approx(good[8, 2])
    # mode of a folder --out-dir made: the usual one, not mkdtemp's 0700
    assert (tmp_path / "people").stat().st_mode & 0o777 == 0o777 & ~atomic._UMASK


def test_image_flags_a_detection_without_visible_joints(tmp_path):
    keypoints = np.stack([COCO17, np.zeros((17, 3))]).astype(np.float32)
    path = tmp_path / "k.npz"
    path.write_bytes(_npz(keypoints=keypoints, joint_set="coco17", frame_ids=np.zeros(2, np.int64),
                          person_ids=np.arange(2)))
    image = tmp_path / "photo.png"
    from meshpose.viz import save_png

    save_png(image, np.full((600, 800, 3), 90, np.uint8))
    outcome = run_cli("image", image, "--out-dir", tmp_path / "out", "--keypoints", path)
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "skipped 1" in lines[0]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["photo_person00.json", "photo_person00.obj", "photo_person00.png", "summary.json"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"][0]["skipped"] == 1 and summary["inputs"][0]["people"] == 1


def test_predict_api_flags_and_refuses():
    from meshpose.errors import MeshposeError

    two = np.stack([COCO17, np.zeros((17, 3))])
    results = meshpose.predict(two, "coco17")
    assert results["valid"].tolist() == [True, False] and np.isnan(results["vertices"][1]).all()
    with pytest.raises(MeshposeError, match="no person has"):
        meshpose.predict(np.zeros((2, 17, 3)), "coco17")
    for bad in (1e39, np.nan, 1e30):
        points = COCO17.copy()[None]
        points[0, 0, 0] = bad
        with pytest.raises(MeshposeError):
            meshpose.predict(points, "coco17")
    with pytest.raises(MeshposeError, match="focal length"):
        meshpose.predict(COCO17[None], "coco17", image_size=(640, 480), focal_length=-500)


# ---------------------------------------------------------------------------------------------
# 4. joint sets the body models do not read: the error names the file


UNSUPPORTED_SETS = {
    "seed12 npz": ("k.npz", _npz(keypoints=GOOD_KEYPOINTS[:, :12], joint_set="seed12")),
    "wholebody23 coco": ("k.json", _json([{"image_id": 0, "keypoints": [v for j in range(23)
                                                                         for v in (10.0 * j, 20.0 + j, 1.0)]}])),
    "smpl24 csv": ("k.csv", _csv(",".join(["frame", "person"] + [f"{n}_{c}" for n in get_joint_set("smpl24").names
                                                                  for c in "xyc"]),
                                 ",".join(["0", "0"] + [f"{5 * j},{7 * j},1" for j in range(24)]))),
}


@pytest.mark.parametrize("command", sorted(ESTIMATORS))
@pytest.mark.parametrize("case", sorted(UNSUPPORTED_SETS))
def test_unsupported_joint_sets_name_the_file(tmp_path, command, case):
    bad = _case(UNSUPPORTED_SETS, case, tmp_path)
    argv, watch = ESTIMATORS[command](bad, tmp_path)
    assert_refused(argv, bad, watch=watch, contains="holds joint set")


# ---------------------------------------------------------------------------------------------
# 5. focal lengths: non-finite, non-positive, absurd


@pytest.mark.parametrize("command", sorted(ESTIMATORS))
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-800", "1e-30", "0.5", "1e300", "2e6", "abc", ""])
def test_bad_focal_lengths_are_refused(tmp_path, command, value):
    good = tmp_path / "k.json"
    good.write_text(SAMPLE.read_text())
    argv, watch = ESTIMATORS[command](good, tmp_path)
    assert_refused([*argv, "--focal-length", value], "--focal-length", watch=watch)


# ---------------------------------------------------------------------------------------------
# 6. outputs that cannot be written: refused before anything is written


def _unwritable(tmp: Path):
    """Output destinations that cannot work, by name: (path, what names it)."""
    a_file = tmp / "a_file"
    a_file.write_text("x")
    (tmp / "a_folder.npz").mkdir(exist_ok=True)
    (tmp / "a_folder.json").mkdir(exist_ok=True)
    return {
        "out-dir is a file": a_file,
        "out-dir under a file": a_file / "sub",
        "out-dir under /proc": Path("/proc/meshpose-fuzz/people"),
        "out-dir in /proc": Path("/proc/meshpose-fuzz"),
    }


@pytest.mark.parametrize("case", ["out-dir is a file", "out-dir under a file", "out-dir under /proc", "out-dir in /proc"])
@pytest.mark.parametrize("command", sorted(ESTIMATORS))
def test_unwritable_out_dirs_are_refused(tmp_path, command, case):
    good = tmp_path / "k.npz"  # one frame: one image
    good.write_bytes(_npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17"))
    out_dir = _unwritable(tmp_path)[case]
    out = _out(tmp_path)
    if command == "predict":
        argv = ["predict", good, "-o", out / "res.npz", "--out-dir", out_dir]
    else:
        argv = ["image", _tiny_png(tmp_path), "--out-dir", out_dir, "--keypoints", good]
    assert_refused(argv, out_dir, watch=[tmp_path])


@pytest.mark.parametrize("command", sorted(ESTIMATORS))
def test_read_only_out_dir_is_refused(tmp_path, command, monkeypatch):
    good = tmp_path / "k.npz"
    good.write_bytes(_npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17"))
    locked = locked_folder(tmp_path / "locked", monkeypatch)
    try:
        if command == "predict":
            argv = ["predict", good, "-o", tmp_path / "res.npz", "--out-dir", locked / "people"]
        else:
            argv = ["image", _tiny_png(tmp_path), "--out-dir", locked / "people", "--keypoints", good]
        assert_refused(argv, locked / "people", watch=[tmp_path])
    finally:
        locked.chmod(0o755)


OUTPUT_FILES = {
    "wrong suffix": ("res.txt", "must end in"),
    "missing folder": ("missing/res.npz", "does not exist"),
    "is a folder": ("a_folder.npz", "is a folder"),
    "under a file": ("a_file/res.npz", "not a folder"),
    "under /proc": ("/proc/meshpose-fuzz/res.npz", "cannot write"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_FILES))
@pytest.mark.parametrize("command", ["predict", "convert"])
def test_unwritable_output_files_are_refused_before_the_out_dir_is_written(tmp_path, command, case):
    good = tmp_path / "k.json"
    good.write_text(SAMPLE.read_text())
    _unwritable(tmp_path)
    name, message = OUTPUT_FILES[case]
    if command == "convert":
        name = name.replace(".npz", ".json")
    output = tmp_path / name
    argv = [command, good, "-o", output] + (["--out-dir", tmp_path / "people"] if command == "predict" else [])
    assert_refused(argv, output, watch=[tmp_path], contains=message)


@pytest.mark.parametrize("which", ["--out", "--keypoints", "--png"])
@pytest.mark.parametrize("problem", ["missing folder", "is a folder", "under a file"])
def test_body_checks_every_output_before_writing_any(tmp_path, which, problem):
    (tmp_path / "dir.obj").mkdir()
    (tmp_path / "file").write_text("x")
    bad = {"missing folder": tmp_path / "missing" / "x.obj", "is a folder": tmp_path / "dir.obj",
           "under a file": tmp_path / "file" / "x.obj"}[problem]
    outputs = {"--out": tmp_path / "body.obj", "--keypoints": tmp_path / "body.json", "--png": tmp_path / "body.png"}
    outputs[which] = bad
    argv = ["body"] + [item for flag, path in outputs.items() for item in (flag, path)]
    assert_refused(argv, bad, watch=[tmp_path])


# ---------------------------------------------------------------------------------------------
# 7. images that cannot be read: a header claiming 20000 x 20000 pixels, garbage


def _png_header(width: int, height: int) -> bytes:
    """A PNG with a valid signature and IHDR chunk declaring ``width`` x ``height``, no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


BAD_IMAGES = {
    "bomb 20000x20000": ("big.png", _png_header(20000, 20000)),
    "bomb 10000x10000": ("big.png", _png_header(10000, 10000)),
    "truncated png": ("cut.png", _png_header(64, 64)),
    "garbage": ("noise.jpg", bytes(range(256))),
    "empty": ("empty.png", b""),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
@pytest.mark.parametrize("command", ["predict --image", "image"])
def test_unreadable_images_are_refused(tmp_path, command, case):
    name, content = BAD_IMAGES[case]
    picture = tmp_path / name
    picture.write_bytes(content)
    good = tmp_path / "k.json"
    good.write_text(SAMPLE.read_text())
    out = _out(tmp_path)
    if command == "image":
        one_frame = tmp_path / "one.npz"
        one_frame.write_bytes(_npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17"))
        argv = ["image", picture, "--out-dir", out / "people", "--keypoints", one_frame]
    else:
        argv = ["predict", good, "-o", out / "res.npz", "--out-dir", out / "people", "--image", picture]
    assert_refused(argv, picture, watch=[out])


# ---------------------------------------------------------------------------------------------
# 8. model files with the right container but the wrong content


def _tiny_regressor(hidden=8):
    model = KeypointRegressor(hidden, 1, 1)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _model_file(path: Path, state, **header) -> Path:
    meta = {"format": "meshpose-regressor-1", "model": json.dumps({"hidden": 8, "blocks": 1, "iterations": 1})}
    meta.update({k: v for k, v in header.items() if v is not None})
    for key in [k for k, v in header.items() if v is None]:
        meta.pop(key)
    save_file(state, str(path), metadata=meta)
    return path


def _raw_safetensors(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


def _settings(**changes) -> str:
    return json.dumps({"hidden": 8, "blocks": 1, "iterations": 1} | changes)


def _make_model(tmp: Path, case: str) -> Path:
    path = tmp / "model.safetensors"
    state = _tiny_regressor()
    if case == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "header length 2**60":
        path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    elif case == "header not json":
        path.write_bytes(_raw_safetensors(b"{not json at all}"))
    elif case == "tensor offsets beyond the file":
        path.write_bytes(_raw_safetensors(json.dumps({"w": {"dtype": "F32", "shape": [10**6],
                                                            "data_offsets": [0, 4 * 10**6]}}).encode()))
    elif case == "other format":
        _model_file(path, state, format="meshpose-something-else")
    elif case == "no format":
        _model_file(path, state, format=None)
    elif case == "no model entry":
        _model_file(path, state, model=None)
    elif case == "model entry not json":
        _model_file(path, state, model="{hidden: 8")
    elif case == "model entry a list":
        _model_file(path, state, model="[8, 1, 1]")
    elif case == "setting missing":
        _model_file(path, state, model=json.dumps({"hidden": 8, "blocks": 1}))
    elif case == "setting a string":
        _model_file(path, state, model=_settings(hidden="8"))
    elif case == "setting a float":
        _model_file(path, state, model=_settings(blocks=1.5))
    elif case == "setting a bool":
        _model_file(path, state, model=_settings(iterations=True))
    elif case == "setting 10**9":
        _model_file(path, state, model=_settings(hidden=10**9))
    elif case == "setting negative":
        _model_file(path, state, model=_settings(hidden=-8))
    elif case == "tensor missing":
        _model_file(path, {k: v for i, (k, v) in enumerate(state.items()) if i})
    elif case == "tensor extra":
        _model_file(path, state | {"stowaway": torch.zeros(3)})
    elif case == "tensors of another width":
        _model_file(path, state, model=_settings(hidden=16))
    elif case == "tensor with nan":
        first = next(iter(state))
        _model_file(path, state | {first: torch.full_like(state[first], float("nan"))})
    elif case == "pose2mesh data not json":
        _model_file(path, state, format="meshpose-pose2mesh-1", data="{")
    elif case == "pose2mesh unknown joint set":
        _model_file(path, state, format="meshpose-pose2mesh-1", data=json.dumps({"joint_set": "coco99"}))
    elif case == "pose2mesh levels 1000":
        _model_file(path, state, format="meshpose-pose2mesh-1", data="{}", model=json.dumps({"levels": 1000}))
    elif case == "pose2mesh tensors missing":
        _model_file(path, state, format="meshpose-pose2mesh-1", data="{}", model=json.dumps({"levels": 7}))
    elif case == "a folder":
        path.mkdir()
    elif case == "broken symlink":
        os.symlink(tmp / "gone.safetensors", path)
    else:
        raise AssertionError(case)
    return path


MODEL_CASES = ["garbage", "empty", "header length 2**60", "header not json", "tensor offsets beyond the file",
               "other format", "no format", "no model entry", "model entry not json", "model entry a list",
               "setting missing", "setting a string", "setting a float", "setting a bool", "setting 10**9",
               "setting negative", "tensor missing", "tensor extra", "tensors of another width", "tensor with nan",
               "pose2mesh data not json", "pose2mesh unknown joint set", "pose2mesh levels 1000",
               "pose2mesh tensors missing", "a folder", "broken symlink"]


def test_a_good_tiny_model_file_loads(tmp_path):
    """The control for the cases below: the same construction, unbroken, is accepted."""
    model = _model_file(tmp_path / "model.safetensors", _tiny_regressor())
    outcome = run_cli("predict", SAMPLE, "-o", tmp_path / "res.npz", "--model", model)
    assert outcome.code == 0, outcome.stderr


#: predict gets every case; image and eval (the same loader) those not marked as repeats.
_REPEATS = ("setting a", "header length", "pose2mesh data", "model entry a")


@pytest.mark.parametrize("command, case", [("predict", case) for case in MODEL_CASES]
                         + [(command, case) for command in ("image", "eval") for case in MODEL_CASES
                            if not case.startswith(_REPEATS)])
def test_bad_model_files_are_refused(tmp_path, command, case):
    model = _make_model(tmp_path, case)
    good = tmp_path / "k.json"
    good.write_text(SAMPLE.read_text())
    out = _out(tmp_path)
    if command == "predict":
        argv = ["predict", good, "-o", out / "res.npz", "--out-dir", out / "people", "--model", model]
    elif command == "image":
        one_frame = tmp_path / "one.npz"
        one_frame.write_bytes(_npz(keypoints=GOOD_KEYPOINTS, joint_set="coco17"))
        argv = ["image", _tiny_png(tmp_path), "--out-dir", out / "people", "--keypoints", one_frame, "--model", model]
    else:
        argv = ["eval", "--model", model, "--samples", "1"]
    assert_refused(argv, model, watch=[out])


# ---------------------------------------------------------------------------------------------
# 9. body --pose FILE


POSES = {
    "empty npy": ("pose.npy", b""),
    "garbage npy": ("pose.npy", b"\x93NUMPY" + bytes(range(100))),
    "garbage npz": ("pose.npz", b"PK\x03\x04" + bytes(range(100))),
    "npy header 10**11": ("pose.npy", _npy_header((10**11, 22, 3))),
    "npz member header 10**11": ("pose.npz", _zip({"pose.npy": _npy_header((10**11, 22, 3))})),
    "npz no pose": ("pose.npz", _npz(rotation=np.zeros((22, 3)))),
    "npz forged size": ("pose.npz", _forged_sizes(_zip({"pose.npy": _npy(np.zeros((22, 3)))}, zipfile.ZIP_STORED))),
    "pickled objects": ("pose.npy", _npy(np.array([None] * 66, dtype=object).reshape(22, 3))),
    "strings": ("pose.npy", _npy(np.full((22, 3), "a"))),
    "wrong shape": ("pose.npy", _npy(np.zeros((21, 3)))),
    "nan": ("pose.npy", _npy(np.full((22, 3), np.nan))),
    "symlink loop": ("pose.npy", "->pose.npy"),
    "missing": ("pose.npy", None),
}


@pytest.mark.parametrize("case", sorted(POSES))
def test_bad_pose_files_are_refused(tmp_path, case):
    bad = _case(POSES, case, tmp_path)
    out = _out(tmp_path)
    argv = ["body", "--pose", bad, "--out", out / "b.obj", "--keypoints", out / "b.json", "--png", out / "b.png"]
    assert_refused(argv, bad, watch=[out])


def test_body_prints_every_path_it_wrote(tmp_path):
    outcome = run_cli("body", "--out", tmp_path / "b.obj", "--png", tmp_path / "b.png", "--keypoints",
                      tmp_path / "b.json")
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.split() == [str(tmp_path / n) for n in ("b.obj", "b.json", "b.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "b.obj", "b.png"]


# ---------------------------------------------------------------------------------------------
# 10. eval: every input checked before anything runs


def _eval_cases(tmp: Path):
    garbage = tmp / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really")
    no_arrays = tmp / "other.npz"
    no_arrays.write_bytes(_npz(x=np.zeros(3)))
    partial = tmp / "h36m"
    partial.mkdir()
    (partial / "h36m_S1_3d.npz").write_bytes(_npz(x=np.zeros(3)))
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {
        "h36m missing": (["--h36m", tmp / "missing"], tmp / "missing"),
        "h36m a file": (["--h36m", a_file], a_file),
        "h36m incomplete": (["--h36m", partial], partial / "h36m_S1_2d_sh.npz"),
        "bank missing": (["--bank", f"x={tmp / 'missing.npz'}"], tmp / "missing.npz"),
        "bank garbage": (["--bank", f"x={garbage}"], garbage),
        "bank without arrays": (["--bank", f"x={no_arrays}"], no_arrays),
        "bank without name": (["--bank", str(garbage)], str(garbage)),
        "model missing": (["--model", tmp / "missing.safetensors"], tmp / "missing.safetensors"),
        "samples 0": (["--samples", "0"], "--samples"),
        "stride 0": (["--stride", "0", "--h36m", partial], "--stride"),
        "keypoint dataset missing": (["--tasks", "predict", "mesh-keypoints", "--keypoint-dataset", tmp / "nope"],
                                     tmp / "nope"),
    }


@pytest.mark.parametrize("case", ["h36m missing", "h36m a file", "h36m incomplete", "bank missing", "bank garbage",
                                  "bank without arrays", "bank without name", "model missing", "samples 0",
                                  "stride 0", "keypoint dataset missing"])
def test_eval_checks_its_inputs_first(tmp_path, case):
    args, names = _eval_cases(tmp_path)[case]
    start = time.perf_counter()
    assert_refused(["eval", *args], names, watch=[tmp_path])
    assert time.perf_counter() - start < 20  # before the protocols run (which take a minute)


# ---------------------------------------------------------------------------------------------
# 11. what is written: the shortest float32 decimals; stale temporaries of dead processes


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_convert_writes_the_shortest_decimals(tmp_path, suffix):
    out = tmp_path / f"k{suffix}"
    outcome = run_cli("convert", SAMPLE, "-o", out)
    assert outcome.code == 0, outcome.stderr
    text = out.read_text()
    assert "417.18" in text and "417.17999" not in text
    longest = max(len(m.group(0).lstrip("-").replace(".", "")) for m in re.finditer(r"-?\d+\.\d+", text))
    assert longest <= 9  # float32 needs at most 9 significant digits
    from meshpose.io.keypoints import read_keypoints

    np.testing.assert_array_equal(read_keypoints(out).keypoints, read_keypoints(SAMPLE).keypoints)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead = _dead_pid()
        host = atomic._HOST
        stale_file = tmp_path / f".meshpose-tmp-{dead}-{host}-k.json.abc123.tmp.json"
        stale_folder = tmp_path / f".meshpose-tmp-{dead}-{host}-people.xyz"
        live_file = tmp_path / f".meshpose-tmp-{live.pid}-{host}-k.json.def456.tmp.json"
        other_host = tmp_path / f".meshpose-tmp-{dead}-ffffffff-k.json.0.tmp.json"
        unrelated = tmp_path / ".k.json.tmp"
        for path in (stale_file, live_file, other_host, unrelated):
            path.write_bytes(b"partial")
        stale_folder.mkdir()
        (stale_folder / "frame000000_person00.obj").write_text("v 0 0 0\n")
        outcome = run_cli("convert", SAMPLE, "-o", tmp_path / "k.json")
        assert outcome.code == 0, outcome.stderr
        assert not stale_file.exists() and not stale_folder.exists()
        assert live_file.exists() and other_host.exists() and unrelated.exists()
        assert (tmp_path / "k.json").exists()
    finally:
        live.kill()
        live.wait()


def test_a_killed_write_leaves_a_temporary_the_next_run_removes(tmp_path):
    """A process killed while writing leaves its named temporary; the next write removes it."""
    pid = os.fork()
    if pid == 0:  # the child: killed in the middle of writing (never returns)
        def write(tmp):
            Path(tmp).write_bytes(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)

        try:
            atomic.atomic_write(tmp_path / "res.npz", write)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".meshpose-tmp-{pid}-")
    outcome = run_cli("convert", SAMPLE, "-o", tmp_path / "k.npz")
    assert outcome.code == 0, outcome.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["k.npz"]


@pytest.mark.parametrize("fails", [False, True])
def test_an_output_batch_moves_everything_in_or_nothing(tmp_path, fails):
    """What predict and image rely on: files and staged folders of one batch appear together,
    merged into existing folders (the user's files kept), or not at all."""
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "mine.txt").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    try:
        with atomic.output_batch():
            atomic.atomic_write_text(tmp_path / "res.txt", "results")
            with atomic.staged_folder(out / "clip") as staging:
                (staging / "frame0.json").write_text("{}")
            with atomic.staged_folder(tmp_path / "new" / "deeper") as staging:
                (staging / "a.obj").write_text("v 0 0 0\n")
            assert not (tmp_path / "res.txt").exists() and not (out / "clip" / "frame0.json").exists()
            if fails:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    if fails:
        assert after == before  # no file, no folder, no temporary
    else:
        assert (tmp_path / "res.txt").read_text() == "results"
        assert sorted(p.name for p in (out / "clip").iterdir()) == ["frame0.json", "mine.txt"]
        assert (tmp_path / "new" / "deeper" / "a.obj").exists()
        assert not [p for p in tmp_path.rglob(".meshpose-tmp-*")]
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~atomic._UMASK
