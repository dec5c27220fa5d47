"""Reading model files that are pickles of arrays (SMPL / SMPL-X ``.pkl``, ``.npz`` with object
members) without running code from them.

A pickle names the functions it calls to rebuild its objects; :class:`ArraysOnlyUnpickler`
resolves only the names that rebuild NumPy arrays, SciPy sparse matrices and plain containers
(and chumpy's arrays, which the official SMPL files hold, when chumpy is installed). Any other
name, ``os.system`` for one, stops the load before anything runs.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["ArraysOnlyUnpickler", "load_array_file"]

# (module, name) pairs a pickle of arrays needs; NumPy 2 moved numpy.core to numpy._core.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("copyreg", "_reconstructor"), ("builtins", "object"), ("builtins", "slice"),
    ("_codecs", "encode"),  # protocol-2 pickles rebuild bytes as _codecs.encode(text, "latin1")
    ("collections", "OrderedDict"),
    ("scipy.sparse.csc", "csc_matrix"), ("scipy.sparse._csc", "csc_matrix"),
    ("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse._csr", "csr_matrix"),
    ("scipy.sparse.coo", "coo_matrix"), ("scipy.sparse._coo", "coo_matrix"),
}
#: Modules whose classes rebuild chumpy arrays (library code, imported only if installed).
_CHUMPY = ("chumpy.ch", "chumpy.ch_ops", "chumpy.reordering", "chumpy.linalg", "chumpy.utils")


class ArraysOnlyUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that builds arrays and containers and refuses everything else
    with :class:`pickle.UnpicklingError` naming what the pickle asked for."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or module in _CHUMPY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks to run {module[:40]}.{name[:40]}, not an array type; refused")


def _npz_member(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """One ``.npy`` member of an ``.npz``, object arrays through :class:`ArraysOnlyUnpickler`."""
    with archive.open(member) as handle:
        stream = io.BytesIO(handle.read())
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream)
    if dtype.hasobject:
        return ArraysOnlyUnpickler(stream, encoding="latin1").load()
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def load_array_file(path: str | Path) -> dict:
    """The dict of arrays in a ``.npz`` or a pickle file (any other suffix), read without running
    code from the file.

    Raises:
        pickle.UnpicklingError: the file asks for anything but arrays and containers.
        ValueError, OSError, zipfile.BadZipFile, EOFError: a corrupt or foreign file.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".npy")]
            return {m[: -len(".npy")]: _npz_member(archive, m) for m in members}
    with open(path, "rb") as handle:
        data = ArraysOnlyUnpickler(handle, encoding="latin1").load()
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict of arrays, found a {type(data).__name__}")
    return data
