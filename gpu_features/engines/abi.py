"""The kernel ABI, written once: each kernel's parameters (name, kind, C type, role) and the sources.

Everything else is derived from :data:`KERNELS`: the argument kinds the host
library's ctypes prototypes and CuPy's launches convert to, the order of the
launch arguments (:func:`arguments` takes them by name), and the checks in
tests/engines/test_abi.py that compare this table with the parameter lists of the
``.cu`` kernels and of the host entry points in ``host_entry.cpp`` (so two
swapped pointers of the same kind fail a test, not a result).

Kinds: ``p`` a device pointer, ``q`` an int64, ``d`` a double. Roles: ``in``
read, ``out`` written, ``inout`` both, ``value`` a scalar.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ..errors import EngineError

KERNEL_SOURCES = ("portable.cuh", "state.cuh", "candle.cu", "scan.cu", "stats.cu", "advance.cu", "host_entry.cpp")
# The .cu files holding kernels (the GPU program includes them in this order).
KERNEL_FILES = ("candle.cu", "scan.cu", "stats.cu", "advance.cu")


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter: its name and C type as written in the ``.cu`` signature."""

    name: str
    ctype: str
    role: str

    @property
    def kind(self) -> str:
        """``p`` pointer, ``q`` int64 or ``d`` double."""
        if self.ctype.endswith("*"):
            return "p"
        return {"pf_i64": "q", "double": "d"}[self.ctype]


def _params(spec: str) -> tuple[Param, ...]:
    """``"ctype name role; ..."`` -> parameters (a compact form that reads like the C signature)."""
    out = []
    for item in spec.split(";"):
        *ctype, name, role = item.split()
        out.append(Param(name, " ".join(ctype), role))
    return tuple(out)


# Parameters of each kernel after the thread count the launcher adds (host_entry.cpp ``n_threads``).
KERNELS: dict[str, tuple[Param, ...]] = {
    "pf_candle": _params(
        "pf_i64 n value; const double* o in; const double* h in; const double* l in; const double* c in;"
        "double eps value; float* feats out"),
    "pf_scan": _params(
        "pf_i64 n_chunks value; const pf_i64* chunk_start in; const pf_i64* chunk_end in;"
        "const pf_i64* chunk_segment in; const pf_i64* seg_start in; const double* seg_state in;"
        "const double* h in; const double* l in; const double* c in;"
        "const double* params in; pf_i64 warm value; float* feats out; unsigned char* valid out;"
        "signed char* swing out; double* start_state out; double* end_state out; const pf_i64* snap_pos in;"
        "pf_i64 n_snap value; double* snap_state out"),
    "pf_check": _params(
        "pf_i64 n_chunks value; const pf_i64* chunk_start in; const pf_i64* chunk_segment in;"
        "const pf_i64* seg_start in; const double* start_state in; const double* end_state in;"
        "unsigned char* bad out"),
    "pf_fixup": _params(
        "pf_i64 n_segments value; const pf_i64* seg_first_chunk in; const pf_i64* chunk_start in;"
        "const pf_i64* chunk_end in; const unsigned char* bad in; const double* h in; const double* l in;"
        "const double* c in; const double* params in; float* feats inout; unsigned char* valid inout;"
        "signed char* swing inout; double* start_state inout; double* end_state inout;"
        "const pf_i64* snap_pos in; pf_i64 n_snap value; double* snap_state inout; int* fixups out"),
    "pf_moments": _params(
        "pf_i64 n_blocks value; const pf_i64* block_start in; const pf_i64* block_end in; const float* feats in;"
        "const unsigned char* valid in; const signed char* swing in; pf_i64* counts out; double* moments out"),
    "pf_advance": _params(
        "pf_i64 n_series value; const pf_i64* series_bounds in; const double* o in; const double* h in;"
        "const double* l in; const double* c in; const double* params in; double* state inout; float* feats out;"
        "unsigned char* valid out; signed char* swing out"),
}

# Argument kinds of each kernel after the thread count: what ctypes and CuPy convert to.
SIGNATURES = {name: "".join(p.kind for p in params) for name, params in KERNELS.items()}


def arguments(kernel: str, pool: dict) -> list:
    """The launch arguments of ``kernel`` in ABI order, each taken from ``pool`` by its parameter name."""
    missing = [p.name for p in KERNELS[kernel] if p.name not in pool]
    if missing:
        raise EngineError(f"{kernel}: no value for its parameter(s) {', '.join(missing)} (engines/abi.py).")
    return [pool[p.name] for p in KERNELS[kernel]]


def kernel_dir() -> Path:
    """Folder holding the kernel sources: ``kernels/`` of a source tree, else the installed package data."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "kernels", here / "kernels"):
        if (candidate / "scan.cu").is_file():
            return candidate
    raise EngineError(f"kernel sources not found beside {here}; reinstall gpu-features (they ship as package data).")


def sources_digest() -> "hashlib._Hash":
    """SHA-256 over every kernel source's name and bytes (keys the host build cache and the GPU program)."""
    src_dir = kernel_dir()
    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update(name.encode() + b"\0" + (src_dir / name).read_bytes())
    return digest
