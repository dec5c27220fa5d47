"""Headless CPU rendering of body meshes with numpy (no display, no OpenGL).

Three kinds of picture:

* :func:`render_mesh` - an orthographic view of a mesh that frames its bounding box, optionally
  with a skeleton drawn on top; :func:`render_views` puts several such views side by side.
* :func:`overlay_mesh` - a mesh given in a camera frame, projected with a pinhole camera and
  blended over a photograph.
* :func:`save_png` - writes an image atomically.

Camera frames
-------------
Every view is a rotation ``R`` (3, 3) from world to camera coordinates in the OpenCV
convention: the camera's rows are ``R[0]`` = image right, ``R[1]`` = image down and
``R[2]`` = the viewing direction (into the scene). A world point ``p`` has camera coordinates
``R @ p``; any proper rotation in that convention may be passed as ``camera``.

Named views are defined from the body's own axes: *up*, *facing* (the way the body faces) and
*left* (the body's left). With ``up_axis="z"`` (meshpose's Anny body) up = +z, facing = -y and
left = +x; with ``up_axis="y"`` (SMPL) up = +y, facing = +z and left = +x.

* ``"front"``: the camera stands in front of the body looking at its face. As with a person
  facing you, the body's left side appears on the image's **right** (image right = body left).
* ``"back"``: the camera stands behind the body; the body's left appears on the image's left.
* ``"side"``: the camera stands on the body's left side looking toward its right side (a left
  profile); the body faces the image's **left** (image right = the body's back).
* ``"top"``: the camera looks down from above the head, as if the front camera had been swung
  up over the head: the body's front is at the bottom of the image and its left on the right.

In every named view except ``"top"`` the body's up axis points to the top of the image.

Pixel conventions
-----------------
Pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)`` in the continuous image plane of
:func:`render_mesh` and is drawn when its centre ``(j + 0.5, i + 0.5)`` falls inside a
triangle. :func:`overlay_mesh` follows OpenCV instead: the centre of pixel ``(i, j)`` is at
``u = j, v = i``, so a point projecting to ``(u, v) = (f X / Z + cx, f Y / Z + cy)`` lands on
column ``round(u)`` and row ``round(v)``.

Shading
-------
Each face is flat-shaded with a directional light shining from the camera along the viewing
direction: ``colour * (ambient + (1 - ambient) * |n . l|)`` with ``n`` the unit face normal and
``ambient = 0.25``. The absolute value makes the result independent of the face winding, so
back faces are drawn and shaded like front faces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from meshpose.io.atomic import atomic_write

__all__ = [
    "draw_keypoints",
    "overlay_mesh",
    "render_mesh",
    "render_views",
    "save_png",
    "view_rotation",
]

#: Fraction of the light that reaches faces seen edge-on (the rest is Lambertian).
AMBIENT = 0.25
#: Default fraction of the image left free on each side when framing a mesh.
DEFAULT_MARGIN = 0.1
#: Faces whose projected area (in square pixels) is below this are skipped as degenerate.
_MIN_AREA = 1e-10
#: Upper bound on the number of candidate pixels examined at once by the rasteriser.
_CHUNK_FRAGMENTS = 1 << 20

# Body axes (up, facing, left) of the supported body frames.
_BODY_AXES = {
    "z": (np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
    "y": (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _as_array(x, dtype=np.float64) -> np.ndarray:
    """Convert numpy arrays, sequences or (CPU or GPU) torch tensors to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a mesh: vertices (V, 3) float64, faces (F, 3) int64."""
    v = _as_array(vertices)
    f = _as_array(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if f.size == 0:
        f = f.reshape(0, 3)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError("faces index vertices out of range")
    return v, f


def _check_size(size) -> tuple[int, int]:
    width, height = (int(s) for s in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive (W, H), got {size}")
    return width, height


def _rgb(color) -> np.ndarray:
    c = _as_array(color)
    if c.shape != (3,):
        raise ValueError(f"a colour must be an (r, g, b) triple, got shape {c.shape}")
    return c


def _face_colors(color, n_faces: int) -> np.ndarray:
    """One RGB colour (3,) or per-face colours (F, 3) -> (F, 3) float64 in 0..255."""
    c = _as_array(color)
    if c.shape == (3,):
        return np.broadcast_to(c, (n_faces, 3))
    if c.shape == (n_faces, 3):
        return c
    raise ValueError(f"color must be (3,) or (F, 3) = ({n_faces}, 3), got {c.shape}")


def view_rotation(camera="front", up_axis: str = "z") -> np.ndarray:
    """World-to-camera rotation of a named view (see the module docstring).

    Args:
        camera: ``"front"``, ``"side"``, ``"top"`` or ``"back"``, or a (3, 3) rotation matrix
            whose rows are the camera's right, down and viewing directions in world
            coordinates (returned as is, after checking it is a rotation).
        up_axis: ``"z"`` (Anny: z up, facing -y) or ``"y"`` (SMPL: y up, facing +z).

    Returns:
        (3, 3) float64 rotation ``R``: camera coordinates are ``R @ p``.
    """
    if not isinstance(camera, str):
        R = _as_array(camera)
        if R.shape != (3, 3):
            raise ValueError(f"a camera matrix must be (3, 3), got {R.shape}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
            raise ValueError("a camera matrix must be a proper rotation")
        return R
    if up_axis not in _BODY_AXES:
        raise ValueError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    up, facing, left = _BODY_AXES[up_axis]
    if camera == "front":  # in front of the body, looking back at it
        right, down, forward = left, -up, -facing
    elif camera == "back":  # behind the body, looking where it looks
        right, down, forward = -left, -up, facing
    elif camera == "side":  # on the body's left, looking toward its right
        right, down, forward = -facing, -up, -left
    elif camera == "top":  # above the head, looking down; the front at the image bottom
        right, down, forward = left, facing, -up
    else:
        raise ValueError(f"unknown camera {camera!r}: use 'front', 'side', 'top', 'back' or (3, 3)")
    return np.stack([right, down, forward])


# --------------------------------------------------------------------------------------------
# Rasteriser
# --------------------------------------------------------------------------------------------


def _rasterize(
    xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Z-buffered triangle rasterisation with numpy.

    Args:
        xy: (V, 2) vertex positions in continuous pixel coordinates (pixel ``(i, j)`` has its
            centre at ``(j + 0.5, i + 0.5)``).
        depth: (V,) depth key, affine in screen space over each face; smaller is nearer.
        faces: (F, 3) vertex indices; winding does not matter.
        width, height: image size in pixels.

    Returns:
        (H, W) int64 index of the visible face at each pixel, -1 where no face covers it.
    """
    face_buffer = np.full(height * width, -1, dtype=np.int64)
    if len(faces) == 0:
        return face_buffer.reshape(height, width)
    z_buffer = np.full(height * width, np.inf)

    tri = xy[faces]  # (F, 3, 2)
    tz = depth[faces]  # (F, 3)
    x, y = tri[..., 0], tri[..., 1]
    # Pixels whose centre lies inside the face's bounding box (inclusive), clipped to the image.
    with np.errstate(invalid="ignore"):
        col0 = np.clip(np.ceil(x.min(1) - 0.5), 0, width)
        col1 = np.clip(np.floor(x.max(1) - 0.5), -1, width - 1)
        row0 = np.clip(np.ceil(y.min(1) - 0.5), 0, height)
        row1 = np.clip(np.floor(y.max(1) - 0.5), -1, height - 1)
    n_cols = np.maximum(col1 - col0 + 1, 0)
    n_rows = np.maximum(row1 - row0 + 1, 0)

    # Barycentric coordinates as affine functions of the pixel centre: lambda_k = a x + b y + c,
    # from the edge opposite vertex k, divided by the face's doubled signed area.
    xa, xb = np.roll(x, -1, axis=1), np.roll(x, -2, axis=1)  # the two other vertices, in order
    ya, yb = np.roll(y, -1, axis=1), np.roll(y, -2, axis=1)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    valid = np.isfinite(area) & (np.abs(area) > _MIN_AREA) & np.isfinite(tz).all(1)
    n_pixels = np.where(valid, n_cols * n_rows, 0).astype(np.int64)
    keep = np.flatnonzero(n_pixels)
    if len(keep) == 0:
        return face_buffer.reshape(height, width)
    inv_area = 1.0 / area[keep, None]
    a = -(yb - ya)[keep] * inv_area
    b = (xb - xa)[keep] * inv_area
    c = ((yb - ya) * xa - (xb - xa) * ya)[keep] * inv_area
    # Depth is affine in screen space too: depth = sum_k lambda_k z_k.
    z = tz[keep]
    coef = np.column_stack(
        [a[:, 0], b[:, 0], c[:, 0], a[:, 1], b[:, 1], c[:, 1],
         (a * z).sum(1), (b * z).sum(1), (c * z).sum(1)]
    )
    col0, row0 = col0[keep].astype(np.int64), row0[keep].astype(np.int64)
    n_cols, n_pixels = n_cols[keep].astype(np.int64), n_pixels[keep]

    # Chunks of consecutive faces holding about _CHUNK_FRAGMENTS candidate pixels each.
    ends = np.cumsum(n_pixels)
    bounds = np.searchsorted(ends, np.arange(_CHUNK_FRAGMENTS, ends[-1], _CHUNK_FRAGMENTS), "left")
    bounds = np.unique(np.concatenate([[0], bounds + 1, [len(keep)]]))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        counts = n_pixels[start:stop]
        local_face = np.repeat(np.arange(start, stop), counts)
        first = np.cumsum(counts) - counts
        k = np.arange(counts.sum()) - np.repeat(first, counts)  # index inside the face's box
        w = n_cols[local_face]
        cols = col0[local_face] + k % w
        rows = row0[local_face] + k // w
        px, py = cols + 0.5, rows + 0.5
        cf = coef[local_face]
        l0 = cf[:, 0] * px + cf[:, 1] * py + cf[:, 2]
        l1 = cf[:, 3] * px + cf[:, 4] * py + cf[:, 5]
        eps = -1e-9
        inside = (l0 >= eps) & (l1 >= eps) & (1.0 - l0 - l1 >= eps)
        if not inside.any():
            continue
        pix = (rows * width + cols)[inside]
        d = (cf[:, 6] * px + cf[:, 7] * py + cf[:, 8])[inside]
        fid = keep[local_face[inside]]
        # Nearest fragment per pixel within the chunk (ties: the lower face index), then merge.
        order = np.lexsort((fid, d, pix))
        pix_sorted = pix[order]
        head = np.ones(len(order), dtype=bool)
        head[1:] = pix_sorted[1:] != pix_sorted[:-1]
        sel = order[head]
        pix, d, fid = pix[sel], d[sel], fid[sel]
        nearer = d < z_buffer[pix]
        z_buffer[pix[nearer]] = d[nearer]
        face_buffer[pix[nearer]] = fid[nearer]
    return face_buffer.reshape(height, width)


