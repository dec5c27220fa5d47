"""Headless visualisation: CPU, numpy-only mesh rendering (no display, no OpenGL).

See :mod:`meshpose.viz.render` for the camera, pixel and shading conventions.
"""

from meshpose.viz.render import overlay_mesh, render_mesh, render_views, save_png, view_rotation

__all__ = ["overlay_mesh", "render_mesh", "render_views", "save_png", "view_rotation"]
