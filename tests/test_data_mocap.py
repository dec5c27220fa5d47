"""Tests for the motion-capture readers: BVH, ASF/AMC, AMASS npz, unit inference.

Every expected position below is worked out by hand in the comments. Rotation facts used
(right-handed, column vectors, angles in degrees):

    Rz(90): x -> y,  y -> -x      Rx(90): y -> z,  z -> -y      Ry(90): z -> x,  x -> -z
    Rx(-90): y -> -z

The tests on the real data in /work/shared/data/mocap skip when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from meshpose.data.amass import AmassMotion, read_amass, write_amass
from meshpose.data.asf_amc import find_asf, read_amc, read_asf
from meshpose.data.bvh import parse_bvh, read_bvh
from meshpose.data.mocap import (
    MocapClip,
    children,
    infer_unit_scale,
    standing_height,
)
from meshpose.data.mocap_files import read_mocap
from meshpose.errors import InputFileError

# ---------------------------------------------------------------------------------- BVH

CHAIN_BVH = """\
HIERARCHY
ROOT hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT head
    {
      OFFSET 0 5 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 2 0
      }
    }
  }
}
MOTION
Frames: 4
Frame Time: 0.04
1 2 3  0 0 0   0 0 0   0 0 0
1 2 3  0 0 0   90 0 0  0 0 0
1 2 3  0 90 0  90 0 0  0 0 0
1 2 3  0 0 0   90 90 0 0 0 0
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bvh_chain_zxy_by_hand(tmp_path):
    clip = read_bvh(_write(tmp_path, "chain.bvh", CHAIN_BVH), unit_scale=1.0)
    assert clip.joint_names == ("hips", "spine", "head")
    assert clip.parents.tolist() == [-1, 0, 1]
    assert clip.positions.shape == (4, 3, 3) and clip.positions.dtype == np.float32
    assert clip.fps == 25.0  # 1 / 0.04
    assert clip.up_axis == "y" and clip.unit_scale == 1.0
    expected = np.array(
        [
            # frame 0, no rotation: hips = position channels (1, 2, 3);
            # spine = hips + (0, 10, 0) = (1, 12, 3); head = spine + (0, 5, 0) = (1, 17, 3)
            [[1, 2, 3], [1, 12, 3], [1, 17, 3]],
            # frame 1, spine Zrotation 90: spine itself does not move (1, 12, 3);
            # head = spine + Rz(90) @ (0, 5, 0) = (1, 12, 3) + (-5, 0, 0) = (-4, 12, 3)
            [[1, 2, 3], [1, 12, 3], [-4, 12, 3]],
            # frame 2, hips Xrotation 90 and spine Zrotation 90:
            # spine = hips + Rx(90) @ (0, 10, 0) = (1, 2, 3) + (0, 0, 10) = (1, 2, 13)
            # head  = spine + Rx(90) @ Rz(90) @ (0, 5, 0) = spine + Rx(90) @ (-5, 0, 0)
            #       = (1, 2, 13) + (-5, 0, 0) = (-4, 2, 13)
            # (parent-first composition; Rz(90) @ Rx(90) @ (0,5,0) = (0,0,5) would differ)
            [[1, 2, 3], [1, 2, 13], [-4, 2, 13]],
            # frame 3, spine channels "Z X Y" = (90, 90, 0): R = Rz(90) @ Rx(90) (first listed
            # outermost). head = spine + Rz(90) @ Rx(90) @ (0, 5, 0) = spine + Rz(90) @ (0, 0, 5)
            #      = (1, 12, 3) + (0, 0, 5) = (1, 12, 8)
            # (the other product, Rx(90) @ Rz(90) @ (0, 5, 0) = (-5, 0, 0), would differ)
            [[1, 2, 3], [1, 12, 3], [1, 12, 8]],
        ],
        dtype=np.float64,
    )
    np.testing.assert_allclose(clip.positions, expected, atol=1e-5)