def _face_shade(camera_vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flat Lambert factor per face, (F,) in [AMBIENT, 1], light along the camera's +z axis."""
    tri = camera_vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1)
    cos = np.abs(normal[:, 2]) / np.where(length > 0, length, 1.0)
    return AMBIENT + (1.0 - AMBIENT) * np.clip(cos, 0.0, 1.0)


def _shade_faces(camera_vertices, faces, color, face_buffer) -> tuple[np.ndarray, np.ndarray]:
    """Colours of the covered pixels: returns (mask (H, W) bool, rgb (N, 3) float64)."""
    mask = face_buffer >= 0
    visible = face_buffer[mask]
    colors = _face_colors(color, len(faces))
    shade = _face_shade(camera_vertices, faces)
    return mask, colors[visible] * shade[visible, None]


# --------------------------------------------------------------------------------------------
# Orthographic views
# --------------------------------------------------------------------------------------------


def _framing(points_cam: np.ndarray, width: int, height: int, margin: float):
    """Scale (pixels per metre) and 2D centre (metres) framing points' bounding box."""
    lo, hi = points_cam[:, :2].min(0), points_cam[:, :2].max(0)
    extent = np.maximum(hi - lo, 1e-9)
    free = 1.0 - 2.0 * margin
    if not 0.0 < free <= 1.0:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    scale = min(free * width / extent[0], free * height / extent[1])
    return float(scale), (lo + hi) / 2.0


