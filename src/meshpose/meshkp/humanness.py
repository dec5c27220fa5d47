"""How much a mesh looks like an upright human body to the point model: a score in [0, 1].

The point model always answers with a skeleton, also for a cube. The score reads that answer
(:func:`meshpose.meshkp.readings.read_joints`: two or more readings at different turns and
point draws) with eight measures, the distances relative to the size of the answer's skeleton
(the diagonal of the box around its mean ``smpl24`` joints):

========== ================================================================ ====== =====
measure    what it is                                                        human  not
========== ================================================================ ====== =====
spread     RMS distance of the readings' joints from their mean (unbiased):  0.045  0.09
           the network, trained on upright bodies at every turn, answers a
           body alike at every turn, other shapes not
heads      mean distance between the seed12 and the smpl24 knees, elbows     0.045  0.09
           and ankles (two outputs of one network, that agree on a body)
surface    median distance from a joint centre to the nearest surface point  0.045  0.09
wrap       90th percentile of the distance from a surface point to the       0.12   0.24
           nearest bone: a body's surface wraps its skeleton
upright    height of the head above the ankles along up                      0.5    0.2
symmetry   largest left/right difference of upper arm, forearm, thigh or     0.3    0.6
           shin, relative to their sum
legs       ``|ln((thigh + shin) / torso / 1.45)|``, torso = neck to pelvis    0.3    0.6
arms       ``|ln((upper arm + forearm) / torso / 0.88)|``                    0.4    0.8
========== ================================================================ ====== =====

Each measure costs nothing up to its *human* value and one unit at its *not* value (linearly
in between and beyond; in the logarithm for the four distances); the score is
``2 ** -(total cost)``: 1 for a clear body, one half when one measure reaches its *not* value.
The values were set from the measures' spread on human_seg meshes, Anny bodies and the
shapes below; the score separates better with more readings but costs one network pass each.

:data:`HUMANNESS_THRESHOLD` is 0.5. ``python benchmarks/bench_humanness.py --seeds 0 1`` (two
readings, the default):

* the 310 human_seg meshes, y up: median 1.0, 1st percentile 0.25; 11 of 620 scores below
  0.5, from six meshes in handstand and tucked-jump poses whose joints the model does not
  find either (their spread is 2-6x that of a standing body);
* Anny bodies in the five preset poses: min 1.0;
* 21 shapes that are not bodies (cube, tall box, sphere, torus, cylinder, cone, capsule, plane,
  triangle, tetrahedron, table, snowman, six smooth random blobs, three triangle soups), read
  along each of the five up axes: max 0.41 (a body-sized blob);
* human_seg meshes read along a wrong up axis, scores at or above 0.5: ``x`` 3 of 620, ``z`` 0,
  ``-y`` 17 of 620 (upside down; handstand frames, upright when turned over, and a few FAUST
  scans), ``-z`` 0; ``meshpose mesh-keypoints`` suggests ``--up y`` for 606 of 620 (``-y``: 595).
"""
from __future__ import annotations

import math

import torch

from meshpose.joints import get_joint_set
from meshpose.meshkp.pointnet import output_names

__all__ = ["HUMANNESS_THRESHOLD", "MEASURES", "humanness", "humanness_measures"]

#: Below this score ``meshpose mesh-keypoints`` refuses a mesh: no upright human body was found.
#: Human_seg meshes score median 1.0 (1.8 % of readings below, hard poses), non-human shapes at
#: most 0.41 (see the module docstring for the measurements).
HUMANNESS_THRESHOLD = 0.5

#: measure -> (human value, not-human value); see the module docstring.
MEASURES = {"spread": (0.045, 0.09), "heads": (0.045, 0.09), "surface": (0.045, 0.09), "wrap": (0.12, 0.24),
            "upright": (0.5, 0.2), "symmetry": (0.3, 0.6), "legs": (0.3, 0.6), "arms": (0.4, 0.8)}
_RELATIVE = ("spread", "heads", "surface", "wrap")  # costed in the logarithm
_SIDES = ("left", "right")
_BONES = {"upper arm": ("shoulder", "elbow"), "forearm": ("elbow", "wrist"), "thigh": ("hip", "knee"),
          "shin": ("knee", "ankle")}
_SHARED = ("left_knee", "right_knee", "left_elbow", "right_elbow", "left_ankle", "right_ankle")
_TINY = 1e-9


def _index() -> dict[str, int]:
    return {name: i for i, name in enumerate(output_names())}