def test_bvh_end_sites_excluded_by_default_and_included_on_request(tmp_path):
    path = _write(tmp_path, "chain.bvh", CHAIN_BVH)
    clip = read_bvh(path, unit_scale=1.0, include_end_sites=True)
    assert clip.joint_names == ("hips", "spine", "head", "head_end")
    assert clip.parents.tolist() == [-1, 0, 1, 2]
    # frame 0: end = head + (0, 2, 0) = (1, 19, 3)
    np.testing.assert_allclose(clip.positions[0, 3], [1, 19, 3], atol=1e-5)
    # frame 3: end = head + Rz(90) @ Rx(90) @ I @ (0, 2, 0) = (1, 12, 8) + (0, 0, 2) = (1, 12, 10)
    np.testing.assert_allclose(clip.positions[3, 3], [1, 12, 10], atol=1e-5)
    # the joints are the same with and without the end site
    plain = read_bvh(path, unit_scale=1.0)
    np.testing.assert_array_equal(plain.positions, clip.positions[:, :3])
    # read_mocap dispatches .bvh with the same options
    via = read_mocap(path, 1.0, include_end_sites=True)
    assert isinstance(via, MocapClip) and via.joint_names == clip.joint_names
    assert children(clip.parents) == [[1], [2], [3], []]


def test_bvh_xyz_order_matches_scipy_intrinsic_euler(tmp_path):
    rng = np.random.default_rng(0)
    root_angles = rng.uniform(-170, 170, size=3)
    child_angles = rng.uniform(-170, 170, size=3)
    root_pos = np.array([0.3, 1.1, -0.4])
    off1, off2 = np.array([0.0, 0.5, 0.1]), np.array([0.2, 0.4, 0.0])
    text = f"""HIERARCHY
ROOT a
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
  JOINT b
  {{
    OFFSET {off1[0]} {off1[1]} {off1[2]}
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {{
      OFFSET {off2[0]} {off2[1]} {off2[2]}
    }}
  }}
}}
MOTION
Frames: 1
Frame Time: 0.0333333
{' '.join(repr(float(v)) for v in [*root_pos, *root_angles, *child_angles])}
"""
    clip = read_bvh(_write(tmp_path, "xyz.bvh", text), unit_scale=1.0, include_end_sites=True)
    # independent method: scipy's upper-case "XYZ" is intrinsic, = Rx @ Ry @ Rz
    R_a = Rotation.from_euler("XYZ", root_angles, degrees=True).as_matrix()
    R_b = Rotation.from_euler("XYZ", child_angles, degrees=True).as_matrix()
    expected = np.stack([root_pos, root_pos + R_a @ off1, root_pos + R_a @ off1 + R_a @ R_b @ off2])
    np.testing.assert_allclose(clip.positions[0], expected, atol=1e-5)
    assert clip.fps == 30.0  # 1 / 0.0333333 = 30.00003, rounded
    # the extrinsic reading (lower-case "xyz" = Rz @ Ry @ Rx) is a different answer
    R_a_ext = Rotation.from_euler("xyz", root_angles, degrees=True).as_matrix()
    assert not np.allclose(root_pos + R_a_ext @ off1, clip.positions[0, 1], atol=1e-3)


