"""The fixed train/val/test split of the human_seg keypoint dataset, by subject and collection.

Whole people are held out, never single frames of a person seen in training:

* **test**: every Adobe Fuse character (``adobe__*``), FAUST subjects 8 and 9
  (``faust__tr_reg_080`` .. ``_099``; FAUST orders its scans subject by subject, 10 poses each)
  and the MIT ``crane`` sequence.
* **val**: FAUST subject 7 (``tr_reg_070`` .. ``_079``) and the MIT ``jumping`` sequence.
* **train**: everything else (FAUST subjects 0-6, the other MIT sequences).

Leave one collection out (``hold_out="faust"``, ``"adobe"`` or ``"mit"``): that whole
collection is the test split; the other collections' test meshes join their train split, and
their val meshes stay val.

Names are the mesh file names of ``human_seg/meshes`` (with or without ``.obj``).
"""
from __future__ import annotations

import re

__all__ = ["COLLECTIONS", "SPLITS", "collection_of", "split_of"]

SPLITS = ("train", "val", "test")
#: The mesh collections of human_seg, by the names' prefixes.
COLLECTIONS = {"adobe": "adobe__", "faust": "faust__", "mit": "MIT_animation__"}
_FAUST = re.compile(r"faust__tr_reg_(\d{3})")
_MIT = re.compile(r"MIT_animation__meshes_([a-z0-9]+)__")


def collection_of(name: str) -> str:
    """``"adobe"``, ``"faust"``, ``"mit"`` or ``"other"`` for a human_seg mesh name."""
    return next((c for c, prefix in COLLECTIONS.items() if name.startswith(prefix)), "other")


def split_of(name: str, hold_out: str = "") -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a human_seg mesh name; ``hold_out`` names a
    collection to leave out whole (module doc)."""
    if hold_out and hold_out not in COLLECTIONS:
        raise ValueError(f"hold_out must be one of {', '.join(COLLECTIONS)} or empty; got {hold_out!r}")
    if hold_out:
        if collection_of(name) == hold_out:
            return "test"
        split = split_of(name)
        return "train" if split == "test" else split
    if collection_of(name) == "adobe":
        return "test"
    if (match := _FAUST.search(name)) is not None:
        subject = int(match.group(1)) // 10
        return "test" if subject >= 8 else "val" if subject == 7 else "train"
    if (match := _MIT.search(name)) is not None:
        return {"crane": "test", "jumping": "val"}.get(match.group(1), "train")
    return "train"
