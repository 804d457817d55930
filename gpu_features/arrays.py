"""Host or device arrays: the two helpers every module uses to stay agnostic of where an array lives.

Arrays are numpy on the host and CuPy on the GPU (the GPU engine's outputs,
the cudf reader's columns). Code that must read values on the host calls
:func:`to_numpy`; code that computes where the data already is picks its
array module with :func:`array_module`. Numbers read by pyarrow come out as
numpy through :func:`arrow_numbers`.
"""
from __future__ import annotations

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A host numpy array from numpy or CuPy input (CuPy's ``.get()`` copies device to host)."""
    return x.get() if hasattr(x, "get") else np.asarray(x)


def array_module(x):
    """``cupy`` for a CuPy array, else ``numpy``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def arrow_numbers(arr) -> np.ndarray:
    """``arr.to_numpy(zero_copy_only=False)`` of a (chunked) pyarrow array of integers or floats, through
    DLPack when it has no nulls: pyarrow's own conversion imports pandas where it is installed (0.2-1 s
    of a CLI run) though numbers do not need it. Read-only, as ``to_numpy`` gives."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    t = arr.type
    if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)) and hasattr(arr, "__dlpack__"):
        out = np.from_dlpack(arr)
        out.flags.writeable = False
        return out
    return arr.to_numpy(zero_copy_only=False)