def test_bvh_six_channel_joint_position_channels_replace_the_offset(tmp_path):
    text = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT arm
  {
    OFFSET 100 100 100
    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    JOINT hand
    {
      OFFSET 0 3 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 1 0
      }
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.1
0 0 0  0 0 90   2 0 0  90 0 0   0 0 0
"""
    clip = read_bvh(_write(tmp_path, "six.bvh", text), unit_scale=1.0)
    # root at (0, 0, 0) with Yrotation 90.
    # arm: its position channels (2, 0, 0) REPLACE the OFFSET (100, 100, 100):
    #   arm = root + Ry(90) @ (2, 0, 0) = (0, 0, -2)
    #   (OFFSET + channels would give Ry(90) @ (102, 100, 100) = (100, 100, -102))
    # hand: arm's Zrotation 90 applies: hand = arm + Ry(90) @ Rz(90) @ (0, 3, 0)
    #   = (0, 0, -2) + Ry(90) @ (-3, 0, 0) = (0, 0, -2) + (0, 0, 3) = (0, 0, 1)
    np.testing.assert_allclose(clip.positions[0], [[0, 0, 0], [0, 0, -2], [0, 0, 1]], atol=1e-5)


def _standing_bvh(head: float = 30.0, foot: float = 37.0) -> str:
    """A y-up skeleton whose joints span ``head + foot`` units vertically (hips at 0)."""
    return f"""HIERARCHY
ROOT hips
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT head
  {{
    OFFSET 0 {head} 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {{
      OFFSET 0 4 0
    }}
  }}
  JOINT foot
  {{
    OFFSET 0 -{foot} 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {{
      OFFSET 0 0 5
    }}
  }}
}}
MOTION
Frames: 2
Frame Time: 0.008333
0 37 0 0 0 0 0 0 0 0 0 0
5 37 0 0 0 0 0 0 0 0 0 0
"""


def test_unit_scale_inferred_for_an_inches_skeleton(tmp_path):
    # head joint 30 above the hips, foot 37 below: extent 30 + 37 = 67 units (end sites,
    # which would add 4, are not counted). 67 m, 67 cm (0.67 m) are not human, 67 inches are:
    # 67 * 0.0254 = 1.7018 m.
    clip = read_bvh(_write(tmp_path, "inches.bvh", _standing_bvh()))
    assert clip.unit_scale == pytest.approx(0.0254)
    assert standing_height(clip) == pytest.approx(1.7018, abs=1e-5)
    # hips at y = 37 in -> 0.9398 m; frame 1 moves x by 5 in = 0.127 m
    np.testing.assert_allclose(clip.positions[:, 0], [[0, 0.9398, 0], [0.127, 0.9398, 0]], atol=1e-5)
    assert clip.fps == 120.0  # 1 / 0.008333 = 120.005, rounded
    # an explicit scale wins
    cm = read_bvh(_write(tmp_path, "inches.bvh", _standing_bvh()), unit_scale=0.01)
    assert cm.unit_scale == 0.01 and standing_height(cm) == pytest.approx(0.67, abs=1e-6)
    # the same skeleton written in centimetres: 70 + 100 = 170 cm -> 0.01
    cm_clip = read_bvh(_write(tmp_path, "cm.bvh", _standing_bvh(70, 100)))
    assert cm_clip.unit_scale == 0.01 and standing_height(cm_clip) == pytest.approx(1.70, abs=1e-5)
    # too small for any unit (5 + 5 = 10 units: 10 m, 0.1 m, 0.254 m, 0.01 m) -> error naming the file
    with pytest.raises(InputFileError, match="tiny.bvh: .*unit_scale"):
        read_bvh(_write(tmp_path, "tiny.bvh", _standing_bvh(5, 5)))


def test_infer_unit_scale_candidates():
    assert infer_unit_scale(67) == 0.0254  # 67 in = 1.70 m
    assert infer_unit_scale(170) == 0.01  # 170 cm
    assert infer_unit_scale(1.7) == 1.0  # metres
    assert infer_unit_scale(1700) == 0.001  # mm
    assert infer_unit_scale(50) == 0.0254  # 1.27 m; 50 cm = 0.5 m is not
    for bad in (10, 95, 300, 5000, 0, -3, float("nan")):  # 95: 2.41 m in inches, 0.95 m in cm
        with pytest.raises(ValueError):
            infer_unit_scale(bad)


def _lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize(
    "name, edit, message",
    [
        # no MOTION section at all
        ("nomotion.bvh", lambda t: t.split("MOTION")[0], "no MOTION section"),
        # line 25 (the 2nd frame line) loses a value: 11 values for 12 channels
        (
            "short.bvh",
            lambda t: t.replace("1 2 3  0 0 0   90 0 0  0 0 0", "1 2 3  0 0 0   90 0 0  0 0"),
            "line 25: frame has 11 values, expected 12",
        ),
        # a non-number on line 26 (the 3rd frame line)
        ("nan.bvh", lambda t: t.replace("1 2 3  0 90 0", "1 2 x  0 90 0"), "line 26: 'x' is not a finite number"),
        # Frames: says 5, the file has 4 lines
        ("frames.bvh", lambda t: t.replace("Frames: 4", "Frames: 5"), "'Frames:' says 5 frames but the file has 4"),
        # Frames: not an integer (line 22)
        (
            "frames2.bvh",
            lambda t: t.replace("Frames: 4", "Frames: four"),
            "line 22: 'Frames:' 'four' is not an integer",
        ),
        # a bad channel name (line 5)
        (
            "chan.bvh",
            lambda t: t.replace("Zposition Zrotation", "Zposition Wrotation"),
            "line 5: unknown channel 'Wrotation'",
        ),
        # a missing closing brace: the hierarchy runs into MOTION
        ("brace.bvh", lambda t: t.replace("}\nMOTION", "MOTION"), "hierarchy ends early"),
    ],
)
def test_bvh_malformed_files_raise_input_file_error(tmp_path, name, edit, message):
    assert _lines(CHAIN_BVH)[21] == "Frames: 4" and _lines(CHAIN_BVH)[24].startswith("1 2 3  0 0 0   90")
    path = _write(tmp_path, name, edit(CHAIN_BVH))
    with pytest.raises(InputFileError) as info:
        read_bvh(path, unit_scale=1.0)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message in text


def test_read_mocap_rejects_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="unknown motion-capture extension"):
        read_mocap(_write(tmp_path, "x.c3d", "data"))
    with pytest.raises(InputFileError, match="not found"):
        read_mocap(tmp_path / "missing.bvh")


# ------------------------------------------------------------------------------ ASF/AMC

ASF = """\
# a 2-bone test skeleton
:version 1.10
:name test
:units
  mass 1.0
  length 0.5
  angle deg
