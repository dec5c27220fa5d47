"""meshpose eval's pieces: the fitted joint map and the held-out motion protocol."""
from __future__ import annotations

import torch

from meshpose.data.protocols import evaluate_motion, fit_joint_map, held_out_cmu
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


def test_held_out_motion_protocol_is_only_subjects_13_and_14(anny_body):
    bank = held_out_cmu()
    names = {str(bank.clip_names[c]) for c in set(bank.clip.tolist())}
    assert names and all(n.startswith(("cmu/13/", "cmu/14/")) for n in names)

    row = evaluate_motion("CMU 13-14", bank, estimator_for("default", anny_body), anny_body, samples=64)
    assert row["samples"] == 64
    assert 0 < row["pa_mpjpe_mm"] < row["mpjpe_mm"] < 400  # PA-aligned error is the smaller one
