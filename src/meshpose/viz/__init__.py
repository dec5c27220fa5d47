"""Headless visualisation: CPU, numpy-only mesh rendering (no display, no OpenGL).

See :mod:`meshpose.viz.render` for the camera, pixel and shading conventions.
"""

from meshpose.viz.render import (
    draw_keypoints,
    overlay_mesh,
    render_mesh,
    render_views,
    save_png,
    view_rotation,
)

__all__ = ["draw_keypoints", "overlay_mesh", "render_mesh", "render_views", "save_png", "view_rotation"]
