"""The store format (version 1): names, sizes, and the checks that trust nothing on disk.

Layout of a store directory (format ``gpu-features-store``, version 1)::

    manifest.json                 the commit point; everything else is listed here
    bars-00000.safetensors        features f32 [m,10], timestamp i64 [m], valid bool [m]
    ...                           (numbered in bar order; appends continue the numbering)
    state.safetensors             checkpoint_bar i64 [c], checkpoint_state f64 [c,16+P],
                                  end_state f64 [symbols,16+P]

The manifest holds the format and version, feature names, the full config,
the sources (path, bytes, sha256, ingest record; or synthetic generator
parameters), the series segments (name, first bar, count, local index of the
first bar), shards (file, first bar, count, bytes, sha256), the state file,
the chronological splits with bar and window counts, the engine that ran,
timings, and per-feature statistics over valid bars, per symbol too.

Every check here raises :class:`StoreError` with one sentence naming the file
and the problem; :mod:`.reader` runs them when a store is opened.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..config import N_FEATURES
from ..errors import StoreError
from ..fileio import sha256_file

FORMAT = "gpu-features-store"
VERSION = 1
MANIFEST = "manifest.json"
STATE_FILE = "state.safetensors"
SHARD_BARS = 1 << 19          # 524,288 bars (20 MB of features) per shard: 1.8M bars -> 4 shards
CHECKPOINT_BARS = 4096        # verify recomputes whole checkpoint intervals of this many bars

# tensor name -> (safetensors dtype, trailing shape) of every shard
SHARD_TENSORS = {"features": ("F32", (N_FEATURES,)), "timestamp": ("I64", ()), "valid": ("BOOL", ())}
_DTYPE_BYTES = {"F32": 4, "F64": 8, "I64": 8, "BOOL": 1, "I8": 1, "U8": 1, "I32": 4}


def shard_name(index: int) -> str:
    """File name of the ``index``-th shard in bar order (appends continue the numbering)."""
    return f"bars-{index:05d}.safetensors"


# --- safetensors headers ---------------------------------------------------------------------


def read_safetensors_header(path: Path, where: str) -> dict:
    """Parse and check a safetensors header without trusting it.

    Returns ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}``;
    raises StoreError naming ``where`` when the header is cut short, not JSON,
    or describes tensors that overlap, leave gaps or run past the end of the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StoreError(f"{where}: file is {size} bytes, too short for a safetensors header; rebuild the store.")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise StoreError(f"{where}: header length {n} runs past the file's {size} bytes (truncated or "
                             "corrupt); rebuild the store.")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(f"{where}: the safetensors header is not valid JSON (corrupt); rebuild the store.") from None
    if not isinstance(header, dict):
        raise StoreError(f"{where}: the safetensors header is not a JSON object; rebuild the store.")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], [int(x) for x in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{where}: tensor '{name}' has a malformed header entry; rebuild the store.") from None
        want = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(dtype, 0)
        if dtype not in _DTYPE_BYTES or b - a != want or a < 0 or b > data_len:
            raise StoreError(f"{where}: tensor '{name}' ({dtype} {shape}) does not fit its byte range "
                             f"[{a}, {b}) of {data_len} data bytes (truncated or corrupt); rebuild the store.")
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            raise StoreError(f"{where}: tensor data overlaps or leaves a gap at byte {pos}; rebuild the store.")
        pos = b
    if pos != data_len:
        raise StoreError(f"{where}: {data_len - pos} bytes after the last tensor (corrupt); rebuild the store.")
    return header


def check_tensor(header: dict, where: str, name: str, dtype: str, shape: tuple) -> None:
    info = header.get(name)
    if info is None:
        raise StoreError(f"{where}: tensor '{name}' is missing; rebuild the store.")
    if info["dtype"] != dtype or tuple(info["shape"]) != tuple(shape):
        raise StoreError(f"{where}: tensor '{name}' is {info['dtype']} {list(info['shape'])}, "
                         f"expected {dtype} {list(shape)}; rebuild the store.")


# --- the manifest --------------------------------------------------------------------------


_MANIFEST_SCHEMA = {
    "format": str, "version": int, "created": str, "feature_names": list, "config": dict, "n_bars": int,
    "symbols": list, "sources": list, "series": list, "shards": list, "state": dict, "splits": dict,
    "engine": dict, "timings": dict, "stats": dict,
}
_SERIES_KEYS = {"name": str, "first": int, "count": int, "start_index": int, "source": int, "source_first": int}
_SHARD_KEYS = {"file": str, "first": int, "count": int, "bytes": int, "sha256": str}
_STATE_KEYS = {"file": str, "bytes": int, "sha256": str, "checkpoint_every": int}


def check_schema(obj: dict, schema: dict, where: str) -> None:
    """Every key of ``schema`` present in ``obj`` with its type (``bool`` is not an ``int`` here)."""
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: expected a JSON object; rebuild the store.")
    for key, typ in schema.items():
        if key not in obj:
            raise StoreError(f"{where}: required key '{key}' is missing; rebuild the store.")
        value = obj[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise StoreError(f"{where}: key '{key}' should be {typ.__name__}, got {type(value).__name__}; "
                             "rebuild the store.")


def check_layout(manifest: dict, mpath: Path, n: int) -> None:
    """Segments and shards must each tile bars 0..n in order, without gaps or overlaps."""
    for what, items, keys in (("series", manifest["series"], _SERIES_KEYS), ("shards", manifest["shards"], _SHARD_KEYS)):
        pos = 0
        for k, item in enumerate(items):
            check_schema(item, keys, f"{mpath} {what}[{k}]")
            if item["first"] != pos or item["count"] < 1:
                raise StoreError(f"{mpath}: {what}[{k}] covers bars {item['first']}..+{item['count']} but bar {pos} "
                                 "comes next; the manifest is inconsistent, rebuild the store.")
            pos += item["count"]
        if pos != n:
            raise StoreError(f"{mpath}: {what} cover {pos} bars, n_bars says {n}; rebuild the store.")
    names = {s["name"] for s in manifest["series"]}
    if names != set(manifest["symbols"]):
        raise StoreError(f"{mpath}: symbols {manifest['symbols']} do not match the series names; rebuild the store.")


def check_file(root: Path, record: dict, what: str, checksum: bool) -> None:
    """A file a manifest record names: a plain name inside ``root``, of the recorded size and, with
    ``checksum``, of the recorded SHA-256."""
    p = root / record["file"]
    if Path(record["file"]).name != record["file"]:
        raise StoreError(f"{what}: file name must not contain a path; the manifest is corrupt.")
    if not p.is_file():
        raise StoreError(f"{what} is missing from {root}; the store is incomplete, rebuild it.")
    size = p.stat().st_size
    if size != record["bytes"]:
        raise StoreError(f"{what} has {size} bytes but the manifest says {record['bytes']} (truncated or "
                         "replaced); rebuild the store.")
    if checksum and sha256_file(p) != record["sha256"]:
        raise StoreError(f"{what} fails its SHA-256 checksum (the bytes changed since it was written); "
                         "rebuild the store.")


def read_manifest(path: Path) -> dict:
    """Read and check ``path/manifest.json``: JSON, format, version, schema, config, feature names, layout.

    Returns:
        The manifest dict; every key the readers use is present with its type.
    """
    from ..config import FEATURE_NAMES, FeatureConfig
    from ..errors import ConfigError

    mpath = path / MANIFEST
    if not path.is_dir():
        raise StoreError(f"{path}: no such store directory; build one with `gpu-features precompute`.")
    if not mpath.is_file():
        raise StoreError(f"{path}: no {MANIFEST}, so this is not a complete gpu-features store; rebuild it.")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{mpath}: not valid JSON ({err}); rebuild the store.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{mpath}: format is {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                         f"not {FORMAT!r}; this is not a gpu-features store.")
    if manifest.get("version") != VERSION:
        raise StoreError(f"{mpath}: store version {manifest.get('version')!r} is unknown; this gpu-features reads "
                         f"version {VERSION}, so rebuild the store or use a matching gpu-features.")
    check_schema(manifest, _MANIFEST_SCHEMA, f"{mpath}")
    try:
        FeatureConfig.from_dict(manifest["config"])
    except ConfigError as err:
        raise StoreError(f"{mpath}: bad config ({err})") from None
    if list(manifest["feature_names"]) != list(FEATURE_NAMES):
        raise StoreError(f"{mpath}: feature names {manifest['feature_names']} differ from {list(FEATURE_NAMES)}.")
    check_layout(manifest, mpath, manifest["n_bars"])
    check_schema(manifest["state"], _STATE_KEYS, f"{mpath} state")
    return manifest


def check_files(path: Path, manifest: dict, state_dim: int, checksums: bool) -> None:
    """Every shard and the state file: present, recorded size, safetensors header and tensor shapes,
    and with ``checksums`` the SHA-256 of each."""
    for shard in manifest["shards"]:
        where = f"shard {shard['file']}"
        check_file(path, shard, where, checksums)
        header = read_safetensors_header(path / shard["file"], where)
        for name, (dtype, tail) in SHARD_TENSORS.items():
            check_tensor(header, where, name, dtype, (shard["count"],) + tail)
    st = manifest["state"]
    where = f"state file {st['file']}"
    check_file(path, st, where, checksums)
    header = read_safetensors_header(path / st["file"], where)
    n_cp = header.get("checkpoint_bar", {}).get("shape", [0])[0]
    check_tensor(header, where, "checkpoint_bar", "I64", (n_cp,))
    check_tensor(header, where, "checkpoint_state", "F64", (n_cp, state_dim))
    check_tensor(header, where, "end_state", "F64", (len(manifest["symbols"]), state_dim))