def _bone_distance(joints: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(P,) distance from each point (P, 3) to the nearest bone (segment between smpl24 joints (24, 3)).

    Written with (P, bones) products rather than a (P, bones, 3) block: 10x less memory traffic."""
    edges = torch.tensor(get_joint_set("smpl24").edges, device=joints.device)
    start, bone = joints[edges[:, 0]], joints[edges[:, 1]] - joints[edges[:, 0]]  # (E, 3)
    length2 = (bone * bone).sum(-1).clamp_min(_TINY)
    along = points @ bone.T - (start * bone).sum(-1)  # (P, E): (p - start) . bone
    t = (along / length2).clamp(0, 1)
    to_start2 = (points * points).sum(-1)[:, None] - 2 * points @ start.T + (start * start).sum(-1)
    return (to_start2 - 2 * t * along + t * t * length2).clamp_min(0).sqrt().amin(1)


def humanness_measures(joints: torch.Tensor, points: torch.Tensor) -> dict[str, float]:
    """The seven measures of the module docstring.

    Args:
        joints: (K, J, 3) the joints of K >= 2 readings in one frame, y up (any units), all
            outputs of the model (J = ``len(output_names())``).
        points: (P, 3) points of the mesh's surface in the same frame.

    Returns:
        measure name -> value (``inf`` where the skeleton collapsed to a point).
    """
    index = _index()
    joints = joints.double()
    mean = joints.mean(0)

    def joint(name: str) -> torch.Tensor:
        return mean[index[name]]

    centres = [i for name, i in index.items() if name.startswith("smpl24:")]
    extent = float((mean[centres].amax(0) - mean[centres].amin(0)).norm())
    if not math.isfinite(extent) or extent < _TINY:
        return {name: math.inf for name in MEASURES}
    count, n_joints = joints.shape[:2]
    spread = float(((joints - mean) ** 2).sum() / ((count - 1) * n_joints)) ** 0.5
    heads = sum(float((joint(f"seed12:{n}") - joint(f"smpl24:{n}")).norm()) for n in _SHARED) / len(_SHARED)
    points = points.double()
    surface = float(torch.cdist(mean[centres], points).amin(1).median())
    wrap = float(_bone_distance(mean[centres], points).quantile(0.9))
    ankles = (joint("smpl24:left_ankle")[1] + joint("smpl24:right_ankle")[1]) / 2
    upright = float(joint("smpl24:head")[1] - ankles)
    length = {(side, bone): float((joint(f"smpl24:{side}_{a}") - joint(f"smpl24:{side}_{b}")).norm())
              for side in _SIDES for bone, (a, b) in _BONES.items()}
    symmetry = max(abs(length["left", b] - length["right", b]) / max(length["left", b] + length["right", b], _TINY)
                   for b in _BONES)
    torso = max(float((joint("smpl24:neck") - joint("smpl24:pelvis")).norm()), _TINY)
    legs = sum(length[side, bone] for side in _SIDES for bone in ("thigh", "shin")) / 2 / torso
    arms = sum(length[side, bone] for side in _SIDES for bone in ("upper arm", "forearm")) / 2 / torso
    return {"spread": spread / extent, "heads": heads / extent, "surface": surface / extent,
            "wrap": wrap / extent, "upright": upright / extent, "symmetry": symmetry,
            "legs": abs(math.log(max(legs, _TINY) / 1.45)), "arms": abs(math.log(max(arms, _TINY) / 0.88))}


def _cost(name: str, value: float) -> float:
    """0 up to the measure's human value, 1 at its not-human value, linear (in the log for distances)."""
    human, not_human = MEASURES[name]
    if math.isnan(value):
        return math.inf
    if name in _RELATIVE:
        if value <= human:
            return 0.0
        return math.log(value / human) / math.log(not_human / human)
    return max(0.0, (value - human) / (not_human - human))


def humanness(joints: torch.Tensor, points: torch.Tensor) -> float:
    """The humanness score in [0, 1] of K >= 2 readings' joints (see the module docstring).

    Args:
        joints: (K, J, 3) the readings' joints in one frame, y up (any units).
        points: (P, 3) surface points in that frame.

    Returns:
        ``2 ** -(sum of the measures' costs)``; 0 for a non-finite answer.
    """
    total = sum(_cost(name, value) for name, value in humanness_measures(joints, points).items())
    return 0.0 if not math.isfinite(total) else float(2.0 ** -total)
