"""Tests for meshpose.body.smpl_model.SMPLBody on tiny synthetic SMPL / SMPL-X files.

No real SMPL file is used: each test writes a small model in SMPL's file layout (``v_template``,
``shapedirs``, ``posedirs``, ``J_regressor``, ``weights``, ``kintree_table``, ``f``) whose mesh
is three vertices rigidly bound (weight 1) to each joint, centred on it. The expected output is
computed here independently, with a few lines of forward kinematics in NumPy and SciPy
rotations, never with smplx or meshpose's rotation helpers.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

pytest.importorskip("smplx")

from meshpose.body.base import BodyOutput  # noqa: E402
from meshpose.body.smpl_model import SMPLBody  # noqa: E402
from meshpose.errors import InputFileError, MeshposeError, UnknownNameError  # noqa: E402

SMPL_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# SMPL-X: the 22 body joints as SMPL, then jaw and eyes on the head, 15 joints per hand.
SMPLX_PARENTS = (
    SMPL_PARENTS[:22]
    + [15, 15, 15]
    + [20 if i % 3 == 0 else 25 + i - 1 for i in range(15)]
    + [21 if i % 3 == 0 else 40 + i - 1 for i in range(15)]
)
NUM_BETAS = 10
# Three vertices per joint, summing to zero: their mean is the joint itself.
VERTEX_OFFSETS = np.array([[0.02, 0.0, 0.01], [-0.01, 0.017, -0.005], [-0.01, -0.017, -0.005]])
ATOL = 2e-5


def synthetic_model(parents, num_shape=NUM_BETAS, pose_blend=0.0, seed=0):
    """A model dict in SMPL's layout; 3 vertices per joint, each bound with weight 1."""
    rng = np.random.default_rng(seed)
    n = len(parents)
    joints = np.zeros((n, 3))
    joints[0] = [0.0, 0.9, 0.0]
    for j in range(1, n):
        joints[j] = joints[parents[j]] + rng.uniform(-0.2, 0.2, 3)
    v_template = (joints[:, None, :] + VERTEX_OFFSETS[None]).reshape(-1, 3)
    V = v_template.shape[0]
    owner = np.repeat(np.arange(n), 3)  # the joint each vertex is bound to
    weights = np.zeros((V, n))
    weights[np.arange(V), owner] = 1.0
    regressor = np.zeros((n, V))
    regressor[owner, np.arange(V)] = 1.0 / 3.0
    kintree = np.array([[2**32 - 1] + list(parents[1:]), list(range(n))], dtype=np.int64)
    # float32 arrays: smplx rounds model arrays to float32 even for dtype=float64, so the
    # float64 expectations below are exact only for float32-representable data.
    f32 = np.float32
    return {
        "v_template": v_template.astype(f32),
        "shapedirs": rng.normal(0.0, 0.01, (V, 3, num_shape)).astype(f32),
        "posedirs": (pose_blend * rng.normal(0.0, 0.01, (V, 3, 9 * (n - 1)))).astype(f32),
        "J_regressor": scipy.sparse.csc_matrix(regressor.astype(f32)),
        "weights": weights.astype(f32),
        "kintree_table": kintree,
        "f": (3 * np.arange(n)[:, None] + np.arange(3)[None]).astype(np.uint32),
    }


def write_pkl(path, data):
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    return path


def write_npz(path, data):
    dense = {k: (v.toarray() if scipy.sparse.issparse(v) else v) for k, v in data.items()}
    np.savez(path, **dense)
    return path


