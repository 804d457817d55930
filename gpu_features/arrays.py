"""Host or device arrays: the two helpers every module uses to stay agnostic of where an array lives.

Arrays are numpy on the host and CuPy on the GPU (the GPU engine's outputs,
the cudf reader's columns). Code that must read values on the host calls
:func:`to_numpy`; code that computes where the data already is picks its
array module with :func:`array_module`.
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
