"""File input and output: 2D keypoints, meshes, prediction results, atomic writing.

Readers raise :class:`~meshpose.errors.InputFileError` (one line naming the file) for any bad
input; writers validate first and write atomically (:func:`atomic_write`), so a failed write
leaves no partial file behind.
"""
from meshpose.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from meshpose.io.keypoints import (
    KEYPOINT_READ_EXTENSIONS,
    KEYPOINT_WRITE_EXTENSIONS,
    Keypoints2D,
    read_keypoints,
    write_keypoints,
)
from meshpose.io.meshes import (
    MESH_READ_EXTENSIONS,
    MESH_WRITE_EXTENSIONS,
    list_mesh_files,
    read_mesh,
    write_mesh,
)
from meshpose.io.results import (
    MeshKeypoints,
    read_mesh_keypoints_json,
    read_results_npz,
    result_joint_sets,
    validate_results,
    write_mesh_keypoints_json,
    write_results_npz,
)

__all__ = [
    "KEYPOINT_READ_EXTENSIONS",
    "KEYPOINT_WRITE_EXTENSIONS",
    "MESH_READ_EXTENSIONS",
    "MESH_WRITE_EXTENSIONS",
    "Keypoints2D",
    "MeshKeypoints",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "list_mesh_files",
    "read_keypoints",
    "read_mesh",
    "read_mesh_keypoints_json",
    "read_results_npz",
    "result_joint_sets",
    "validate_results",
    "write_keypoints",
    "write_mesh",
    "write_mesh_keypoints_json",
    "write_results_npz",
]