def _draw_skeleton(image, points_xy, edges, joint_color, edge_color, radius, line_width):
    """Draw edges as lines then joints as filled discs on ``image`` (H, W, 3) uint8."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    jc = tuple(int(round(v)) for v in _rgb(joint_color))
    ec = jc if edge_color is None else tuple(int(round(v)) for v in _rgb(edge_color))
    for i, j in edges or ():
        p, q = points_xy[int(i)], points_xy[int(j)]
        if np.isfinite(p).all() and np.isfinite(q).all():
            draw.line([tuple(p), tuple(q)], fill=ec, width=line_width)
    for x, y in points_xy:
        if np.isfinite(x) and np.isfinite(y):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=jc)
    return np.asarray(canvas, dtype=np.uint8).copy()


def draw_keypoints(image, points_xy, edges=(), color=(60, 220, 90), radius: float = 3.0,
                   line_width: int = 2) -> np.ndarray:
    """Draw 2D keypoints (and the skeleton ``edges`` between them) over an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        points_xy: (J, 2) pixels (OpenCV centres, as :func:`overlay_mesh`); NaN rows are skipped.
        edges: (parent, child) index pairs, e.g. a joint set's ``edges``.
        color: RGB of the discs and lines.
        radius: disc radius in pixels. line_width: in pixels.

    Returns:
        a new (H, W, 3) uint8 image.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {img.dtype} {img.shape}")
    points = _as_array(points_xy).reshape(-1, 2) + 0.5  # PIL draws in pixel-corner coordinates
    return _draw_skeleton(np.ascontiguousarray(img), points, edges, color, None, radius, line_width)


