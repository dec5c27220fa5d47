"""Each joint set's definition on the body models.

Two kinds of points exist on a body:

* **surface keypoints**, where a person annotating an image puts a dot: COCO, COCO-WholeBody,
  OpenPose. On Anny they come from Anny's own COCO-WholeBody keypoint regressor (fixed
  combinations of mesh vertices); OpenPose's ``neck`` and BODY_25's ``pelvis`` (MidHip) are the
  midpoints of the shoulder and hip keypoints, which is how those datasets place them.
* **joint centres**, where a bone rotates: Human3.6M, MPII (Stacked Hourglass), SMPL and seed12
  (the mesh-keypoint dataset, whose points lie inside the body at part boundaries). On Anny they
  are heads of rig bones (``bone:<name>``), except ``head_top``, a vertex on the crown.

A definition maps a canonical joint name (see :mod:`meshpose.joints`) to the landmarks it is
the mean of. Definitions are choices, written down here so that they can be read and
changed.

A joint set of :data:`REGRESSED_SETS` is instead defined on Anny the way its dataset places
its joints: a sparse vertex regressor fitted to the dataset
(:mod:`meshpose.body.vertex_regressors`; ``h36m17``: fitted to Human3.6M S1's joints). It needs
the mesh vertices. Anny's anatomical joint centres of the same joints stay available under the
name :data:`REGRESSED_SETS` gives (``h36m17_anatomical``), or with ``anatomical=True``.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from meshpose.body.base import BodyOutput
from meshpose.body.vertex_regressors import regress
from meshpose.errors import MeshposeError
from meshpose.joints import convert, get_joint_set

_SURFACE = {
    "neck": ("left_shoulder", "right_shoulder"),
    "pelvis": ("left_hip", "right_hip"),
}

_CENTRES = {
    "pelvis": ("bone:root",),
    "left_hip": ("bone:upperleg01.L",),
    "right_hip": ("bone:upperleg01.R",),
    "left_knee": ("bone:lowerleg01.L",),
    "right_knee": ("bone:lowerleg01.R",),
    "left_ankle": ("bone:foot.L",),
    "right_ankle": ("bone:foot.R",),
    "left_shoulder": ("bone:upperarm01.L",),
    "right_shoulder": ("bone:upperarm01.R",),
    "left_elbow": ("bone:lowerarm01.L",),
    "right_elbow": ("bone:lowerarm01.R",),
    "left_wrist": ("bone:wrist.L",),
    "right_wrist": ("bone:wrist.R",),
    # Human3.6M's trunk: spine about mid-back, thorax at the base of the neck (shoulder height),
    # its "Neck/Nose" about the chin, where the skull pivots on the neck.
    "spine": ("bone:spine02",),
    "thorax": ("bone:neck01",),
    "neck_nose": ("bone:head",),
    "head_top": ("head_top",),
    # SMPL's spine joints sit about 10, 20 and 35 cm above the pelvis in an adult.
    "spine1": ("bone:spine03",),
    "spine2": ("bone:spine02",),
    "spine3": ("bone:spine01",),
    "neck": ("bone:neck01",),
    "head": ("bone:head",),
    "left_collar": ("bone:clavicle.L",),
    "right_collar": ("bone:clavicle.R",),
    "left_foot": ("bone:toe3-1.L",),  # SMPL's foot joint is at the base of the toes
    "right_foot": ("bone:toe3-1.R",),
    "left_hand": ("bone:finger3-1.L",),  # SMPL's hand joint is at the knuckles
    "right_hand": ("bone:finger3-1.R",),
}

#: Which kind of point each joint set denotes on Anny.
SURFACE_SETS = ("coco17", "coco_wholebody23", "openpose18", "body25")
CENTRE_SETS = ("h36m17", "h36m17_anatomical", "mpii16", "smpl24", "seed12")

#: Joint sets regressed from Anny's vertices -> the set of the same joints as anatomical centres.
REGRESSED_SETS = {"h36m17": "h36m17_anatomical"}


def anny_definition(joint_set: str) -> dict[str, tuple[str, ...]]:
    """Joint name -> Anny landmark names averaged, for every joint of ``joint_set`` (for a
    :data:`REGRESSED_SETS` set: its anatomical centres)."""
    names = get_joint_set(joint_set).names
    if joint_set in SURFACE_SETS:
        return {name: _SURFACE.get(name, (name,)) for name in names}
    return {name: _CENTRES[name] for name in names}


@lru_cache(maxsize=64)
def _averaging_matrix(landmark_names: tuple[str, ...], joint_set: str) -> torch.Tensor:
    definition = anny_definition(joint_set)
    index = {name: i for i, name in enumerate(landmark_names)}
    matrix = torch.zeros(len(definition), len(landmark_names))
    for row, sources in enumerate(definition.values()):
        for source in sources:
            if source not in index:
                raise MeshposeError(f"landmark {source!r} for {joint_set} is not on this body")
            matrix[row, index[source]] = 1.0 / len(sources)
    return matrix


def body_joints(output: BodyOutput, joint_set: str, anatomical: bool = False) -> torch.Tensor:
    """(B, J, 3) the joints of ``joint_set`` on posed bodies, metres.

    Anny bodies use the definitions of this module: a set of :data:`REGRESSED_SETS`
    (``h36m17``) is regressed from the vertices, unless ``anatomical`` asks for Anny's joint
    centres of the same joints (what ``h36m17_anatomical`` gives; training targets use them).
    Bodies whose landmarks are already a joint set (SMPL: ``smpl24`` names) are converted by
    name with :func:`meshpose.joints.convert`; joints that cannot be derived are NaN.

    Raises:
        MeshposeError: a regressed set on a body posed without vertices.
    """
    name = get_joint_set(joint_set).name  # a clear error for an unknown name
    if anatomical:
        name = REGRESSED_SETS.get(name, name)
    names = output.joint_names
    if any(landmark.startswith("bone:") for landmark in names):
        if name in REGRESSED_SETS:
            if output.vertices is None:
                raise MeshposeError(f"{name} joints are regressed from the mesh: pose the body with its vertices "
                                    f"(or ask for {REGRESSED_SETS[name]})")
            return regress(output.vertices, name)
        matrix = _averaging_matrix(names, name).to(output.joints)
        return matrix @ output.joints
    for candidate in ("smpl24",):
        if names == get_joint_set(candidate).names[: len(names)]:
            source = output.joints
            if len(names) < len(get_joint_set(candidate)):
                missing = len(get_joint_set(candidate)) - len(names)
                pad = source.new_full((source.shape[0], missing, 3), float("nan"))
                source = torch.cat([source, pad], dim=1)
            return convert(source, candidate, name)
    raise MeshposeError("this body model's landmarks are not a known joint set")