def expected_body(data, parents, rotmats, betas, transl):
    """Independent SMPL forward for the rigidly bound synthetic mesh.

    rotmats: (B, J, 3, 3) local rotations of all the file's joints; betas (B, b); transl (B, 3).
    Returns vertices (B, V, 3) and joints (B, J, 3).
    """
    n = len(parents)
    regressor = data["J_regressor"]
    regressor = regressor.toarray() if scipy.sparse.issparse(regressor) else regressor
    b = betas.shape[1]
    shaped = data["v_template"][None] + np.einsum("vdk,bk->bvd", data["shapedirs"][:, :, :b], betas)
    rest_joints = np.einsum("jv,bvd->bjd", regressor, shaped)
    feature = (rotmats[:, 1:] - np.eye(3)).reshape(len(rotmats), -1)
    posed_rest = shaped + np.einsum("vdk,bk->bvd", data["posedirs"], feature)
    G = np.zeros_like(rotmats)
    P = np.zeros_like(rest_joints)
    G[:, 0], P[:, 0] = rotmats[:, 0], rest_joints[:, 0]
    for j in range(1, n):
        p = parents[j]
        G[:, j] = G[:, p] @ rotmats[:, j]
        P[:, j] = P[:, p] + np.einsum("bij,bj->bi", G[:, p], rest_joints[:, j] - rest_joints[:, p])
    owner = np.repeat(np.arange(n), 3)
    local = posed_rest - rest_joints[:, owner]  # each vertex relative to its joint
    vertices = P[:, owner] + np.einsum("bvij,bvj->bvi", G[:, owner], local)
    return vertices + transl[:, None], P + transl[:, None]


def random_rotvecs(shape, seed, scale=0.6):
    return np.random.default_rng(seed).normal(0.0, scale, (*shape, 3))


def rotvec_to_matrix(rotvecs):
    matrices = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix()
    return matrices.reshape(*rotvecs.shape[:-1], 3, 3)


def subtree(parents, root):
    members = {root}
    for j in range(len(parents)):
        if parents[j] in members:
            members.add(j)
    return sorted(members)


@pytest.fixture(scope="module")
def smpl_data():
    return synthetic_model(SMPL_PARENTS)


@pytest.fixture(scope="module")
def smpl_file(smpl_data, tmp_path_factory):
    return write_pkl(tmp_path_factory.mktemp("smpl") / "tiny_smpl.pkl", smpl_data)


@pytest.fixture(scope="module")
def body(smpl_file):
    return SMPLBody(smpl_file, dtype=torch.float64)


def as_np(tensor):
    return tensor.detach().cpu().numpy()


# ---------------------------------------------------------------- outputs and rest pose
def test_output_structure(body, smpl_data, smpl_file):
    out = body()
    assert isinstance(out, BodyOutput)
    assert body.pose_joints == SMPL_NAMES
    assert out.joint_names == SMPL_NAMES
    assert body.num_vertices == 72 and body.num_betas == NUM_BETAS
    assert body.path == smpl_file
    assert out.vertices.shape == (1, 72, 3) and out.joints.shape == (1, 24, 3)
    assert out.vertices.dtype == torch.float64
    assert out.faces.dtype == torch.int64
    np.testing.assert_array_equal(as_np(out.faces), smpl_data["f"].astype(np.int64))


def test_rest_pose_is_shaped_template_plus_translation(body, smpl_data):
    rng = np.random.default_rng(1)
    betas = rng.normal(size=(2, NUM_BETAS))
    transl = rng.normal(size=(2, 3))
    out = body(shape=torch.tensor(betas), translation=torch.tensor(transl))
    shaped = smpl_data["v_template"][None] + np.einsum("vdk,bk->bvd", smpl_data["shapedirs"], betas)
    np.testing.assert_allclose(as_np(out.vertices), shaped + transl[:, None], atol=1e-10)
    joints = np.einsum("jv,bvd->bjd", smpl_data["J_regressor"].toarray(), shaped)
    np.testing.assert_allclose(as_np(out.joints), joints + transl[:, None], atol=1e-10)
    # pose=None is the identity pose; shape=None the zero betas.
    identity = torch.eye(3, dtype=torch.float64).expand(2, 24, 3, 3)
    explicit = body(pose=identity, shape=torch.tensor(betas), translation=torch.tensor(transl))
    np.testing.assert_allclose(as_np(explicit.vertices), as_np(out.vertices), atol=1e-12)
    np.testing.assert_allclose(as_np(body().vertices[0]), smpl_data["v_template"], atol=1e-12)


