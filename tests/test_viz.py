"""Tests of the headless renderer (meshpose.viz) on tiny synthetic meshes.

Framing rule used for the hand-computed footprints (see ``render_mesh``): the projected
bounding box is centred and scaled to fill ``1 - 2 * margin`` of the image along its tighter
dimension; pixel (i, j) is covered when its centre (j + 0.5, i + 0.5) is inside a triangle.
"""

import os

import numpy as np
import pytest
from PIL import Image

import meshpose.viz.render as render_module
from meshpose.viz import overlay_mesh, render_mesh, render_views, save_png, view_rotation

WHITE = np.array([255, 255, 255])


def box(lo, hi):
    """Axis-aligned box: vertices (8, 3) and triangle faces (12, 3), mixed winding."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    vertices = lo + corners * (hi - lo)
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    faces = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
    return vertices, np.array(faces)


def merge(*meshes):
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def covered(image, background=WHITE):
    return np.any(image != background, axis=-1)


def span(mask, axis):
    """First and last index along an image axis (0 rows, 1 columns) where mask has pixels."""
    idx = np.flatnonzero(mask.any(axis=1 - axis))
    return idx[0], idx[-1]


def test_view_rotations_are_proper_and_follow_conventions():
    for up_axis in ("z", "y"):
        for cam in ("front", "side", "top", "back"):
            R = view_rotation(cam, up_axis)
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
            assert np.linalg.det(R) == pytest.approx(1.0)
    # Anny front: image right = +x (body's left), image down = -z, looking toward +y.
    np.testing.assert_allclose(view_rotation("front", "z"), [[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    # SMPL front: camera on +z looking toward -z, y up.
    np.testing.assert_allclose(view_rotation("front", "y"), [[1, 0, 0], [0, -1, 0], [0, 0, -1]])
    with pytest.raises(ValueError):
        view_rotation("diagonal")
    with pytest.raises(ValueError):
        view_rotation(np.diag([1.0, 1.0, -1.0]))


def test_unit_cube_front_footprint_and_colour():
    v, f = box([-0.5, -0.5, -0.5], [0.5, 0.5, 0.5])
    image = render_mesh(v, f, size=(128, 128), color=(100, 150, 200))
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    # 1 m spans 0.8 * 128 = 102.4 px, from 12.8 to 115.2: pixel centres 13.5 .. 114.5.
    mask = covered(image)
    for axis in (0, 1):
        first, last = span(mask, axis)
        assert abs(first - 13) <= 2 and abs(last - 114) <= 2
    inner = np.zeros_like(mask)
    inner[15:113, 15:113] = True
    assert mask[inner].all()  # the square is filled
    outer = np.ones_like(mask)
    outer[11:117, 11:117] = False
    assert not mask[outer].any()  # background elsewhere
    # The front face looks straight at the light: full colour.
    np.testing.assert_array_equal(image[64, 64], [100, 150, 200])


def test_single_triangle_footprint():
    # Right triangle in the x-z plane facing the front camera, legs along +x and +z.
    v = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    image = render_mesh(v, [[0, 1, 2]], size=(100, 100), background=(0, 0, 0))
    mask = covered(image, background=np.zeros(3))
    # Box 1 x 1 m mapped to [10, 90] px; the right angle (x=0, z=0) is at the bottom left.
    assert abs(span(mask, 0)[0] - 10) <= 2 and abs(span(mask, 0)[1] - 89) <= 2
    assert abs(span(mask, 1)[0] - 10) <= 2 and abs(span(mask, 1)[1] - 89) <= 2
    assert mask[85, 15] and not mask[15, 85]  # the hypotenuse runs from top left to bottom right
    assert mask.sum() == pytest.approx(80 * 80 / 2, rel=0.05)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("near_first", [True, False])
def test_z_buffer_nearer_face_wins(near_first, chunked, monkeypatch):
    if chunked:  # one face per rasteriser chunk: exercises the merge across chunks
        monkeypatch.setattr(render_module, "_CHUNK_FRAGMENTS", 16)
    # Two overlapping triangles facing the front camera (which looks toward +y).
    near = np.array([[-0.5, -0.3, -0.5], [0.5, -0.3, -0.5], [0.0, -0.3, 0.5]])
    far = near * [1.0, 1.0, -1.0] + [0.0, 0.6, 0.0]  # flipped upside down, further back
    red, green = (200, 0, 0), (0, 200, 0)
    if near_first:
        v, colors = np.concatenate([near, far]), [red, green]
    else:
        v, colors = np.concatenate([far, near]), [green, red]
    image = render_mesh(v, [[0, 1, 2], [3, 4, 5]], size=(64, 64), color=np.array(colors))
    np.testing.assert_array_equal(image[32, 32], red)  # overlap: the nearer one
    # The far triangle shows where the near one does not cover it (its base, near the top).
    first_row = span(covered(image), 0)[0]
    np.testing.assert_array_equal(image[first_row + 1, 16], green)


def test_front_and_side_footprints_of_elongated_box():
    # 0.6 m wide (x), 0.2 m deep (y), 1.0 m tall (z).
    v, f = box([-0.3, -0.1, 0.0], [0.3, 0.1, 1.0])
    front = covered(render_mesh(v, f, size=(100, 100), camera="front"))
    side = covered(render_mesh(v, f, size=(100, 100), camera="side"))
    # 80 px/m: the height spans 10 .. 90 px (centres 10.5 .. 89.5); widths 48 px and 16 px.
    for mask, width in ((front, 48), (side, 16)):
        rows, cols = span(mask, 0), span(mask, 1)
        assert abs(rows[0] - 10) <= 2 and abs(rows[1] - 89) <= 2
        assert abs(cols[1] - cols[0] + 1 - width) <= 2
        assert abs((cols[0] + cols[1] + 1) / 2 - 50) <= 1


def marked_body(marker_center, up_axis="z"):
    """A box 'body' with a small red marker box; returns vertices, faces, per-face colours."""
    body = box([-0.2, -0.1, -0.5], [0.2, 0.1, 0.5])
    if up_axis == "y":  # y up: the body is tall along y
        body = (body[0][:, [0, 2, 1]], body[1])
    c = np.asarray(marker_center, float)
    marker = box(c - 0.05, c + 0.05)
    v, f = merge(body, marker)
    colors = np.array([(150, 150, 150)] * 12 + [(255, 0, 0)] * 12)
    return v, f, colors


def marker_centroid(image):
    rows, cols = np.nonzero((image[..., 0] > 100) & (image[..., 1] < 50) & (image[..., 2] < 50))
    assert len(rows) > 0, "marker not visible"
    return rows.mean(), cols.mean()


def test_left_right_convention_anny():
    # Marker on the body's left (+x), slightly in front (-y), high up (+z).
    v, f, colors = marked_body([0.25, -0.05, 0.3])
    size = (96, 96)
    row, col = marker_centroid(render_mesh(v, f, size=size, camera="front", color=colors))
    assert col > 48 and row < 48  # body's left on the image right; up is up
    row, col = marker_centroid(render_mesh(v, f, size=size, camera="back", color=colors))
    assert col < 48 and row < 48
    # Side: seen from the body's left, the body faces the image's left.
    v, f, colors = marked_body([0.0, -0.15, 0.3])
    row, col = marker_centroid(render_mesh(v, f, size=size, camera="side", color=colors))
    assert col < 48 and row < 48
    # Top: the body's front at the bottom of the image.
    v, f, colors = marked_body([0.0, -0.15, 0.5])
    row, col = marker_centroid(render_mesh(v, f, size=size, camera="top", color=colors))
    assert row > 48


def test_left_right_convention_smpl_y_up():
    # SMPL: y up, facing +z, body's left +x.
    v, f, colors = marked_body([0.25, 0.3, 0.05], up_axis="y")
    row, col = marker_centroid(render_mesh(v, f, size=(96, 96), camera="front", up_axis="y",
                                           color=colors))
    assert col > 48 and row < 48


def test_custom_rotation_matches_named_view():
    v, f = box([-0.3, -0.1, 0.0], [0.3, 0.1, 1.0])
    a = render_mesh(v, f, size=(48, 48), camera="side")
    b = render_mesh(v, f, size=(48, 48), camera=view_rotation("side"))
    np.testing.assert_array_equal(a, b)


def test_joints_and_edges_are_drawn_at_projected_positions():
    v, f = box([-0.5, -0.5, -0.5], [0.5, 0.5, 0.5])
    color, joint_color = (100, 150, 200), (220, 40, 40)
    # Scale 102.4 px/m around the image centre (64, 64): x = 0.3 -> column 64 + 30.72 - 0.5.
    joints = np.array([[0.3, -0.6, 0.3], [-0.3, -0.6, -0.3]])
    plain = render_mesh(v, f, size=(128, 128), color=color)
    drawn = render_mesh(v, f, size=(128, 128), color=color, joints=joints, edges=[(0, 1)],
                        joint_color=joint_color)
    expected = [(64 - 30.72, 64 + 30.72), (64 + 30.72, 64 - 30.72)]  # (row, column), continuous
    for r, c in expected:
        i, j = int(np.floor(r)), int(np.floor(c))
        np.testing.assert_array_equal(drawn[i, j], joint_color)
        np.testing.assert_array_equal(plain[i, j], color)
    # The edge crosses the image centre.
    assert (drawn[63:65, 63:65] == joint_color).all(-1).any()
    changed = np.any(drawn != plain, axis=-1)
    rows, cols = np.nonzero(changed)
    assert abs(rows.mean() - 63.5) <= 1 and abs(cols.mean() - 63.5) <= 1
    assert not changed[:20].any() and not changed[-20:].any()


def test_render_views_concatenates_at_a_common_scale():
    v, f = box([-0.3, -0.1, 0.0], [0.3, 0.1, 1.0])
    image = render_views(v, f, views=("front", "side", "top"), size=(40, 50))
    assert image.shape == (50, 120, 3)
    # Framing scales: front and side 0.8 * 50 / 1.0 = 40 px/m (height-bound), top 0.8 * 40 / 0.6
    # = 53.3 px/m on its own; all three use 40 px/m.
    np.testing.assert_array_equal(image[:, 40:80], render_mesh(v, f, size=(40, 50), camera="side"))
    front, side, top = (covered(image[:, k : k + 40]) for k in (0, 40, 80))
    assert span(front, 0) == span(side, 0)
    cols = span(top, 1)
    assert abs(cols[1] - cols[0] + 1 - 24) <= 1  # 0.6 m at 40 px/m, not 32 px
    alone = span(covered(render_mesh(v, f, size=(40, 50), camera="top")), 1)
    assert abs(alone[1] - alone[0] + 1 - 32) <= 1


def test_overlay_projects_with_pinhole_model():
    h, w, f_px, (cx, cy) = 120, 160, 200.0, (70.0, 50.0)
    tri = np.array([[-0.1, -0.1, 2.0], [0.2, -0.05, 2.0], [0.0, 0.15, 2.5]])
    image = np.zeros((h, w, 3), np.uint8)
    out = overlay_mesh(image, tri, [[0, 1, 2]], f_px, (cx, cy), alpha=1.0)
    mask = covered(out, background=np.zeros(3))
    u = f_px * tri[:, 0] / tri[:, 2] + cx  # 60, 90, 70
    v = f_px * tri[:, 1] / tri[:, 2] + cy  # 40, 45, 62
    rows, cols = np.nonzero(mask)
    assert abs(cols.mean() - u.mean()) <= 1 and abs(rows.mean() - v.mean()) <= 1
    assert abs(cols.min() - u.min()) <= 1 and abs(cols.max() - u.max()) <= 1
    assert abs(rows.min() - v.min()) <= 1 and abs(rows.max() - v.max()) <= 1
    area = 0.5 * abs((u[1] - u[0]) * (v[2] - v[0]) - (u[2] - u[0]) * (v[1] - v[0]))
    assert mask.sum() == pytest.approx(area, rel=0.1)
    # Anisotropic focal length stretches the footprint along x.
    out2 = overlay_mesh(image, tri, [[0, 1, 2]], (2 * f_px, f_px), (cx, cy), alpha=1.0)
    assert covered(out2, background=np.zeros(3)).sum() == pytest.approx(2 * mask.sum(), rel=0.1)


def test_overlay_blends_and_uses_depth():
    image = np.full((60, 60, 3), 100, np.uint8)
    square = np.array([[-0.2, -0.2, 1.0], [0.2, -0.2, 1.0], [0.2, 0.2, 1.0], [-0.2, 0.2, 1.0]])
    faces = [[0, 1, 2], [0, 2, 3]]
    out = overlay_mesh(image, square, faces, 50.0, (30, 30), alpha=0.5, color=(200, 0, 0))
    np.testing.assert_array_equal(out[30, 30], [150, 50, 50])  # 0.5 * image + 0.5 * colour
    np.testing.assert_array_equal(out[2, 2], [100, 100, 100])  # untouched outside
    # Near (Z = 1) and far (Z = 2) squares, both orders: the near colour wins at the centre.
    far = square * [2.0, 2.0, 2.0]
    for order in (0, 1):
        v = np.concatenate([square, far] if order == 0 else [far, square])
        colors = np.array([[255, 0, 0]] * 2 + [[0, 0, 255]] * 2)
        if order == 1:
            colors = colors[::-1]
        out = overlay_mesh(image, v, faces + [[4, 5, 6], [4, 6, 7]], 50.0, (30, 30), alpha=1.0,
                           color=colors)
        np.testing.assert_array_equal(out[30, 30], [255, 0, 0])
    # Geometry behind the camera is not drawn.
    behind = overlay_mesh(image, square * [1, 1, -1], faces, 50.0, (30, 30))
    np.testing.assert_array_equal(behind, image)


def test_save_png_round_trip_and_no_temp_file(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "picture.png"
    save_png(path, image)
    save_png(path, image[::-1].copy())  # replaces the existing file
    with Image.open(path) as im:
        back = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(back, image[::-1])
    assert os.listdir(path.parent) == ["picture.png"]
    with pytest.raises(ValueError):
        save_png(tmp_path / "bad.png", image.astype(np.float32))
    assert not (tmp_path / "bad.png").exists()
