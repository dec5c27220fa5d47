"""Tests for meshpose.joints: set definitions, flip permutations, edges and conversion.

Expected values are written out by hand from the public format definitions, not derived from
the module under test.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from meshpose import joints
from meshpose.errors import MeshposeError, UnknownNameError
from meshpose.joints import JOINT_SETS, JointSet, convert, conversion_rules, describe, flip_permutation, get_joint_set

EXPECTED_LENGTHS = {
    "coco17": 17,
    "coco_wholebody23": 23,
    "openpose18": 18,
    "body25": 25,
    "h36m17": 17,
    "h36m17_anatomical": 17,
    "mpii16": 16,
    "smpl24": 24,
    "seed12": 12,
}
ALL_SETS = sorted(EXPECTED_LENGTHS)

# Hand-written full orders (canonical names) for the sets whose orders are public formats.
COCO17 = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
EXPECTED_ORDERS = {
    "coco17": COCO17,
    "coco_wholebody23": COCO17
    + ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"],
    "openpose18": [
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    ],
    "body25": [
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe",
        "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ],
    "h36m17": [
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head_top", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ],
    "h36m17_anatomical": [  # the same joints as h36m17, another definition on the body
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head_top", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ],
    "mpii16": [
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
        "spine", "thorax", "head_top", "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist",
    ],
    "smpl24": [
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
        "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
        "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hand", "right_hand",
    ],
    "seed12": [
        "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
        "right_wrist", "pelvis", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ],
}


def mirror(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def random_points(n_joints: int, dims: int = 3, batch: tuple[int, ...] = (4,), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=batch + (n_joints, dims))


# ------------------------------------------------------------------------------------ definitions


def test_exactly_the_documented_sets():
    assert set(JOINT_SETS) == set(EXPECTED_LENGTHS)
    assert type(JOINT_SETS) is dict


@pytest.mark.parametrize("name", ALL_SETS)
def test_length_and_unique_snake_case_names(name):
    js = JOINT_SETS[name]
    assert isinstance(js, JointSet)
    assert js.name == name
    assert len(js) == EXPECTED_LENGTHS[name]
    assert len(js.names) == EXPECTED_LENGTHS[name]
    assert len(set(js.names)) == len(js.names)
    for n in js.names:
        assert n == n.lower() and n.replace("_", "").isalnum() and not n.startswith("_"), n
    assert js.description and "\n" not in js.description


@pytest.mark.parametrize("name", ALL_SETS)
def test_full_order_matches_public_format(name):
    assert list(JOINT_SETS[name].names) == EXPECTED_ORDERS[name]


@pytest.mark.parametrize(
    "name, index, joint",
    [
        ("coco17", 0, "nose"),
        ("coco17", 5, "left_shoulder"),
        ("coco17", 16, "right_ankle"),
        ("coco_wholebody23", 17, "left_big_toe"),
        ("coco_wholebody23", 22, "right_heel"),
        ("openpose18", 1, "neck"),
        ("openpose18", 2, "right_shoulder"),
        ("openpose18", 17, "left_ear"),
        ("body25", 8, "pelvis"),
        ("body25", 19, "left_big_toe"),
        ("body25", 24, "right_heel"),
        ("h36m17", 0, "pelvis"),
        ("h36m17", 9, "neck_nose"),
        ("h36m17", 10, "head_top"),
        ("h36m17", 11, "left_shoulder"),
        ("mpii16", 0, "right_ankle"),
        ("mpii16", 6, "pelvis"),
        ("mpii16", 9, "head_top"),
        ("smpl24", 12, "neck"),
        ("smpl24", 15, "head"),
        ("smpl24", 23, "right_hand"),
        ("seed12", 7, "pelvis"),
    ],
)
def test_spot_check_positions(name, index, joint):
    js = JOINT_SETS[name]
    assert js.names[index] == joint
    assert js.index(joint) == index


def test_shared_names_across_sets():
    # The same anatomical point has the same name in every set that has it.
    for name in ALL_SETS:
        assert "left_shoulder" in JOINT_SETS[name].names
    for name in ("body25", "h36m17", "mpii16", "smpl24", "seed12"):
        assert "pelvis" in JOINT_SETS[name].names
    # Distinct anatomical points keep distinct names.
    assert "nose" not in JOINT_SETS["h36m17"].names
    assert "neck" not in JOINT_SETS["h36m17"].names
    assert "head" not in JOINT_SETS["h36m17"].names


def test_index_unknown_joint_raises():
    with pytest.raises(UnknownNameError, match="left_shoulder"):
        JOINT_SETS["coco17"].index("spine3")


def test_joint_set_is_frozen_and_hashable():
    js = JOINT_SETS["coco17"]
    with pytest.raises(AttributeError):
        js.name = "other"  # type: ignore[misc]
    assert hash(js) == hash(JOINT_SETS["coco17"])


# ------------------------------------------------------------------------------------ flip pairs


@pytest.mark.parametrize("name", ALL_SETS)
def test_flip_pairs_cover_every_left_right_pair(name):
    js = JOINT_SETS[name]
    expected = {
        (js.names.index(n), js.names.index(mirror(n)))
        for n in js.names
        if n.startswith("left_") and mirror(n) in js.names
    }
    assert set(js.flip_pairs) == expected
    assert len(js.flip_pairs) == len(expected)


@pytest.mark.parametrize("name", ALL_SETS)
def test_flip_permutation(name):
    js = JOINT_SETS[name]
    perm = flip_permutation(name)
    assert flip_permutation(js) == perm
    assert sorted(perm) == list(range(len(js)))
    assert [perm[p] for p in perm] == list(range(len(js)))  # involution
    for i, n in enumerate(js.names):
        if n.startswith(("left_", "right_")):
            assert js.names[perm[i]] == mirror(n), n
        else:
            assert perm[i] == i, n


def test_flip_permutation_hand_checked():
    # openpose18: right shoulder (2) <-> left shoulder (5); neck (1) and nose (0) fixed.
    perm = flip_permutation("openpose18")
    assert perm[:8] == [0, 1, 5, 6, 7, 2, 3, 4]
    assert perm[14:] == [15, 14, 17, 16]
    # h36m17: pelvis, spine, thorax, neck_nose, head_top fixed.
    assert flip_permutation("h36m17") == [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]


# ------------------------------------------------------------------------------------ edges


@pytest.mark.parametrize("name", ALL_SETS)
def test_edges_valid_and_connected(name):
    js = JOINT_SETS[name]
    n = len(js)
    assert len(js.edges) >= n - 1
    seen = set()
    for a, b in js.edges:
        assert isinstance(a, int) and isinstance(b, int)
        assert 0 <= a < n and 0 <= b < n and a != b
        key = frozenset((a, b))
        assert key not in seen, f"duplicate edge {(a, b)}"
        seen.add(key)
    rows, cols = zip(*js.edges)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    n_components, _ = connected_components(graph, directed=False)
    assert n_components == 1


@pytest.mark.parametrize("name", ["openpose18", "body25", "h36m17", "mpii16", "smpl24", "seed12"])
def test_rooted_sets_are_trees(name):
    js = JOINT_SETS[name]
    assert len(js.edges) == len(js) - 1  # connected with J-1 edges <=> tree
    children = [c for _, c in js.edges]
    assert len(set(children)) == len(children)  # every joint has at most one parent


def test_smpl_edges_follow_smpl_kinematic_tree():
    names = EXPECTED_ORDERS["smpl24"]
    edges = {(names[a], names[b]) for a, b in JOINT_SETS["smpl24"].edges}
    for parent, child in [
        ("pelvis", "left_hip"), ("pelvis", "spine1"), ("spine3", "neck"), ("spine3", "left_collar"),
        ("neck", "head"), ("left_collar", "left_shoulder"), ("right_wrist", "right_hand"),
    ]:
        assert (parent, child) in edges


# ------------------------------------------------------------------------------------ lookup


@pytest.mark.parametrize("bad", ["coco18", "h36m", "", "smpl"])
def test_unknown_set_raises_and_lists_valid_names(bad):
    with pytest.raises(UnknownNameError) as info:
        get_joint_set(bad)
    assert isinstance(info.value, MeshposeError)
    message = str(info.value)
    for name in ALL_SETS:
        assert name in message


def test_get_joint_set_returns_the_registered_object():
    assert get_joint_set("body25") is JOINT_SETS["body25"]
    assert get_joint_set(JOINT_SETS["body25"]) is JOINT_SETS["body25"]


def test_convert_unknown_name_raises():
    with pytest.raises(UnknownNameError):
        convert(np.zeros((17, 2)), "coco17", "nope")


# ------------------------------------------------------------------------------------ conversion


def test_coco_to_openpose_neck_is_shoulder_midpoint_and_rest_copied():
    pts = np.zeros((17, 2))
    pts[:, 0] = np.arange(17) * 10.0  # x = 10 * index
    pts[:, 1] = np.arange(17) ** 2  # y = index^2
    out = convert(pts, "coco17", "openpose18")
    assert out.shape == (18, 2)
    # shoulders are coco 5 (50, 25) and 6 (60, 36): midpoint (55, 30.5)
    np.testing.assert_array_equal(out[1], [55.0, 30.5])
    # by hand: openpose index -> coco index for the copied joints
    op_to_coco = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13,
                  13: 15, 14: 2, 15: 1, 16: 4, 17: 3}
    for op, coco in op_to_coco.items():
        np.testing.assert_array_equal(out[op], pts[coco])


def test_round_trip_coco_body25_coco_is_identity():
    pts = random_points(17, dims=3, batch=(5, 2))
    body = convert(pts, "coco17", "body25")
    assert body.shape == (5, 2, 25, 3)
    back = convert(body, "body25", "coco17")
    np.testing.assert_array_equal(back, pts)
    # the pelvis (MidHip) was synthesised from the hips; the feet are unknown
    np.testing.assert_allclose(body[..., 8, :], (pts[..., 11, :] + pts[..., 12, :]) / 2)
    assert np.isnan(body[..., 19:, :]).all()


@pytest.mark.parametrize("name", ALL_SETS)
def test_convert_to_same_set_is_identity(name):
    pts = random_points(len(JOINT_SETS[name]), seed=3)
    np.testing.assert_array_equal(convert(pts, name, name), pts)


def test_confidence_min_and_missing_joints():
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.normal(size=(17, 2)), rng.uniform(0.1, 1.0, size=(17, 1))], axis=-1)
    pts[5, 2], pts[6, 2] = 0.9, 0.4  # shoulders
    pts[11, 2], pts[12, 2] = 0.3, 0.7  # hips
    out = convert(pts, "coco17", "h36m17", confidence_last=True)
    assert out.shape == (17, 3)
    # thorax = shoulder midpoint, confidence min(0.9, 0.4)
    np.testing.assert_allclose(out[8, :2], (pts[5, :2] + pts[6, :2]) / 2)
    assert out[8, 2] == pytest.approx(0.4)
    # pelvis = hip midpoint, confidence min(0.3, 0.7)
    np.testing.assert_allclose(out[0, :2], (pts[11, :2] + pts[12, :2]) / 2)
    assert out[0, 2] == pytest.approx(0.3)
    # spine = mean(pelvis, thorax) = mean of the four points; confidence min of all four
    np.testing.assert_allclose(out[7, :2], (pts[5, :2] + pts[6, :2] + pts[11, :2] + pts[12, :2]) / 4)
    assert out[7, 2] == pytest.approx(0.3)
    # neck_nose and head_top cannot be made from COCO: NaN, confidence 0
    for i in (9, 10):
        assert np.isnan(out[i, :2]).all()
        assert out[i, 2] == 0.0
    # copied joints keep their confidence: h36m left_wrist (13) <- coco left_wrist (9)
    np.testing.assert_array_equal(out[13], pts[9])


def test_rule_needs_all_inputs_available():
    pts = np.ones((3, 17, 3))
    pts[1, 6, 2] = 0.0  # sample 1: right shoulder has confidence 0
    pts[2, 5, 0] = np.nan  # sample 2: left shoulder is NaN
    out = convert(pts, "coco17", "openpose18", confidence_last=True)
    np.testing.assert_array_equal(out[0, 1], [1.0, 1.0, 1.0])
    for sample in (1, 2):
        assert np.isnan(out[sample, 1, :2]).all()
        assert out[sample, 1, 2] == 0.0
    # without a confidence channel, a NaN coordinate also blocks the rule
    out2 = convert(pts[..., :2], "coco17", "openpose18")
    assert np.isnan(out2[2, 1]).all()
    np.testing.assert_array_equal(out2[1, 1], [1.0, 1.0])


def test_missing_joints_without_confidence_are_nan():
    out = convert(random_points(12, seed=2), "seed12", "coco17")
    coco = EXPECTED_ORDERS["coco17"]
    for i, n in enumerate(coco):
        if n in EXPECTED_ORDERS["seed12"]:
            assert np.isfinite(out[:, i]).all(), n
        else:
            assert np.isnan(out[:, i]).all(), n


def test_coco_to_smpl_synthesises_head_and_neck_only():
    pts = random_points(17, seed=4)
    out = convert(pts, "coco17", "smpl24")
    smpl = EXPECTED_ORDERS["smpl24"]
    np.testing.assert_allclose(out[:, smpl.index("head")], (pts[:, 3] + pts[:, 4]) / 2)
    np.testing.assert_allclose(out[:, smpl.index("neck")], (pts[:, 5] + pts[:, 6]) / 2)
    for n in ("spine1", "spine2", "spine3", "left_collar", "left_foot", "right_hand"):
        assert np.isnan(out[:, smpl.index(n)]).all(), n


def test_existing_joint_is_copied_not_synthesised():
    # body25 has its own neck: it must be copied even if it differs from the shoulder midpoint
    pts = random_points(25, seed=5)
    out = convert(pts, "body25", "openpose18")
    np.testing.assert_array_equal(out[:, 1], pts[:, 1])


def test_numpy_and_torch_agree():
    torch = pytest.importorskip("torch")
    pts = random_points(17, dims=3, batch=(2, 3), seed=6)
    pts[0, 1, 11, 2] = 0.0  # one zero confidence
    pts[..., 2] = np.abs(pts[..., 2]).clip(0, 1)
    for target in ("openpose18", "body25", "h36m17", "smpl24", "seed12"):
        for conf in (False, True):
            ref = convert(pts, "coco17", target, confidence_last=conf)
            got = convert(torch.from_numpy(pts), "coco17", target, confidence_last=conf)
            assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
            np.testing.assert_array_equal(got.numpy(), ref)


def test_torch_keeps_dtype_and_gradients():
    torch = pytest.importorskip("torch")
    pts = torch.randn(4, 17, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    pts.requires_grad_(True)
    out = convert(pts, "coco17", "h36m17")
    assert out.dtype == torch.float32 and out.shape == (4, 17, 3)
    out[:, 0].sum().backward()  # pelvis = mean of the hips
    expected = torch.zeros(4, 17, 3)
    expected[:, 11] = expected[:, 12] = 0.5
    assert torch.equal(pts.grad, expected)


def test_numpy_dtype_kept_and_ints_become_float():
    f32 = random_points(17, seed=7).astype(np.float32)
    assert convert(f32, "coco17", "openpose18").dtype == np.float32
    ints = np.arange(17 * 2).reshape(17, 2)
    out = convert(ints, "coco17", "openpose18")
    assert np.issubdtype(out.dtype, np.floating)
    np.testing.assert_array_equal(out[1], [(10 + 12) / 2, (11 + 13) / 2])


def test_wrong_joint_count_raises():
    with pytest.raises(MeshposeError, match="17"):
        convert(np.zeros((18, 2)), "coco17", "body25")
    with pytest.raises(MeshposeError):
        convert(np.zeros((17, 1)), "coco17", "body25", confidence_last=True)


# ------------------------------------------------------------------------------------ rules, text


def test_conversion_rules():
    rules = conversion_rules()
    assert rules["neck"] == ("left_shoulder", "right_shoulder")
    assert rules["pelvis"] == ("left_hip", "right_hip")
    assert rules["head"] == ("left_ear", "right_ear")
    rules["neck"] = ("nose",)  # a copy: must not affect convert
    assert conversion_rules()["neck"] == ("left_shoulder", "right_shoulder")
    known = set().union(*(js.names for js in JOINT_SETS.values()))
    for joint, inputs in conversion_rules().items():
        assert joint in known and inputs and set(inputs) <= known


def test_describe_lists_order_and_flip_pairs():
    text = describe("openpose18")
    assert text.startswith("openpose18")
    assert "   1: neck" in text.splitlines()
    assert "  17: left_ear" in text.splitlines()
    assert "(5, 2)" in text  # left_shoulder, right_shoulder
    assert "coco17" not in text
    everything = describe()
    for name in ALL_SETS:
        assert f"{name} ({EXPECTED_LENGTHS[name]} joints)" in everything
    with pytest.raises(UnknownNameError):
        describe("nope")


def test_module_docstring_documents_every_rule():
    doc = joints.__doc__
    for joint, inputs in conversion_rules().items():
        assert any(line.split()[:1] == [joint] and all(i in line for i in inputs) for line in doc.splitlines()), joint


def test_smpl_to_h36m_uses_documented_rules():
    # thorax comes from the shoulders (not from SMPL's own neck joint); spine = mean(pelvis, thorax)
    pts = random_points(24, seed=8)
    out = convert(pts, "smpl24", "h36m17")
    thorax = (pts[:, 16] + pts[:, 17]) / 2
    np.testing.assert_allclose(out[:, 8], thorax)
    np.testing.assert_allclose(out[:, 7], (pts[:, 0] + thorax) / 2)
    np.testing.assert_array_equal(out[:, 0], pts[:, 0])  # SMPL pelvis copied, not the hip midpoint
    assert np.isnan(out[:, 9:11]).all()  # neck_nose, head_top
    assert conversion_rules()["thorax"] == ("left_shoulder", "right_shoulder")
    assert conversion_rules()["spine"] == ("pelvis", "thorax")