# ---------------------------------------------------------------- posing, checked by hand
def test_one_joint_rotation_moves_its_subtree_about_the_joint(body, smpl_data):
    knee = SMPL_NAMES.index("left_knee")
    R = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    pose = np.tile(np.eye(3), (1, 24, 1, 1))
    pose[0, knee] = R
    out = body(pose=torch.tensor(pose))
    rest = smpl_data["v_template"].astype(np.float64)
    joints = smpl_data["J_regressor"].toarray() @ rest  # (24, 3) rest joints
    centre = joints[knee]
    moved = subtree(SMPL_PARENTS, knee)
    assert moved == [4, 7, 10]  # left knee, ankle, foot
    expected = rest.copy()
    for j in moved:
        expected[3 * j: 3 * j + 3] = (rest[3 * j: 3 * j + 3] - centre) @ R.T + centre
    np.testing.assert_allclose(as_np(out.vertices[0]), expected, atol=1e-10)
    expected_joints = joints.copy()
    expected_joints[moved] = (joints[moved] - centre) @ R.T + centre
    np.testing.assert_allclose(as_np(out.joints[0]), expected_joints, atol=1e-10)


def test_global_orientation_rotates_everything_about_the_pelvis(body, smpl_data):
    R = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    pose = np.tile(np.eye(3), (1, 24, 1, 1))
    pose[0, 0] = R
    transl = np.array([[0.1, -0.2, 0.3]])
    out = body(pose=torch.tensor(pose), translation=torch.tensor(transl))
    rest = smpl_data["v_template"].astype(np.float64)
    pelvis = smpl_data["J_regressor"].toarray()[0] @ rest
    expected = (rest - pelvis) @ R.T + pelvis + transl
    np.testing.assert_allclose(as_np(out.vertices[0]), expected, atol=1e-10)


def test_random_pose_matches_independent_forward_kinematics(body, smpl_data):
    rotvecs = random_rotvecs((2, 24), seed=2)
    rng = np.random.default_rng(3)
    betas, transl = rng.normal(size=(2, NUM_BETAS)), rng.normal(size=(2, 3))
    out = body(torch.tensor(rotvecs), torch.tensor(betas), torch.tensor(transl))
    matrices = rotvec_to_matrix(rotvecs)
    vertices, joints = expected_body(smpl_data, SMPL_PARENTS, matrices, betas, transl)
    np.testing.assert_allclose(as_np(out.vertices), vertices, atol=1e-10)
    np.testing.assert_allclose(as_np(out.joints), joints, atol=1e-10)


def test_pose_blend_shapes_follow_smpl_convention(tmp_path):
    data = synthetic_model(SMPL_PARENTS, pose_blend=1.0, seed=4)
    body = SMPLBody(write_pkl(tmp_path / "posed.pkl", data), dtype=torch.float64)
    rotvecs = random_rotvecs((2, 24), seed=5)
    betas = np.random.default_rng(6).normal(size=(2, NUM_BETAS))
    out = body(pose=torch.tensor(rotvecs), shape=torch.tensor(betas))
    matrices = rotvec_to_matrix(rotvecs)
    vertices, joints = expected_body(data, SMPL_PARENTS, matrices, betas, np.zeros((2, 3)))
    assert np.abs(data["posedirs"]).max() > 0
    np.testing.assert_allclose(as_np(out.vertices), vertices, atol=1e-10)
    np.testing.assert_allclose(as_np(out.joints), joints, atol=1e-10)


def test_matrix_sixd_and_axis_angle_inputs_agree(smpl_file, smpl_data):
    body = SMPLBody(smpl_file)  # float32
    rotvecs = random_rotvecs((3, 24), seed=7)
    matrices = rotvec_to_matrix(rotvecs)
    sixd = matrices[..., :, :2].reshape(3, 24, 6)
    outs = [body(pose=torch.tensor(x, dtype=torch.float32)) for x in (rotvecs, matrices, sixd)]
    zero_betas, zero_transl = np.zeros((3, NUM_BETAS)), np.zeros((3, 3))
    vertices, _ = expected_body(smpl_data, SMPL_PARENTS, matrices, zero_betas, zero_transl)
    for out in outs:
        assert out.vertices.dtype == torch.float32
        np.testing.assert_allclose(as_np(out.vertices), vertices, atol=ATOL)
        np.testing.assert_allclose(as_np(out.joints), as_np(outs[0].joints), atol=ATOL)


def test_batch_of_one_broadcasts(body):
    rotvecs = torch.tensor(random_rotvecs((3, 24), seed=8))
    betas = torch.tensor(np.random.default_rng(9).normal(size=(1, NUM_BETAS)))
    out = body(pose=rotvecs, shape=betas)
    assert out.vertices.shape == (3, 72, 3)
    single = body(pose=rotvecs[1:2], shape=betas)
    torch.testing.assert_close(out.vertices[1:2], single.vertices)


