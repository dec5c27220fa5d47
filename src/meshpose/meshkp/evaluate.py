"""``meshpose eval`` rows of the mesh -> keypoints task.

On the test split of the keypoint dataset (:mod:`meshpose.meshkp.split`: Adobe, FAUST subjects
8-9, MIT crane): PCK@0.1 and PCK@0.05 of the bounding-box diagonal and PCM(0.9) after Hungarian
matching (the reference's protocol), the same PCKs with the labels as predicted, and the share
of left/right joints on the correct side. On held-out synthetic Anny bodies (CMU subjects 13-14
poses, new shapes, random turns): median joint-centre error (smpl24 and h36m17) in cm.
"""
from __future__ import annotations

from pathlib import Path

from meshpose.meshkp.model_file import load_mesh_keypoint_model
from meshpose.meshkp.point_task import (
    MeshKeypointTask,
    PointDataConfig,
    evaluate_real,
    evaluate_synthetic,
)

__all__ = ["point_model_rows", "print_keypoint_table"]


def point_model_rows(dataset: str | Path, model: str = "default", synthetic: int = 512) -> list[dict]:
    """Table rows of the shipped point model (test split; held-out synthetic bodies)."""
    network = load_mesh_keypoint_model(model)
    data = PointDataConfig(dataset=str(dataset), points=network.points)
    task = MeshKeypointTask()
    real = evaluate_real(network, data, "test", "cpu", task=task)
    synthetic = evaluate_synthetic(network, data, "cpu", task=task, count=synthetic)
    return [{"model": "meshpose point model (labelled seed12 + smpl24 + h36m17)", **real,
             "centre_median_cm": synthetic["centre_median_cm"]}]


def print_keypoint_table(rows: list[dict]) -> None:
    print("| model | test meshes | PCK@0.1 | PCK@0.05 | PCM(0.9) | labelled PCK@0.1 | labelled PCK@0.05 "
          "| left/right correct | synthetic joint centres, median cm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def cell(row, key, fmt="{:.3f}"):
        return fmt.format(row[key]) if row.get(key) is not None else "-"

    for row in rows:
        print(f"| {row['model']} | {row['meshes']} | {cell(row, 'pck10')} | {cell(row, 'pck05')} | {cell(row, 'pcm')} "
              f"| {cell(row, 'pck10_labelled')} | {cell(row, 'pck05_labelled')} | {cell(row, 'side_correct')} "
              f"| {cell(row, 'centre_median_cm', '{:.2f}')} |")
