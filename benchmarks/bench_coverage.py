"""How well each motion collection covers Human3.6M S1's poses, independent of any model.

    python benchmarks/bench_coverage.py --data ../shared/data
    python benchmarks/bench_coverage.py --data ../shared/data --bank "CMU bank (Anny)=src/meshpose/assets/pose_bank_cmu.npz"
    python benchmarks/bench_coverage.py --data ../shared/data --no-probe --mix-chains 0.5 \
        --bank "CMU bank (Anny)=src/meshpose/assets/pose_bank_cmu.npz"

Every pose (S1's 3D joints, the mocap skeletons' joints, Anny bodies of a pose bank) is rebuilt
on one 15-joint skeleton with S1's median bone lengths (:mod:`meshpose.data.coverage`), so the
numbers measure pose, not proportions. Two tables:

1. nearest training pose: for every S1 pose (every ``--stride``-th frame), the PA-MPJPE to the
   nearest pose of the collection (median, 90th percentile, share farther than 100 mm);
2. the plain-lifter probe: an MLP trained on perfect 2D views of the collection's poses from
   random virtual cameras, tested on views of S1's poses (MPJPE, PA-MPJPE).

Collections: the shared mocap read directly (CMU 01-14, HDM05, Bandai-Namco-1, at ``--fps``),
S1 itself (the other half of its actions: the in-studio bound), and any pose bank given with
``--bank NAME=PATH`` (its Anny bodies' h36m17 joints), e.g. the shipped CMU bank or an augmented
one.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from meshpose.body import AnnyBody, body_joints
from meshpose.data.coverage import (
    from_h36m17,
    from_retarget_points,
    lifter_probe,
    nearest_pose_distance,
    rebuild,
    skeleton_bone_lengths,
)
from meshpose.data.h36m import load_h36m_3d
from meshpose.data.mocap_files import find_mocap_files
from meshpose.data.posebank import PoseBank
from meshpose.data.retarget import RETARGET_POINTS, read_clip_points
from meshpose.data.samples import flex_legs, mix_chains

MOCAP = {"CMU 01-14": "mocap/cmu", "HDM05": "mocap/hdm05", "Bandai-Namco-1": "mocap/bandai"}


def s1_poses(data: Path, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """S1's skeleton poses, split by action (even / odd in sorted order): (first half, second half)."""
    joints = load_h36m_3d(data / "h36m" / "h36m_S1_3d.npz", data / "h36m" / "h36m_S1_joints.json")
    keys = sorted(joints)
    halves = [np.concatenate([from_h36m17(joints[k][::stride]) for k in keys[i::2]]) for i in (0, 1)]
    return halves[0], halves[1]


def mocap_poses(folder: Path, fps: float) -> np.ndarray:
    files = find_mocap_files([str(folder)])
    clips = [read_clip_points(path, fps=fps) for path in tqdm(files, desc=folder.name, unit="file")]
    return from_retarget_points(np.concatenate([c["points"] for c in clips]), RETARGET_POINTS)


@torch.no_grad()
def bank_poses(path: str, body: AnnyBody, limit: int, mix: float = 0.0, flex: float = 0.0) -> np.ndarray:
    """A bank's poses (at most ``limit``, evenly spaced) as skeleton poses; with ``mix`` > 0
    each pose's chains come from other poses of the bank with that probability, as in training
    (:func:`meshpose.data.samples.mix_chains`), then with ``flex`` > 0 its legs sit or crouch
    with that probability (:func:`meshpose.data.samples.flex_legs`)."""
    bank = PoseBank.load(path)
    index = np.linspace(0, len(bank) - 1, min(limit, len(bank))).round().astype(int)
    rotations = bank.rotation_matrices(index)
    if mix > 0:
        generator = torch.Generator().manual_seed(0)
        rotations = mix_chains(rotations, torch.arange(len(rotations)), mix, generator)
    if flex > 0:
        rotations = flex_legs(rotations, flex, torch.Generator().manual_seed(1))
    parts = []
    for start in range(0, len(index), 1024):
        output = body(rotations[start:start + 1024].float(), torch.full((len(rotations[start:start + 1024]), 6), 0.5),
                      vertices=False)
        parts.append(body_joints(output, "h36m17").double().numpy())
    return from_h36m17(np.concatenate(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data", help="folder with h36m/ and mocap/")
    parser.add_argument("--stride", type=int, default=10, help="every n-th S1 frame")
    parser.add_argument("--fps", type=float, default=10.0, help="mocap frames per second kept")
    parser.add_argument("--bank", action="append", default=[], metavar="NAME=PATH", help="pose bank .npz")
    parser.add_argument("--bank-poses", type=int, default=40_000, help="at most this many poses per bank")
    parser.add_argument("--mix-chains", type=float, action="append", default=[], metavar="P",
                        help="also each bank with its chains recombined with probability P")
    parser.add_argument("--flex-legs", type=float, action="append", default=[], metavar="P",
                        help="also each bank with sitting/crouching legs with probability P (after --mix-chains' first P)")
    parser.add_argument("--only-banks", action="store_true", help="skip the mocap folders and S1's other actions")
    parser.add_argument("--probe-steps", type=int, default=1500)
    parser.add_argument("--no-probe", action="store_true")
    args = parser.parse_args()
    data = Path(args.data)

    started = time.perf_counter()
    s1_a, s1_b = s1_poses(data, args.stride)
    lengths = skeleton_bone_lengths(np.concatenate([s1_a, s1_b]))
    test = rebuild(s1_b, lengths)
    collections = {} if args.only_banks else {"Human3.6M S1, other actions (same studio)": s1_a}
    for name, folder in MOCAP.items():
        if (data / folder).is_dir() and not args.only_banks:
            collections[name] = mocap_poses(data / folder, args.fps)
    body = AnnyBody() if args.bank else None
    for spec in args.bank:
        name, _, path = spec.partition("=")
        collections[name] = bank_poses(path, body, args.bank_poses)
        for mix in args.mix_chains:
            collections[f"{name}, chains mixed (p={mix:g})"] = bank_poses(path, body, args.bank_poses, mix)
        first_mix = args.mix_chains[0] if args.mix_chains else 0.0
        for flex in args.flex_legs:
            label = f"{name}, " + (f"chains mixed (p={first_mix:g}), " if first_mix else "") + f"legs flexed (p={flex:g})"
            collections[label] = bank_poses(path, body, args.bank_poses, first_mix, flex)
    if "CMU 01-14" in collections and "Bandai-Namco-1" in collections:
        collections["CMU 01-14 + Bandai-Namco-1"] = np.concatenate(
            [collections["CMU 01-14"], collections["Bandai-Namco-1"]])

    print(f"S1 test poses: {len(test)} (every {args.stride}th frame of half its actions), "
          f"rebuilt with S1's median bone lengths\n")
    print("| training poses | poses | nearest pose PA-MPJPE median mm | p90 mm | share > 100 mm "
          + ("| probe MPJPE mm | probe PA-MPJPE mm |" if not args.no_probe else "|"))
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if not args.no_probe else ""))
    for name, poses in collections.items():
        rebuilt = rebuild(poses, lengths)
        distance = nearest_pose_distance(test, rebuilt) * 1000
        row = (f"| {name} | {len(poses)} | {np.median(distance):.1f} | {np.percentile(distance, 90):.1f} "
               f"| {np.mean(distance > 100):.3f} |")
        if not args.no_probe:
            probe = lifter_probe(rebuilt, test, steps=args.probe_steps)
            row += f" {probe['mpjpe_mm']:.1f} | {probe['pa_mpjpe_mm']:.1f} |"
        print(row, flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