def test_gradients_reach_pose_shape_and_translation(body):
    pose = torch.tensor(random_rotvecs((1, 24), seed=15), requires_grad=True)
    shape = torch.zeros(1, NUM_BETAS, dtype=torch.float64, requires_grad=True)
    translation = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    out = body(pose=pose, shape=shape, translation=translation)
    (out.vertices.square().sum() + out.joints.square().sum()).backward()
    for tensor in (pose, shape, translation):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_fewer_betas_than_the_file(smpl_file, smpl_data):
    body = SMPLBody(smpl_file, num_betas=4, dtype=torch.float64)
    assert body.num_betas == 4
    betas = np.random.default_rng(10).normal(size=(1, 4))
    out = body(shape=torch.tensor(betas))
    first_four = smpl_data["shapedirs"][:, :, :4]
    shaped = smpl_data["v_template"] + np.einsum("vdk,k->vd", first_four, betas[0])
    np.testing.assert_allclose(as_np(out.vertices[0]), shaped, atol=1e-10)


# ---------------------------------------------------------------- file formats and lookup
def test_npz_file_with_dense_regressor_gives_the_same_body(tmp_path, smpl_data, body):
    npz_body = SMPLBody(write_npz(tmp_path / "tiny.npz", smpl_data), dtype=torch.float64)
    pose = torch.tensor(random_rotvecs((1, 24), seed=11))
    torch.testing.assert_close(npz_body(pose=pose).vertices, body(pose=pose).vertices)


def test_folder_lookup_uses_smplx_file_names(tmp_path, smpl_data):
    write_pkl(tmp_path / "SMPL_FEMALE.pkl", smpl_data)
    (tmp_path / "smpl").mkdir()
    write_npz(tmp_path / "smpl" / "SMPL_NEUTRAL.npz", smpl_data)
    assert SMPLBody(tmp_path, gender="female").path == tmp_path / "SMPL_FEMALE.pkl"
    assert SMPLBody(tmp_path).path == tmp_path / "smpl" / "SMPL_NEUTRAL.npz"
    with pytest.raises(InputFileError, match="SMPL_MALE") as info:
        SMPLBody(tmp_path, gender="male")
    assert str(tmp_path) in str(info.value)


# ---------------------------------------------------------------- SMPL-X
@pytest.fixture(scope="module")
def smplx_case(tmp_path_factory):
    data = synthetic_model(SMPLX_PARENTS, num_shape=20, seed=12)  # 10 betas + 10 expressions
    data.update(
        hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
        hands_meanl=np.full(45, 0.3), hands_meanr=np.full(45, -0.3),  # must not be applied
        lmk_faces_idx=np.array([0, 1]), lmk_bary_coords=np.full((2, 3), 1.0 / 3.0),
    )
    path = write_npz(tmp_path_factory.mktemp("smplx") / "tiny_smplx.npz", data)
    return data, SMPLBody(path, model_type="smplx", dtype=torch.float64)


def test_smplx_body_joints_and_rest_hands(smplx_case):
    data, body = smplx_case
    assert body.pose_joints == SMPL_NAMES[:22] and body.num_vertices == 165
    rotvecs = random_rotvecs((2, 22), seed=13)
    rng = np.random.default_rng(14)
    betas, transl = rng.normal(size=(2, NUM_BETAS)), rng.normal(size=(2, 3))
    out = body(torch.tensor(rotvecs), torch.tensor(betas), torch.tensor(transl))
    assert out.joint_names == SMPL_NAMES[:22] and out.joints.shape == (2, 22, 3)
    full = np.tile(np.eye(3), (2, 55, 1, 1))  # jaw, eyes and fingers at identity
    full[:, :22] = rotvec_to_matrix(rotvecs)
    vertices, joints = expected_body(data, SMPLX_PARENTS, full, betas, transl)
    np.testing.assert_allclose(as_np(out.vertices), vertices, atol=1e-10)
    np.testing.assert_allclose(as_np(out.joints), joints[:, :22], atol=1e-10)


# ---------------------------------------------------------------- errors
def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    with pytest.raises(InputFileError, match="not found") as info:
        SMPLBody(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["corrupt.pkl", "corrupt.npz"])