:documentation
  upper: 30 / 0.5 = 60 inches = 1.524 m, lower: 10 / 0.5 = 20 inches = 0.508 m
:root
  order TX TY TZ RX RY RZ
  axis XYZ
  position 0 0 0
  orientation 0 0 0
:bonedata
  begin
    id 1
    name upper
    direction 0 1 0
    length 30
    axis 0 0 90 XYZ
    dof rx ry rz
    limits (-180.0 180.0)
           (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
    id 2
    name lower
    direction 1 0 0
    length 10
    axis 0 0 0 XYZ
    dof rz
    limits (-180.0 180.0)
  end
:hierarchy
  begin
    root upper
    upper lower
  end
"""

AMC = """\
:FULLY-SPECIFIED
:DEGREES
1
root 2 4 6 0 0 0
upper 0 0 0
lower 0
2
root 0 0 0 0 0 0
upper 90 0 0
lower 0
3
root 0 0 0 0 0 0
upper 0 90 0
lower 90
4
root 0 0 0 0 0 0
upper 90 0 90
lower 0
5
root 0 0 0 0 0 90
upper 0 0 0
lower 0
"""


def test_asf_amc_two_bones_by_hand(tmp_path):
    _write(tmp_path, "test.asf", ASF)
    amc = _write(tmp_path, "test_walk_01.amc", AMC)
    clip = read_amc(amc)  # the .asf is found next to it (name prefix "test_")
    assert clip.joint_names == ("root", "upper", "lower")
    assert clip.parents.tolist() == [-1, 0, 1]
    # ASF convention: file value = inches * 0.5, so 1 unit = 0.0254 / 0.5 = 0.0508 m.
    # The rest pose spans 30 units vertically = 1.524 m: a human height, so it is used.
    assert clip.unit_scale == pytest.approx(0.0508)
    assert clip.fps == 120.0  # AMC stores no rate: the default
    # Hand computation in file units (direction * length chains):
    #   upper's axis C = Rz(90): its local x axis is world y, its local y axis is world -x.
    expected_units = np.array(
        [
            # 1: rest pose, root at (2, 4, 6): upper end = root + 30 * (0, 1, 0) = (2, 34, 6);
            #    lower end = upper end + 10 * (1, 0, 0) = (12, 34, 6)
            [[2, 4, 6], [2, 34, 6], [12, 34, 6]],
            # 2: upper rx 90 about its LOCAL x = world y: L = C Rx(90) C^-1 = Ry(90).
            #    upper end = 30 * Ry(90) @ (0, 1, 0) = (0, 30, 0) (the bone lies on the axis);
            #    lower end = (0, 30, 0) + 10 * Ry(90) @ (1, 0, 0) = (0, 30, 0) + (0, 0, -10)
            [[0, 0, 0], [0, 30, 0], [0, 30, -10]],
            # 3: upper ry 90 about its local y = world -x: L = Rx(-90);
            #    upper end = 30 * Rx(-90) @ (0, 1, 0) = (0, 0, -30);
            #    lower rz 90 (axis 0, so L = Rz(90)): world rotation Rx(-90) @ Rz(90);
            #    lower end = (0, 0, -30) + 10 * Rx(-90) @ (0, 1, 0) = (0, 0, -30) + (0, 0, -10)
            [[0, 0, 0], [0, 0, -30], [0, 0, -40]],
            # 4: upper "dof rx ry rz" = (90, 0, 90): fixed axes, x first: M = Rz(90) @ Rx(90);
            #    L = C M C^-1 = (C Rz(90) C^-1)(C Rx(90) C^-1) = Rz(90) @ Ry(90);
            #    upper end = 30 * Rz(90) @ Ry(90) @ (0, 1, 0) = 30 * (-1, 0, 0) = (-30, 0, 0);
            #    lower end = (-30, 0, 0) + 10 * Rz(90) @ Ry(90) @ (1, 0, 0)
            #              = (-30, 0, 0) + 10 * Rz(90) @ (0, 0, -1) = (-30, 0, -10)
            #    (the other order, M = Rx(90) @ Rz(90), would put upper's end at (0, 0, 30))
            [[0, 0, 0], [-30, 0, 0], [-30, 0, -10]],
            # 5: root RZ 90: upper end = 30 * Rz(90) @ (0, 1, 0) = (-30, 0, 0);
            #    lower end = (-30, 0, 0) + 10 * Rz(90) @ (1, 0, 0) = (-30, 10, 0)
            [[0, 0, 0], [-30, 0, 0], [-30, 10, 0]],
        ],
        dtype=np.float64,
    )
    np.testing.assert_allclose(clip.positions, expected_units * 0.0508, atol=1e-6)
    # e.g. frame 1's upper end: (2, 34, 6) * 0.0508 = (0.1016, 1.7272, 0.3048) m
    np.testing.assert_allclose(clip.positions[0, 1], [0.1016, 1.7272, 0.3048], atol=1e-6)
    # read_mocap dispatches .amc; an explicit skeleton, fps and scale are honoured
    via = read_mocap(amc, 1.0, asf=tmp_path / "test.asf", fps=30)
    assert via.fps == 30.0 and via.unit_scale == 1.0
    np.testing.assert_allclose(via.positions, expected_units, atol=1e-5)


def test_amc_in_radians_gives_the_same_positions(tmp_path):
    asf = _write(tmp_path, "test.asf", ASF)
    amc_deg = read_amc(_write(tmp_path, "deg.amc", AMC), asf)
    rad_text = AMC.replace(":DEGREES", ":RADIANS").replace(" 90", f" {np.pi / 2!r}")
    amc_rad = read_amc(_write(tmp_path, "rad.amc", rad_text), asf)
    np.testing.assert_allclose(amc_rad.positions, amc_deg.positions, atol=1e-6)


def test_asf_axis_order_token(tmp_path):
    # "axis 90 0 90 ZYX": the numbers are the angles about x, y, z; the token says z is applied
    # first (fixed axes): C = Rx(90) @ Ry(0) @ Rz(90). Its local x axis in the world is
    # C @ x = Rx(90) @ y = z, so upper's "rx 90" (frame 2) is a 90 deg turn about world z:
    #   upper end = 30 * Rz(90) @ (0, 1, 0) = (-30, 0, 0)
    #   lower end = (-30, 0, 0) + 10 * Rz(90) @ (1, 0, 0) = (-30, 10, 0)
    # (read as XYZ, C = Rz(90) @ Rx(90) would turn about world y and leave upper at (0, 30, 0))
    asf = _write(tmp_path, "zyx.asf", ASF.replace("axis 0 0 90 XYZ", "axis 90 0 90 ZYX"))
    clip = read_amc(_write(tmp_path, "zyx.amc", AMC), asf, unit_scale=1.0)
    np.testing.assert_allclose(clip.positions[1], [[0, 0, 0], [-30, 0, 0], [-30, 10, 0]], atol=1e-5)


def test_asf_parsed_fields(tmp_path):
    sk = read_asf(_write(tmp_path, "test.asf", ASF))
    assert [b.name for b in sk.bones] == ["upper", "lower"]
    assert sk.parents.tolist() == [-1, 0]
    assert sk.length_unit == 0.5 and sk.angle_unit == "deg"
    assert sk.root_order == ("tx", "ty", "tz", "rx", "ry", "rz")
    assert sk.bones[0].dof == ("rx", "ry", "rz") and sk.bones[1].dof == ("rz",)
    np.testing.assert_allclose(sk.bones[0].axis, [0, 0, np.pi / 2])


def test_find_asf_and_amc_errors(tmp_path):
    _write(tmp_path, "HDM_xx.asf", ASF)
    _write(tmp_path, "other.asf", ASF)
    amc = _write(tmp_path, "HDM_xx_hop_001_120.amc", AMC)
    assert find_asf(amc).name == "HDM_xx.asf"  # the longest "<stem>_" prefix
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    with pytest.raises(InputFileError, match="cannot find the skeleton"):
        read_amc(_write(lonely, "a.amc", AMC))
    # wrong number of values: "upper" has 3 dofs, line 5 gives 2
    bad = _write(tmp_path, "HDM_xx_bad.amc", AMC.replace("upper 0 0 0\n", "upper 0 0\n", 1))
    with pytest.raises(InputFileError, match=r"HDM_xx_bad.amc: line 5: 'upper' has 2 values, expected 3"):
        read_amc(bad)
    # a bone the skeleton does not have (line 6)
    bad = _write(tmp_path, "HDM_xx_bad2.amc", AMC.replace("lower 0\n", "tail 0\n", 1))
    with pytest.raises(InputFileError, match=r"line 6: bone 'tail' is not in the skeleton"):
        read_amc(bad)
    # a frame that leaves a bone out (frame 2 starts on line 7)
    bad = _write(tmp_path, "HDM_xx_bad3.amc", AMC.replace("upper 90 0 0\n", "", 1))
    with pytest.raises(InputFileError, match=r"line 7: frame leaves out upper"):
        read_amc(bad)
    # an ASF whose hierarchy names an unknown bone (line 39)
    assert ASF.splitlines()[38].strip() == "upper lower"
    broken = _write(tmp_path, "broken.asf", ASF.replace("upper lower", "upper elbow"))
    with pytest.raises(InputFileError, match=r"broken.asf: line 39: hierarchy names unknown bone 'elbow'"):
        read_asf(broken)


# -------------------------------------------------------------------------------- AMASS


def _amass_arrays(T: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "poses": rng.normal(size=(T, 156)),
        "trans": rng.normal(size=(T, 3)),
        "betas": rng.normal(size=16),
        "gender": np.array("female"),
        "mocap_framerate": np.array(120.0),
        "dmpls": rng.normal(size=(T, 8)),
    }


def test_amass_npz_round_trip(tmp_path):
    arrays = _amass_arrays()
    path = tmp_path / "take_poses.npz"
    np.savez(path, **arrays)
    m = read_amass(path)
    assert isinstance(m, AmassMotion)
    np.testing.assert_array_equal(m.poses, arrays["poses"])  # kept as they are
    np.testing.assert_array_equal(m.trans, arrays["trans"])
    np.testing.assert_array_equal(m.betas, arrays["betas"])
    np.testing.assert_array_equal(m.dmpls, arrays["dmpls"])
    assert m.gender == "female" and m.fps == 120.0 and m.num_frames == 5
    assert m.root_orient.shape == (5, 3) and m.pose_body.shape == (5, 63) and m.pose_hand.shape == (5, 90)
    np.testing.assert_array_equal(m.pose_body, arrays["poses"][:, 3:66])
    # read_mocap dispatches .npz to the same reader
    via = read_mocap(path)
    assert isinstance(via, AmassMotion)
    np.testing.assert_array_equal(via.poses, m.poses)
    # write_amass -> read_amass gives the same values back
    out = write_amass(tmp_path / "copy.npz", m)
    back = read_amass(out)
    for key in ("poses", "trans", "betas", "dmpls"):
        np.testing.assert_array_equal(getattr(back, key), getattr(m, key))
    assert back.gender == "female" and back.fps == 120.0
    # bytes gender and the SMPL-X key name for the rate are accepted
    arrays2 = {k: v for k, v in arrays.items() if k not in ("mocap_framerate", "dmpls")}
    arrays2.update(gender=np.array(b"male"), mocap_frame_rate=np.array(60.0))
    np.savez(tmp_path / "b.npz", **arrays2)
    m2 = read_amass(tmp_path / "b.npz")
    assert m2.gender == "male" and m2.fps == 60.0 and m2.dmpls is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"poses": np.zeros((5, 72))}, "'poses' has 72 columns, expected 156"),
        ({"trans": np.zeros((4, 3))}, "'trans' has shape (4, 3), expected (5, 3)"),
        ({"gender": np.array("robot")}, "'gender' must be one of"),
        ({"mocap_framerate": np.array(0.0)}, "frame rate must be > 0"),
        ({"poses": np.full((5, 156), np.nan)}, "'poses' holds NaN"),
        ({"betas": None}, "missing 'betas'"),
    ],
)
def test_amass_validation(tmp_path, change, message):
    arrays = _amass_arrays()
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputFileError) as info:
        read_amass(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    with pytest.raises(InputFileError, match="AMASS files are in metres"):
        read_mocap(path, 0.01)


# --------------------------------------------------------------------------- real data

MOCAP = Path(os.environ.get("MESHPOSE_DATA", "/work/shared/data")) / "mocap"
needs_data = pytest.mark.skipif(not MOCAP.is_dir(), reason="no /work/shared/data/mocap")

# (pattern, takes to sample, expected metres per file unit)
SOURCES = {
    "cmu": ("cmu/*/*.bvh", 12, 0.01),  # cgspeed Daz-friendly BVH: centimetres
    "hdm05": ("hdm05/*/*/*.amc", 12, 0.0254 / 0.45),  # ASF "length 0.45": inches * 0.45
    "bandai": ("bandai/dataset/*/data/*.bvh", 12, 0.01),  # centimetres
}

SKELETON_SIZE = {"cmu": 43, "hdm05": 31, "bandai": 22}


def _sample(pattern: str, n: int) -> list[Path]:
    files = sorted(MOCAP.glob(pattern))
    return files[:: max(1, len(files) // n)][:n]


@needs_data
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_real_takes_parse_with_human_height(source):
    pattern, n, scale = SOURCES[source]
    files = _sample(pattern, n)
    assert len(files) == n
    names = None
    heights = []
    for f in files:
        clip = read_mocap(f)
        assert isinstance(clip, MocapClip)
        assert clip.num_frames > 0 and clip.num_joints == SKELETON_SIZE[source]
        assert np.isfinite(clip.positions).all()
        assert clip.unit_scale == pytest.approx(scale), f
        heights.append(standing_height(clip))
        names = names or clip.joint_names
        assert clip.joint_names == names  # one skeleton layout per source
    # A typical take stands 1.3-2.1 m tall (joint extent: toes to head joint). Single takes
    # leave that range: over all takes the 95th-percentile extent spans CMU 1.29-1.85 m,
    # Bandai 1.24-1.82 m (stooped "sad" walks, the head joint is the base of the skull) and
    # HDM05 1.46-2.16 m (throws with the fingertips overhead), hence 1.2-2.2 per take.
    assert 1.3 <= np.median(heights) <= 2.1, heights
    assert all(1.2 <= h <= 2.2 for h in heights), dict(zip(files, heights))
    if source == "cmu":
        assert names[:5] == ("hip", "abdomen", "chest", "neck", "head") and "lFoot" in names
    if source == "hdm05":
        assert names[:3] == ("root", "lhipjoint", "lfemur") and "head" in names
    if source == "bandai":
        assert names[:3] == ("joint_Root", "Hips", "Spine") and "Toes_R" in names


@needs_data
def test_bandai_position_channels_repeat_the_offsets():
    """The evidence for 'position channels replace the offset': in Bandai files the non-hip
    joints' position channels equal their OFFSETs (bone lengths fixed), the hips' do not."""
    f = _sample(SOURCES["bandai"][0], 1)[0]
    bvh = parse_bvh(f)
    for node in bvh.nodes:
        if node.is_end_site or node.name in ("joint_Root", "Hips"):
            continue
        assert [c for c, kind in node.channels if kind == "position"] == ["x", "y", "z"]
        values = bvh.motion[:, node.first_channel : node.first_channel + 3]
        np.testing.assert_allclose(values, np.broadcast_to(node.offset, values.shape), atol=1e-3)
