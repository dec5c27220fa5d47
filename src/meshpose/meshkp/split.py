"""The fixed train/val/test split of the human_seg keypoint dataset, by subject and collection.

Whole people are held out, never single frames of a person seen in training:

* **test**: every Adobe Fuse character (``adobe__*``), FAUST subjects 8 and 9
  (``faust__tr_reg_080`` .. ``_099``; FAUST orders its scans subject by subject, 10 poses each)
  and the MIT ``crane`` sequence.
* **val**: FAUST subject 7 (``tr_reg_070`` .. ``_079``) and the MIT ``jumping`` sequence.
* **train**: everything else (FAUST subjects 0-6, the other MIT sequences).

Names are the mesh file names of ``human_seg/meshes`` (with or without ``.obj``).
"""
from __future__ import annotations

import re

__all__ = ["SPLITS", "split_of"]

SPLITS = ("train", "val", "test")
_FAUST = re.compile(r"faust__tr_reg_(\d{3})")
_MIT = re.compile(r"MIT_animation__meshes_([a-z0-9]+)__")


def split_of(name: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a human_seg mesh name."""
    if name.startswith("adobe__"):
        return "test"
    if (match := _FAUST.search(name)) is not None:
        subject = int(match.group(1)) // 10
        return "test" if subject >= 8 else "val" if subject == 7 else "train"
    if (match := _MIT.search(name)) is not None:
        return {"crane": "test", "jumping": "val"}.get(match.group(1), "train")
    return "train"
