"""Torch tensors on a device, without a copy wherever the producer's memory can be shared.

numpy arrays are wrapped with ``torch.from_numpy``, CuPy arrays (the GPU
engine's output) with ``torch.from_dlpack``. torch is imported inside each
function, so the core package imports without it.
"""
from __future__ import annotations

import numpy as np

from .arrays import to_numpy
from .errors import GpuFeaturesError, WindowError


def require_torch():
    """``import torch``, or one sentence saying which extra to install."""
    try:
        import torch
    except ImportError:
        raise GpuFeaturesError("this needs PyTorch; install it with pip install 'gpu-features[train]'.") from None
    return torch


def resolve_device(device=None):
    """``None``/``"auto"`` -> cuda when torch sees a GPU, else cpu; anything else as given."""
    torch = require_torch()

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WindowError(f"device {device} was asked for, but torch sees no CUDA device here; use --device cpu.")
    return device


def as_device_tensor(array, device):
    """A torch tensor of ``array`` on ``device``, without a copy whenever the producer's memory can be shared.

    numpy arrays are wrapped with ``torch.from_numpy`` and CuPy (or any DLPack
    producer) arrays with ``torch.from_dlpack``; both share the producer's
    memory, and a copy happens only when ``device`` differs from where the data lives.
    """
    torch = require_torch()

    if isinstance(array, torch.Tensor):
        t = array
    elif isinstance(array, np.ndarray):
        if not array.flags.writeable:  # torch refuses read-only memory (e.g. np.load with mmap_mode='r')
            array = array.copy()
        t = torch.from_numpy(np.ascontiguousarray(array))
    elif hasattr(array, "__dlpack__"):
        try:
            t = torch.from_dlpack(array)
        except (RuntimeError, TypeError, BufferError):
            # Older DLPack stacks cannot pass bool; go through uint8 (a copy of a small mask only).
            t = torch.from_dlpack(array.view("uint8")).bool() if str(getattr(array, "dtype", "")) == "bool" else None
            if t is None:
                raise
    else:
        t = torch.as_tensor(np.asarray(array))
    return t if _same_device(t.device, torch.device(device)) else t.to(device)


def _same_device(have, want) -> bool:
    """``cuda`` (the current device) matches ``cuda:0`` when 0 is current: no copy for a tensor already there."""
    if have.type != want.type:
        return False
    if want.index is None and have.type == "cuda":
        import torch

        return have.index == torch.cuda.current_device()
    return want.index is None or have.index == want.index


def host_array(x, dtype) -> np.ndarray:
    """A numpy copy of a small index array given as numpy, CuPy or torch."""
    if hasattr(x, "cpu"):        # torch
        x = x.cpu().numpy()
    return to_numpy(x).astype(dtype, copy=False)
