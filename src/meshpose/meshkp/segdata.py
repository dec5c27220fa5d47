"""The mesh-keypoints dataset: 12 joints per mesh, derived from part-segmented human meshes.

This builds the dataset of "A Simple Neural Network Approach for 3D Human Mesh Keypoints
Estimation with a Novel Dataset" from MeshCNN's ``human_seg`` layout::

    SEG_DIR/meshes/<name>.obj   triangle meshes
    SEG_DIR/seg/<name>.eseg     one part label per edge (1..8, see PARTS), edges in MeshCNN order

Method (the reference's): a vertex touched by edges of two different parts is *useful*; edges
whose two ends are useful are kept, and every connected component of kept edges is a joint
region whose keypoint is the mean of its vertices. The components bordering torso|thigh (the
hips; often a single component joined through the crotch) are merged into one pelvis. A mesh is
kept when exactly 12 components remain (the reference's rule). Its 12 points are *labelled* (named
seed12 joints) when they also border the expected part pairs (one neck head|torso, two shoulders
upper arm|torso, two elbows, wrists, knees and ankles) and the sides below can be told; otherwise
the mesh keeps its 12 unnamed points, as the reference dataset does, and the manifest says why
they carry no names.

Left and right come from the body's own frame, never the world axes: up = neck - pelvis,
forward = where the toes point (foot centroid - ankle across the shin, from the feet whose
shins hang down), and the person's left is along up x forward. The arms are told apart by their
shoulders and the legs by their hips (the pelvis vertices nearer each knee over the thigh
surface); each elbow follows the shoulder it shares an upper-arm region with, each wrist its
elbow (forearm region), each ankle its knee (shin region).

Output folder::

    OUT/meshes/<name>.obj   byte copies of the kept meshes
    OUT/keypoints.csv       wide, one row per labelled mesh: ``mesh,neck_x,neck_y,neck_z,
                            left_shoulder_x,...`` in the seed12 joint order, in the mesh's units
    OUT/unlabelled_keypoints.csv  one row per kept mesh whose points have no names:
                            ``mesh,point1_x,...,point12_z`` (an unordered set), mesh units
    OUT/manifest.json       every mesh with ``accepted`` (kept), ``labelled`` and ``reason``;
                            counts per reason
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from tqdm import tqdm

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import sorted_files
from meshpose.io.atomic import atomic_write_bytes, atomic_write_text
from meshpose.io.meshes import read_mesh
from meshpose.joints import get_joint_set

__all__ = ["PARTS", "KeypointResult", "build_dataset", "extract_keypoints", "meshcnn_edges", "read_dataset",
           "read_eseg"]

#: Names of the columns of an unlabelled mesh's 12 points (an unordered set).
UNLABELLED_NAMES = tuple(f"point{i}" for i in range(1, 13))

#: Part names of the edge labels 1..8.
PARTS = ("head", "hand", "forearm", "upper arm", "torso", "thigh", "shin", "foot")
HEAD, HAND, FOREARM, UPPER_ARM, TORSO, THIGH, SHIN, FOOT = range(1, 9)

#: Joint kind -> (the two parts its region separates, how many one body has). Hips are merged.
JOINT_KINDS = {
    "neck": ((HEAD, TORSO), 1),
    "shoulder": ((UPPER_ARM, TORSO), 2),
    "elbow": ((FOREARM, UPPER_ARM), 2),
    "wrist": ((HAND, FOREARM), 2),
    "hip": ((TORSO, THIGH), 1),  # after merging
    "knee": ((THIGH, SHIN), 2),
    "ankle": ((SHIN, FOOT), 2),
}
_KIND_OF_BORDER = {frozenset(parts): kind for kind, (parts, _) in JOINT_KINDS.items()}
JOINT_NAMES = get_joint_set("seed12").names
_NUMBER_WORDS = ("no", "one", "two", "three", "four")


@dataclass
class KeypointResult:
    """What :func:`extract_keypoints` found in one mesh.

    Attributes:
        keypoints: ``(12, 3)`` points in ``names`` order (mesh units), or None when rejected.
        names: the seed12 joint names when labelled; ``point1`` .. ``point12`` when not.
        reason: why the mesh is rejected, or why its kept points carry no joint names; ``""``
            for a labelled mesh.
        n_components: joint regions found, after merging the hips into one.
        regions: per point (``names`` order), the vertex indices it is the mean of; None when
            rejected.
        labelled: the points are named seed12 joints (False for rejected meshes too).
    """

    keypoints: np.ndarray | None
    names: tuple[str, ...]
    reason: str
    n_components: int
    regions: list[np.ndarray] | None = None
    labelled: bool = True

    @property
    def accepted(self) -> bool:
        """Kept in the dataset: exactly 12 joint regions (the reference's rule)."""
        return self.keypoints is not None


def read_eseg(path: str | os.PathLike) -> np.ndarray:
    """Read a MeshCNN ``.eseg`` file: one integer part label (1..8) per line.

    Returns:
        ``(E,)`` int64 labels.

    Raises:
        InputFileError: missing, empty or non-integer file, or labels outside 1..8.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError("edge label file not found", p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read edge labels: {exc}", p) from None
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        values = np.array([np.nan])
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise InputFileError("edge labels must be integers, one per line", p)
    labels = values.astype(np.int64)
    if labels.size == 0:
        raise InputFileError("file holds no edge labels", p)
    bad = (labels < 1) | (labels > len(PARTS))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFileError(f"edge label {labels[i]} on line {i + 1} is outside 1..{len(PARTS)}", p)
    return labels


def meshcnn_edges(faces) -> np.ndarray:
    """The unique edges of a triangle mesh in MeshCNN's order.

    Faces are walked in order, each giving (v0, v1), (v1, v2), (v2, v0) as sorted pairs; an edge
    is numbered the first time it appears.

    Args:
        faces: ``(F, 3)`` vertex indices.

    Returns:
        ``(E, 2)`` int64 vertex pairs, smaller index first.
    """
    faces = np.asarray(faces, dtype=np.int64)
    pairs = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, first = np.unique(pairs[:, 0] * (pairs.max(initial=0) + 1) + pairs[:, 1], return_index=True)
    return pairs[np.sort(first)]


def _edge_components(edges: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` connected-component id per vertex over ``edges`` (0, 1, ...); -1 off every edge."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    ids = np.full(n, -1)
    on_edge = np.zeros(n, bool)
    on_edge[edges.ravel()] = True
    ids[on_edge] = np.unique(comp[on_edge], return_inverse=True)[1]
    return ids


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _border(parts) -> str:
    return "|".join(PARTS[p - 1] for p in sorted(parts))


def _count_phrase(count: int, border: str) -> str:
    word = _NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else str(count)
    return f"{word} component{'s' if count > 1 else ''} border{'' if count > 1 else 's'} {border}"


def _group_regions(regions: list[np.ndarray], borders: list[frozenset]) -> tuple[dict, int, str]:
    """Sort joint regions by kind and merge the hips.

    Returns:
        kind -> list of ``(K,)`` vertex-index arrays, the component count after merging the
        hips, and a rejection reason (``""`` when the kinds and counts are right).
    """
    groups = {kind: [] for kind in JOINT_KINDS}
    odd = []
    for region, border in zip(regions, borders):
        kind = _KIND_OF_BORDER.get(border)
        if kind is None:
            odd.append(border)
        else:
            groups[kind].append(region)
    hips = groups["hip"]
    if hips:
        groups["hip"] = [np.concatenate(hips)]
    count = len(regions) - max(len(hips) - 1, 0)
    if odd:
        odd_counts = Counter(_border(b) for b in sorted(odd, key=sorted))
        return groups, count, "; ".join(_count_phrase(n, border) for border, n in odd_counts.items())
    wrong = [f"{_count_phrase(len(groups[k]), _border(parts))}, need {need}"
             for k, (parts, need) in JOINT_KINDS.items() if len(groups[k]) != need]
    if count != 12:
        detail = f" ({'; '.join(wrong)})" if wrong else ""
        return groups, count, f"{count} components after merging hips, need 12{detail}"
    return groups, count, "; ".join(wrong)


def _match(parents: list[np.ndarray], children: list[np.ndarray], region_ids: np.ndarray) -> list[int] | None:
    """For each parent joint region, the index of the one child sharing a part region with it.

    None unless this pairs parents and children one to one.
    """
    def ids(vertices):
        return set(region_ids[vertices].tolist()) - {-1}

    match = []
    for parent in parents:
        hits = [i for i, child in enumerate(children) if ids(parent) & ids(child)]
        if len(hits) != 1:
            return None
        match.append(hits[0])
    return match if sorted(match) == list(range(len(children))) else None


def _split_hips(vertices: np.ndarray, thigh_edges: np.ndarray, pelvis: np.ndarray, knees: list) -> list | None:
    """Each leg's hip: the mean of the pelvis vertices nearer to its knee along the thigh surface.

    The knees themselves can cross the midline (a catwalk step); the hips cannot.

    Returns:
        two ``(3,)`` points in ``knees`` order, or None if a leg gets no pelvis vertex.
    """
    lengths = np.linalg.norm(vertices[thigh_edges[:, 0]] - vertices[thigh_edges[:, 1]], axis=1)
    n = len(vertices)
    graph = coo_matrix((lengths, (thigh_edges[:, 0], thigh_edges[:, 1])), shape=(n, n)).tocsr()
    distance = np.stack([dijkstra(graph, directed=False, indices=knee, min_only=True)[pelvis] for knee in knees])
    reached = np.isfinite(distance).any(axis=0)
    nearest = np.argmin(distance, axis=0)
    sides = [pelvis[reached & (nearest == k)] for k in range(len(knees))]
    return None if any(len(side) == 0 for side in sides) else [vertices[side].mean(axis=0) for side in sides]


def _label_sides(vertices: np.ndarray, edges: np.ndarray, labels: np.ndarray, groups: dict) -> tuple[dict, str]:
    """Name the paired joints left/right in the body's own frame (see the module docstring).

    Returns:
        joint name -> its region's vertex indices, and a rejection reason (``""`` when it worked).
    """
    n = len(vertices)
    region = {part: _edge_components(edges[labels == part], n) for part in (UPPER_ARM, FOREARM, SHIN, FOOT)}
    elbow_of = _match(groups["shoulder"], groups["elbow"], region[UPPER_ARM])
    wrist_of = _match(groups["elbow"], groups["wrist"], region[FOREARM])
    ankle_of = _match(groups["knee"], groups["ankle"], region[SHIN])
    if elbow_of is None or wrist_of is None:
        return {}, "cannot follow each arm from shoulder to elbow to wrist"
    if ankle_of is None:
        return {}, "cannot follow each leg from knee to ankle"
    point = {kind: [vertices[r].mean(axis=0) for r in regions] for kind, regions in groups.items()}

    up = _unit(point["neck"][0] - point["hip"][0])
    # Toes point forward. Each foot's direction is taken across its shin (a pointed foot runs
    # along it) and counts as much as the shin hangs down the body (a kicked-back foot points up).
    forward = np.zeros(3)
    for knee, ankle in enumerate(ankle_of):
        on_foot = np.isin(region[FOOT], np.setdiff1d(region[FOOT][groups["ankle"][ankle]], [-1]))
        toes = vertices[on_foot].mean(axis=0) - point["ankle"][ankle]
        shin = _unit(point["ankle"][ankle] - point["knee"][knee])
        forward += max(0.0, -shin @ up) * _unit(toes - (toes @ shin) * shin)
    forward -= (forward @ up) * up
    if not np.linalg.norm(forward) >= 0.1:  # (NaN too)
        return {}, "cannot tell front from back: no foot points across a hanging shin"
    left = np.cross(up, forward)

    arms = [(s, elbow_of[s], wrist_of[elbow_of[s]]) for s in range(2)]
    legs = [(k, ankle_of[k]) for k in range(2)]
    if (point["shoulder"][0] - point["shoulder"][1]) @ left < 0:
        arms.reverse()
    hips = _split_hips(vertices, edges[labels == THIGH], groups["hip"][0], groups["knee"])
    if hips is None:
        return {}, "cannot split the pelvis between the two thighs"
    if (hips[0] - hips[1]) @ left < 0:
        legs.reverse()
    named = {"neck": groups["neck"][0], "pelvis": groups["hip"][0]}
    for side, (s, e, w), (k, a) in zip(("left", "right"), arms, legs):
        named.update({f"{side}_shoulder": groups["shoulder"][s], f"{side}_elbow": groups["elbow"][e],
                      f"{side}_wrist": groups["wrist"][w], f"{side}_knee": groups["knee"][k],
                      f"{side}_ankle": groups["ankle"][a]})
    return named, ""


def extract_keypoints(vertices, faces, edge_labels) -> KeypointResult:
    """The 12 seed12 keypoints of one part-segmented mesh, or why there are none.

    Args:
        vertices: ``(V, 3)`` float positions (any units; keypoints come out in the same).
        faces: ``(F, 3)`` int vertex indices.
        edge_labels: ``(E,)`` int part labels 1..8 of the edges in :func:`meshcnn_edges` order.

    Returns:
        a :class:`KeypointResult`.

    Raises:
        ValueError: ``edge_labels`` does not hold one label in 1..8 per edge.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    labels = np.asarray(edge_labels)
    edges = meshcnn_edges(faces)
    if labels.shape != (len(edges),):
        raise ValueError(f"{labels.shape[0] if labels.ndim == 1 else labels.shape} edge labels for {len(edges)} edges")
    if labels.dtype.kind not in "iu" or labels.min() < 1 or labels.max() > len(PARTS):
        raise ValueError(f"edge labels must be integers in 1..{len(PARTS)}")

    touched = np.zeros((len(vertices), len(PARTS) + 1), bool)
    touched[edges[:, 0], labels] = True
    touched[edges[:, 1], labels] = True
    useful = touched.sum(axis=1) >= 2
    comp = _edge_components(edges[useful[edges].all(axis=1)], len(vertices))
    regions = [np.flatnonzero(comp == c) for c in range(comp.max() + 1)]
    borders = [frozenset(np.flatnonzero(touched[r].any(axis=0)).tolist()) for r in regions]

    groups, count, reason = _group_regions(regions, borders)
    if not reason:
        named, reason = _label_sides(vertices, edges, labels, groups)
    if not reason:
        regions = [named[name] for name in JOINT_NAMES]
        return KeypointResult(_means(vertices, regions), JOINT_NAMES, "", count, regions)
    if count != 12:
        return KeypointResult(None, JOINT_NAMES, reason, count, labelled=False)
    # Kept as the reference keeps it: 12 points, in component order with the hips merged into
    # the first hip component's place, and no names.
    is_hip = [border == frozenset((TORSO, THIGH)) for border in borders]
    hips = [region for region, hip in zip(regions, is_hip) if hip]
    first_hip = is_hip.index(True) if hips else -1
    unnamed = [np.concatenate(hips) if i == first_hip else region
               for i, (region, hip) in enumerate(zip(regions, is_hip)) if i == first_hip or not hip]
    return KeypointResult(_means(vertices, unnamed), UNLABELLED_NAMES, reason, count, unnamed, labelled=False)


def _means(vertices: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """``(len(regions), 3)``: the mean vertex of each region."""
    return np.stack([vertices[region].mean(axis=0) for region in regions])


def _find_pairs(seg_dir: Path) -> list[tuple[Path, Path]]:
    """``(mesh.obj, labels.eseg)`` for every mesh in ``seg_dir/meshes``, in name order."""
    if not seg_dir.is_dir():
        raise InputFileError("folder not found" if not seg_dir.exists() else "is not a folder", seg_dir)
    for sub in ("meshes", "seg"):
        if not (seg_dir / sub).is_dir():
            raise InputFileError(f"no {sub}/ folder (expected meshes/*.obj and seg/*.eseg)", seg_dir)
    meshes = sorted_files(seg_dir / "meshes", (".obj",))
    if not meshes:
        raise InputFileError("folder holds no .obj meshes", seg_dir / "meshes")
    pairs = [(mesh, seg_dir / "seg" / f"{mesh.stem}.eseg") for mesh in meshes]
    for mesh, eseg in pairs:
        if not eseg.is_file():
            raise InputFileError(f"mesh has no edge labels (expected {eseg})", mesh)
    return pairs


def _keypoints_csv(rows: list[tuple[str, np.ndarray]], names: tuple[str, ...] = JOINT_NAMES) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["mesh"] + [f"{name}_{axis}" for name in names for axis in "xyz"])
    for name, keypoints in rows:
        writer.writerow([name] + [repr(float(v)) for v in keypoints.ravel()])
    return out.getvalue()


def _read_rows(table: Path) -> list[list[str]]:
    with table.open(newline="") as handle:
        return list(csv.reader(handle))[1:]


def read_dataset(folder: str | os.PathLike) -> dict:
    """Read a folder written by :func:`build_dataset`: every kept mesh, in mesh-name order.

    Returns:
        ``names`` (M,) mesh file names, ``vertices`` and ``faces``: lists of ``(V, 3)`` float64
        and ``(F, 3)`` int64 arrays (file order), ``keypoints`` ``(M, 12, 3)`` float64, mesh units
        (seed12 order where labelled, an unordered set where not), ``labelled`` ``(M,)`` bool.

    Raises:
        MeshposeError: no folder given, or no ``keypoints.csv`` in it; InputFileError: a listed
            mesh is missing or unreadable.
    """
    if not str(folder):
        raise MeshposeError("set data.dataset to a folder built by meshpose data build-keypoints")
    folder = Path(folder)
    table = folder / "keypoints.csv"
    if not table.is_file():
        raise MeshposeError("no keypoints.csv: set data.dataset to a folder built by meshpose data build-keypoints", folder)
    unlabelled_table = folder / "unlabelled_keypoints.csv"  # absent in folders built before it existed
    rows = [(row, True) for row in _read_rows(table)]
    rows += [(row, False) for row in (_read_rows(unlabelled_table) if unlabelled_table.is_file() else [])]
    rows.sort(key=lambda item: item[0][0])
    meshes = [read_mesh(folder / "meshes" / row[0]) for row, _ in rows]
    return {"names": [row[0] for row, _ in rows],
            "vertices": [np.asarray(m.vertices, dtype=np.float64) for m in meshes],
            "faces": [np.asarray(m.faces, dtype=np.int64) for m in meshes],
            "keypoints": np.array([row[1:] for row, _ in rows], dtype=np.float64).reshape(-1, len(JOINT_NAMES), 3),
            "labelled": np.array([labelled for _, labelled in rows], dtype=bool)}


def build_dataset(seg_dir: str | os.PathLike, out_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Extract the keypoints of every mesh in ``seg_dir`` and write the dataset to ``out_dir``.

    Every input is read and checked before anything is written, so bad input leaves
    ``out_dir`` untouched. Each file is written atomically; ``manifest.json`` comes last. Copies
    of this source's rejected meshes left in ``out_dir/meshes`` by an earlier build are removed;
    other files there are left alone.

    Args:
        seg_dir: folder with ``meshes/*.obj`` and ``seg/*.eseg`` (same names).
        out_dir: output folder (created), laid out as in the module docstring.
        progress: show a progress bar.

    Returns:
        ``{"out_dir", "total", "accepted" (kept), "labelled", "rejected", "reasons": {reason:
        count} of the rejected, "unlabelled_reasons": {reason: count} of the kept unlabelled}``.

    Raises:
        InputFileError: missing folder, no meshes, a mesh without its ``.eseg``, an unreadable
            mesh, or an ``.eseg`` with a wrong label count or labels outside 1..8.
        MeshposeError: ``out_dir`` is a file or cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MeshposeError("output must be a folder", out)
    pairs = _find_pairs(Path(seg_dir))
    results = []
    for mesh_path, eseg_path in tqdm(pairs, desc="extract keypoints", unit="mesh",
                                     disable=not progress or len(pairs) < 10):
        mesh = read_mesh(mesh_path)
        labels = read_eseg(eseg_path)
        n_edges = len(meshcnn_edges(mesh.faces))
        if len(labels) != n_edges:
            raise InputFileError(f"{len(labels)} edge labels but the mesh has {n_edges} edges", eseg_path)
        results.append((mesh_path, extract_keypoints(mesh.vertices, mesh.faces, labels)))

    try:
        (out / "meshes").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeshposeError(f"cannot create the output folder: {exc.strerror or exc}", out) from None
    accepted = [(path, r) for path, r in results if r.accepted]
    for path, _ in accepted:
        atomic_write_bytes(out / "meshes" / path.name, path.read_bytes())
    for path, r in results:  # a copy left by an earlier build that accepted this mesh
        if not r.accepted:
            (out / "meshes" / path.name).unlink(missing_ok=True)
    atomic_write_text(out / "keypoints.csv", _keypoints_csv([(p.name, r.keypoints) for p, r in accepted if r.labelled]))
    atomic_write_text(out / "unlabelled_keypoints.csv",
                      _keypoints_csv([(p.name, r.keypoints) for p, r in accepted if not r.labelled], UNLABELLED_NAMES))
    reasons = Counter(r.reason for _, r in results if not r.accepted)
    unlabelled_reasons = Counter(r.reason for _, r in accepted if not r.labelled)
    summary = {"out_dir": str(out), "total": len(results), "accepted": len(accepted),
               "labelled": sum(r.labelled for _, r in accepted), "rejected": len(results) - len(accepted),
               "reasons": dict(reasons.most_common()), "unlabelled_reasons": dict(unlabelled_reasons.most_common())}
    manifest = {
        "source": str(seg_dir), "joint_set": "seed12", "joints": list(JOINT_NAMES),
        "keypoints_csv": "one row per labelled mesh: mesh,<joint>_x,<joint>_y,<joint>_z,... "
                         "in the joints order, mesh units",
        "unlabelled_keypoints_csv": "one row per kept mesh whose 12 points could not be named: "
                                    "mesh,point1_x,...,point12_z, an unordered set, mesh units",
        **{k: v for k, v in summary.items() if k != "out_dir"},
        "meshes": [{"mesh": p.name, "accepted": r.accepted, "labelled": r.labelled, "components": r.n_components,
                    "reason": r.reason} for p, r in results],
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return summary
