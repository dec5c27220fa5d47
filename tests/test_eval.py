"""meshpose eval's pieces: the fitted joint map and the held-out motion protocol."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from meshpose.data.h36m import split_actions
from meshpose.data.protocols import evaluate_h36m, evaluate_motion, fit_joint_map, held_out_cmu, load_s1_protocol
from meshpose.estimators import load_estimator
from meshpose.eval.benchmarks import estimator_for


def test_joint_map_recovers_a_known_linear_map():
    generator = torch.Generator().manual_seed(0)
    landmarks = torch.randn(200, 10, 3, generator=generator)
    true_map = torch.zeros(4, 10)
    true_map[0, 1] = 1.0
    true_map[1, 2], true_map[1, 3] = 0.5, 0.5
    true_map[2, 7] = 1.0
    true_map[3, 0], true_map[3, 9] = 0.25, 0.75
    truth = torch.einsum("jl,nld->njd", true_map, landmarks)
    fitted = fit_joint_map(landmarks, truth, ridge=1e-9)
    assert torch.allclose(fitted, true_map, atol=1e-4)


@pytest.mark.parametrize("model", ["default", "research"])
def test_held_out_motion_protocol_is_only_subjects_13_and_14(anny_body, model):
    bank = held_out_cmu()
    names = {str(bank.clip_names[c]) for c in set(bank.clip.tolist())}
    assert names and all(n.startswith(("cmu/13/", "cmu/14/")) for n in names)

    row = evaluate_motion("CMU 13-14", bank, estimator_for(model, anny_body), anny_body, samples=64)
    assert row["samples"] == 64
    assert 0 < row["pa_mpjpe_mm"] < row["mpjpe_mm"] < 400  # PA-aligned error is the smaller one


H36M = Path(os.environ.get("MESHPOSE_H36M", "/work/shared/data/h36m"))


@pytest.mark.skipif(not (H36M / "h36m_S1_3d.npz").is_file(), reason="Human3.6M S1 files not present")
def test_h36m_rows_use_the_regressor_and_report_the_held_out_actions(anny_body):
    from meshpose import metrics

    stride = 500
    rows = {r["protocol"]: r for r in evaluate_h36m(H36M, estimator_for("default", anny_body), anny_body, stride)}
    detections, _, truth, takes, intrinsics = load_s1_protocol(str(H36M), stride)
    held = np.isin(takes, split_actions(sorted(set(takes.tolist())))[1])
    assert 0 < held.sum() < len(truth)
    # The same numbers from the model's estimate function, in one batch with each frame's camera,
    # per joint definition and subset.
    keypoints = torch.from_numpy(np.concatenate(detections))
    keypoints = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], -1)
    with torch.no_grad():
        found = load_estimator("default", "cpu", "mpii16", ("h36m17", "h36m17_anatomical"), anny_body)[0](
            keypoints, intrinsics)
    found = {k: v.numpy() for k, v in found.items()}
    sh = "H36M S1, Stacked-Hourglass detections"
    for suffix, key in (("", "h36m17"), (", Anny's anatomical joints", "h36m17_anatomical")):
        joints = torch.from_numpy(found[f"joints3d_{key}"])
        for subset, mask in (("", np.ones(len(truth), bool)), (", held-out actions", held)):
            row = rows[sh + suffix + subset]
            assert row["samples"] == int(mask.sum())
            expected = float(metrics.mpjpe(joints[mask], truth[mask])) * 1000
            assert abs(row["mpjpe_mm"] - expected) < 0.05
            expected = float(metrics.pa_mpjpe(joints[mask], truth[mask])) * 1000
            assert abs(row["pa_mpjpe_mm"] - expected) < 0.05
    assert rows[sh + ", held-out actions, with a joint map fitted on the other actions"]["samples"] == held.sum()
