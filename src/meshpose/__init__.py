"""meshpose: 3D human pose and body-mesh estimation.

2D keypoints -> 3D pose -> body mesh, and 3D mesh -> keypoints, on the Anny body model.
"""
from meshpose.body import BodyOutput, body_joints, load_body_model
from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.joints import JOINT_SETS, convert, get_joint_set
from meshpose.mesh_keypoints import mesh_keypoints
from meshpose.predict import predict
from meshpose.version import __version__

__all__ = [
    "__version__",
    "BodyOutput",
    "InputFileError",
    "JOINT_SETS",
    "MeshposeError",
    "UnknownNameError",
    "body_joints",
    "convert",
    "get_joint_set",
    "load_body_model",
    "mesh_keypoints",
    "predict",
]