def test_corrupt_file_is_one_line_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00this is not an SMPL model\xff" * 8)
    with pytest.raises(InputFileError, match="not a valid SMPL model file") as info:
        SMPLBody(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_file_missing_a_key(tmp_path, smpl_data):
    data = {k: v for k, v in smpl_data.items() if k != "weights"}
    with pytest.raises(InputFileError, match="weights"):
        SMPLBody(write_pkl(tmp_path / "no_weights.pkl", data))


def test_pickle_that_is_not_a_dict(tmp_path):
    with pytest.raises(InputFileError, match="not a valid SMPL model file"):
        SMPLBody(write_pkl(tmp_path / "list.pkl", [1, 2, 3]))


def test_wrong_joint_count_is_rejected(tmp_path):
    data = synthetic_model(SMPLX_PARENTS, num_shape=20)  # 55 joints loaded as SMPL
    with pytest.raises(InputFileError, match="J_regressor"):
        SMPLBody(write_pkl(tmp_path / "smplx_as_smpl.pkl", data))


@pytest.mark.skipif(importlib.util.find_spec("chumpy") is not None, reason="chumpy is installed")
def test_chumpy_pickle_explains_the_fix(tmp_path):
    path = tmp_path / "chumpy.pkl"
    path.write_bytes(b"cchumpy.ch\nCh\n.")  # a pickle that refers to chumpy.ch.Ch
    with pytest.raises(InputFileError, match="stores chumpy objects: install chumpy"):
        SMPLBody(path)


def test_smplx_not_installed(monkeypatch, smpl_file):
    monkeypatch.setitem(sys.modules, "smplx", None)  # makes `import smplx` raise ImportError
    with pytest.raises(MeshposeError, match=r"pip install 'meshpose\[smpl\]'"):
        SMPLBody(smpl_file)


def test_bad_arguments(smpl_file, body):
    with pytest.raises(UnknownNameError):
        SMPLBody(smpl_file, model_type="smplh")
    with pytest.raises(UnknownNameError):
        SMPLBody(smpl_file, gender="other")
    with pytest.raises(InputFileError, match="num_betas=11"):
        SMPLBody(smpl_file, num_betas=11)
    with pytest.raises(MeshposeError, match=r"\(B, 24, 3, 3\)"):
        body(pose=torch.zeros(1, 22, 3))
    with pytest.raises(MeshposeError, match="betas"):
        body(shape=torch.zeros(1, 3))
    with pytest.raises(MeshposeError, match="translation"):
        body(translation=torch.zeros(1, 2))
    with pytest.raises(MeshposeError, match="batch sizes"):
        body(pose=torch.zeros(2, 24, 3), shape=torch.zeros(3, NUM_BETAS))


class _Payload:
    """Unpickles as ``os.system("touch MARKER")``: what a hostile model file would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
def test_a_model_file_that_runs_code_is_refused_before_it_runs(smpl_data, tmp_path, suffix):
    """A SMPL file (pickle, or an npz with an object member) holding a call to os.system: one
    error line naming the file and what it asked for; the marker file never appears."""
    marker = tmp_path / "marker"
    data = {**smpl_data, "extra": _Payload(marker)}
    path = tmp_path / f"SMPL_NEUTRAL{suffix}"
    if suffix == ".pkl":
        write_pkl(path, data)
    else:
        dense = {k: (v.toarray() if scipy.sparse.issparse(v) else v) for k, v in data.items() if k != "extra"}
        np.savez(path, **dense, extra=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(InputFileError, match=r"os\.system|posix\.system") as error:
        SMPLBody(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()
    # A plain pickle.load of the same file does run it: the test's payload is real.
    if suffix == ".pkl":
        with open(path, "rb") as handle:
            pickle.load(handle)
        assert marker.exists()


def test_a_hostile_smplx_pickle_is_refused_before_smplx_reads_it(tmp_path):
    marker = tmp_path / "marker"
    path = write_pkl(tmp_path / "SMPLX_NEUTRAL.pkl", {"v_template": np.zeros((3, 3)), "x": _Payload(marker)})
    with pytest.raises(InputFileError, match=r"os\.system|posix\.system"):
        SMPLBody(path, model_type="smplx")
    assert not marker.exists()