def render_mesh(
    vertices,
    faces,
    size: tuple[int, int] = (512, 512),
    camera="front",
    up_axis: str = "z",
    color=(170, 190, 220),
    background=(255, 255, 255),
    joints=None,
    edges: Sequence[tuple[int, int]] | None = None,
    joint_color=(220, 40, 40),
    edge_color=None,
    joint_radius: float | None = None,
    margin: float = DEFAULT_MARGIN,
    scale: float | None = None,
) -> np.ndarray:
    """Orthographic, flat-shaded, z-buffered view of a mesh, optionally with a skeleton.

    The view frames the bounding box of the mesh's projection: the box is centred and scaled
    uniformly so that it fills ``1 - 2 * margin`` of the image along its tighter dimension.

    Args:
        vertices: (V, 3) vertex positions in metres (numpy array or torch tensor).
        faces: (F, 3) int vertex indices; winding need not be consistent.
        size: (W, H) image size in pixels.
        camera: ``"front"``, ``"side"``, ``"top"``, ``"back"`` or a (3, 3) world-to-camera
            rotation (rows: image right, image down, viewing direction); see the module
            docstring for the conventions of the named views.
        up_axis: ``"z"`` for z-up bodies facing -y (Anny), ``"y"`` for y-up bodies facing +z
            (SMPL).
        color: mesh colour, an RGB triple (0..255) or (F, 3) per-face colours.
        background: RGB background colour.
        joints: optional (K, 3) joint positions in metres (same frame as the vertices), drawn as
            filled discs on top of the mesh (no occlusion test).
        edges: optional skeleton edges, pairs ``(i, j)`` of joint indices, drawn as lines.
        joint_color: RGB colour of the joints (and of the edges unless ``edge_color`` is given).
        edge_color: RGB colour of the edges; None = ``joint_color``.
        joint_radius: disc radius in pixels; None = ``max(2, min(W, H) / 128)``.
        margin: fraction of the image left free on each side of the framed mesh.
        scale: pixels per metre, overriding the framing scale (the view stays centred on the
            mesh); :func:`render_views` uses it to give every view the same scale.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    v, f = _check_mesh(vertices, faces)
    width, height = _check_size(size)
    R = view_rotation(camera, up_axis)
    cam = v @ R.T
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = np.clip(np.round(_rgb(background)), 0, 255).astype(np.uint8)
    if len(v) == 0:
        return image
    fit_scale, centre = _framing(cam, width, height, margin)
    s = fit_scale if scale is None else float(scale)
    image_centre = np.array([width / 2.0, height / 2.0])

    def to_pixels(points_cam: np.ndarray) -> np.ndarray:
        """Camera coordinates (N, 3) in metres -> continuous pixel coordinates (N, 2)."""
        return (points_cam[:, :2] - centre) * s + image_centre

    face_buffer = _rasterize(to_pixels(cam), cam[:, 2], f, width, height)
    mask, rgb = _shade_faces(cam, f, color, face_buffer)
    image[mask] = np.clip(np.round(rgb), 0, 255).astype(np.uint8)

    if joints is not None:
        j = _as_array(joints).reshape(-1, 3)
        radius = max(2.0, min(width, height) / 128.0) if joint_radius is None else joint_radius
        line_width = max(1, int(round(radius * 0.6)))
        # PIL puts pixel centres at integer coordinates, the rasteriser at half-integers.
        image = _draw_skeleton(
            image, to_pixels(j @ R.T) - 0.5, edges, joint_color, edge_color, radius, line_width
        )
    return image


def render_views(
    vertices,
    faces,
    views: Sequence = ("front", "side"),
    size: tuple[int, int] = (512, 512),
    **kwargs,
) -> np.ndarray:
    """Several orthographic views of a mesh side by side, at one common scale.

    Args:
        vertices: (V, 3) vertex positions in metres.
        faces: (F, 3) int vertex indices.
        views: view names or (3, 3) rotations, as ``camera`` of :func:`render_mesh`.
        size: (W, H) size of each view in pixels.
        **kwargs: passed on to :func:`render_mesh` (``up_axis``, ``color``, ``joints``, ...).
            Unless ``scale`` is given, every view uses the smallest of the views' framing
            scales, so the body has the same size in all of them.

    Returns:
        (H, W * len(views), 3) uint8 image.
    """
    if len(views) == 0:
        raise ValueError("views must name at least one view")
    v, f = _check_mesh(vertices, faces)
    width, height = _check_size(size)
    if kwargs.get("scale") is None and len(v):
        up_axis = kwargs.get("up_axis", "z")
        margin = kwargs.get("margin", DEFAULT_MARGIN)
        kwargs["scale"] = min(
            _framing(v @ view_rotation(view, up_axis).T, width, height, margin)[0] for view in views
        )
    return np.concatenate(
        [render_mesh(v, f, size=(width, height), camera=view, **kwargs) for view in views], axis=1
    )


# --------------------------------------------------------------------------------------------
# Perspective overlay
# --------------------------------------------------------------------------------------------


def overlay_mesh(
    image,
    vertices_cam,
    faces,
    focal_length,
    principal_point,
    alpha: float = 0.6,
    color=(170, 190, 220),
    near: float = 1e-3,
) -> np.ndarray:
    """Blend a perspective rendering of a mesh over an image.

    Vertices are projected with the pinhole model ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``
    (OpenCV convention: the centre of pixel ``(row i, column j)`` is ``(u, v) = (j, i)``).
    Visibility is resolved per pixel with a z-buffer on ``1 / Z``; faces are flat-shaded with a
    light along the optical axis. Faces with a vertex closer than ``near`` are skipped (no
    clipping).

    Args:
        image: (H, W, 3) uint8 RGB image.
        vertices_cam: (V, 3) vertices in metres in the OpenCV camera frame (x right, y down,
            z forward).
        faces: (F, 3) int vertex indices.
        focal_length: focal length in pixels, a float or ``(fx, fy)``.
        principal_point: ``(cx, cy)`` in pixels.
        alpha: opacity of the mesh, 0 (invisible) to 1 (opaque).
        color: mesh colour, an RGB triple or (F, 3) per-face colours.
        near: minimum depth in metres of a drawn face's vertices.

    Returns:
        (H, W, 3) uint8 image: ``(1 - alpha) * image + alpha * mesh`` where the mesh covers it,
        the input elsewhere.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {img.shape}")
    v, f = _check_mesh(vertices_cam, faces)
    height, width = img.shape[:2]
    fx, fy = np.broadcast_to(_as_array(focal_length), (2,))
    cx, cy = _as_array(principal_point).reshape(2)
    alpha = float(np.clip(alpha, 0.0, 1.0))

    z = v[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.where(z > 0, 1.0 / z, np.nan)
        # +0.5: from OpenCV's integer pixel centres to the rasteriser's half-integer ones.
        xy = np.column_stack([fx * v[:, 0] * inv_z + cx + 0.5, fy * v[:, 1] * inv_z + cy + 0.5])
    front = (z[f] >= near).all(1) if len(f) else np.zeros(0, dtype=bool)
    drawn = f[front]
    # 1/Z is affine in screen space; -1/Z makes smaller nearer.
    face_buffer = _rasterize(xy, -inv_z, drawn, width, height)
    mask, rgb = _shade_faces(v, drawn, _face_colors(color, len(f))[front], face_buffer)

    out = img.astype(np.float64, copy=True)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * rgb
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def save_png(path, image) -> Path:
    """Write an image to a PNG file atomically (:func:`meshpose.io.atomic.atomic_write`).

    Readers never see a partial file. Missing parent folders are created.

    Args:
        path: destination file path.
        image: (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey uint8 array.

    Returns:
        ``Path(path)``.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)

    def write(tmp: str) -> None:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG")

    return atomic_write(path, write)
