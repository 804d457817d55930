"""The feature store: per-bar features as safetensors shards under a checked manifest.

Layout of a store directory (format ``gpu-features-store``, version 1)::

    manifest.json                       the commit point; everything else is listed here
    bars-00000-of-00004.safetensors     features f32 [m,10], timestamp i64 [m], valid bool [m]
    ...
    state.safetensors                   checkpoint_bar i64 [c], checkpoint_state f64 [c,16+P],
                                        end_state f64 [symbols,16+P]

The manifest holds the format and version, feature names, the full config,
the sources (path, bytes, sha256, ingest record; or synthetic generator
parameters), the series segments (name, first bar, count, local index of the
first bar), shards (file, first bar, count, bytes, sha256), the state file,
the chronological splits with bar and window counts, the engine that ran,
timings, and per-feature statistics over valid bars, per symbol too.

State checkpoints: the exact engine state before every segment start, every
shard start and every ``checkpoint_every`` bars of a segment. Any stretch
between two checkpoints can be recomputed alone by any engine (``verify``
does it with the reference engine and compares bits), and the end state of
each symbol lets ``--append`` continue a series without recomputing it.

Writes are atomic: a new store is assembled in a hidden sibling directory and
renamed into place; an existing store is replaced only by a complete new one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import struct
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import engines, splits as splits_mod
from . import state as S
from .arrays import to_numpy
from .bars import Bars, check_bars, read_bars
from .config import FEATURE_NAMES, N_FEATURES, FeatureConfig
from .errors import ConfigError, GpuFeaturesError, StoreError
from .windows import split_window_starts, usable_starts

FORMAT = "gpu-features-store"
VERSION = 1
MANIFEST = "manifest.json"
STATE_FILE = "state.safetensors"
SHARD_BARS = 1 << 19          # 524,288 bars (20 MB of features) per shard: 1.8M bars -> 4 shards
CHECKPOINT_BARS = 4096        # verify recomputes whole checkpoint intervals of this many bars

# tensor name -> (safetensors dtype, trailing shape) of every shard
SHARD_TENSORS = {"features": ("F32", (N_FEATURES,)), "timestamp": ("I64", ()), "valid": ("BOOL", ())}
_DTYPE_BYTES = {"F32": 4, "F64": 8, "I64": 8, "BOOL": 1, "I8": 1, "U8": 1, "I32": 4}

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


# --- safetensors header validation --------------------------------------------------------


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


def _check_tensor(header: dict, where: str, name: str, dtype: str, shape: tuple) -> None:
    info = header.get(name)
    if info is None:
        raise StoreError(f"{where}: tensor '{name}' is missing; rebuild the store.")
    if info["dtype"] != dtype or tuple(info["shape"]) != tuple(shape):
        raise StoreError(f"{where}: tensor '{name}' is {info['dtype']} {list(info['shape'])}, "
                         f"expected {dtype} {list(shape)}; rebuild the store.")


# --- the store object -------------------------------------------------------------------


_MANIFEST_SCHEMA = {
    "format": str, "version": int, "created": str, "feature_names": list, "config": dict, "n_bars": int,
    "symbols": list, "sources": list, "series": list, "shards": list, "state": dict, "splits": dict,
    "engine": dict, "timings": dict, "stats": dict,
}
_SERIES_KEYS = {"name": str, "first": int, "count": int, "start_index": int, "source": int, "source_first": int}
_SHARD_KEYS = {"file": str, "first": int, "count": int, "bytes": int, "sha256": str}


class Store:
    """An opened, checked feature store. Build one with :func:`open_store`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.config = FeatureConfig.from_dict(manifest["config"])
        self._cache: dict[str, np.ndarray] = {}

    # shapes and layout
    @property
    def n_bars(self) -> int:
        return int(self.manifest["n_bars"])

    @property
    def series(self) -> list[dict]:
        """Contiguous segments ``{name, first, count, start_index, source, source_first}``, in bar order."""
        return self.manifest["series"]

    @property
    def symbols(self) -> list[str]:
        return list(self.manifest["symbols"])

    def segment_bounds(self) -> np.ndarray:
        """``[G + 1] int64``: segment ``g`` holds bars ``bounds[g] : bounds[g + 1]``."""
        return np.array([s["first"] for s in self.series] + [self.n_bars], dtype=np.int64)

    def symbol_of_bar(self) -> np.ndarray:
        """``[n] int64`` index into :attr:`symbols` of every bar."""
        index = {name: k for k, name in enumerate(self.symbols)}
        ids = np.array([index[s["name"]] for s in self.series], dtype=np.int64)
        return np.repeat(ids, [s["count"] for s in self.series])

    # arrays
    def array(self, name: str) -> np.ndarray:
        """A per-bar tensor of all shards as one numpy array (``features``, ``valid`` or ``timestamp``)."""
        if name not in self._cache:
            from safetensors import safe_open

            dtype, tail = SHARD_TENSORS[name]
            np_dtype = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_}[dtype]
            out = np.empty((self.n_bars,) + tail, dtype=np_dtype)
            for shard in self.manifest["shards"]:
                with safe_open(str(self.path / shard["file"]), framework="numpy") as f:
                    out[shard["first"]: shard["first"] + shard["count"]] = f.get_tensor(name)
            self._cache[name] = out
        return self._cache[name]

    def features(self, device: str = "cpu"):
        """``[n, 10] float32`` torch tensor on ``device`` (zero-copy from the loaded array on the CPU)."""
        return _to_torch(self.array("features"), device)

    def valid(self, device: str = "cpu"):
        """``[n] bool`` torch tensor on ``device``."""
        return _to_torch(self.array("valid"), device)

    def timestamps(self) -> np.ndarray:
        """``[n] int64`` ns since the epoch, UTC."""
        return self.array("timestamp")

    def split_ids(self) -> np.ndarray:
        """``[n] int8`` split of each bar (0 train, 1 val, 2 test)."""
        return splits_mod.split_ids(self.timestamps(), self.manifest["splits"])

    def states(self) -> dict[str, np.ndarray]:
        """``checkpoint_bar [c] i64``, ``checkpoint_state [c, 16+P] f64``, ``end_state [symbols, 16+P] f64``."""
        from safetensors.numpy import load_file

        return load_file(str(self.path / self.manifest["state"]["file"]))

    def to_arrow(self):
        """``pyarrow.Table``: timestamp, symbol (dictionary), valid and the ten features, one row per bar."""
        from .arrow_export import store_to_arrow

        return store_to_arrow(self)

    def usable_window_starts(self, split: str | None = None, min_valid_fraction: float = 1.0) -> np.ndarray:
        """``[w] int64`` starts of usable windows (all of a split when ``split`` is given)."""
        return split_window_starts(self.array("valid"), self.split_ids(), self.segment_bounds(),
                                   self.config.window_length, split, min_valid_fraction)


def _to_torch(a: np.ndarray, device: str):
    try:
        import torch
    except ImportError:
        raise GpuFeaturesError("this needs PyTorch; install it with `pip install 'gpu-features[train]'`.") from None
    t = torch.from_numpy(a)
    return t if str(device) == "cpu" else t.to(device)


def open_store(path, verify: bool = False) -> Store:
    """Open a store and check it: manifest schema and version, shard files, sizes, tensor shapes.

    Args:
        path: the store directory.
        verify: also check the SHA-256 of every shard and of the state file.

    Raises:
        StoreError: one sentence naming the file and the problem.
    """
    path = Path(path)
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
    _check_schema(manifest, _MANIFEST_SCHEMA, f"{mpath}")
    try:
        cfg = FeatureConfig.from_dict(manifest["config"])
    except ConfigError as err:
        raise StoreError(f"{mpath}: bad config ({err})") from None
    if list(manifest["feature_names"]) != list(FEATURE_NAMES):
        raise StoreError(f"{mpath}: feature names {manifest['feature_names']} differ from {list(FEATURE_NAMES)}.")
    n = manifest["n_bars"]
    _check_layout(manifest, mpath, n)
    for k, shard in enumerate(manifest["shards"]):
        _check_schema(shard, _SHARD_KEYS, f"{mpath} shards[{k}]")
        _check_file(path, shard, f"shard {shard['file']}", verify)
        header = read_safetensors_header(path / shard["file"], f"shard {shard['file']}")
        for name, (dtype, tail) in SHARD_TENSORS.items():
            _check_tensor(header, f"shard {shard['file']}", name, dtype, (shard["count"],) + tail)
    st = manifest["state"]
    _check_schema(st, {"file": str, "bytes": int, "sha256": str, "checkpoint_every": int}, f"{mpath} state")
    _check_file(path, st, f"state file {st['file']}", verify)
    header = read_safetensors_header(path / st["file"], f"state file {st['file']}")
    dim = S.state_dim(cfg.atr_period)
    n_cp = header.get("checkpoint_bar", {}).get("shape", [0])[0]
    _check_tensor(header, f"state file {st['file']}", "checkpoint_bar", "I64", (n_cp,))
    _check_tensor(header, f"state file {st['file']}", "checkpoint_state", "F64", (n_cp, dim))
    _check_tensor(header, f"state file {st['file']}", "end_state", "F64", (len(manifest["symbols"]), dim))
    return Store(path, manifest)


def _check_schema(obj: dict, schema: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: expected a JSON object; rebuild the store.")
    for key, typ in schema.items():
        if key not in obj:
            raise StoreError(f"{where}: required key '{key}' is missing; rebuild the store.")
        value = obj[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise StoreError(f"{where}: key '{key}' should be {typ.__name__}, got {type(value).__name__}; "
                             "rebuild the store.")


def _check_layout(manifest: dict, mpath: Path, n: int) -> None:
    """Segments and shards must each tile bars 0..n in order, without gaps or overlaps."""
    for what, items, keys in (("series", manifest["series"], _SERIES_KEYS), ("shards", manifest["shards"], _SHARD_KEYS)):
        pos = 0
        for k, item in enumerate(items):
            _check_schema(item, keys, f"{mpath} {what}[{k}]")
            if item["first"] != pos or item["count"] < 1:
                raise StoreError(f"{mpath}: {what}[{k}] covers bars {item['first']}..+{item['count']} but bar {pos} "
                                 "comes next; the manifest is inconsistent, rebuild the store.")
            pos += item["count"]
        if pos != n:
            raise StoreError(f"{mpath}: {what} cover {pos} bars, n_bars says {n}; rebuild the store.")
    names = {s["name"] for s in manifest["series"]}
    if names != set(manifest["symbols"]):
        raise StoreError(f"{mpath}: symbols {manifest['symbols']} do not match the series names; rebuild the store.")


def _check_file(root: Path, record: dict, what: str, verify: bool) -> None:
    p = root / record["file"]
    if Path(record["file"]).name != record["file"]:
        raise StoreError(f"{what}: file name must not contain a path; the manifest is corrupt.")
    if not p.is_file():
        raise StoreError(f"{what} is missing from {root}; the store is incomplete, rebuild it.")
    size = p.stat().st_size
    if size != record["bytes"]:
        raise StoreError(f"{what} has {size} bytes but the manifest says {record['bytes']} (truncated or "
                         "replaced); rebuild the store.")
    if verify and sha256_file(p) != record["sha256"]:
        raise StoreError(f"{what} fails its SHA-256 checksum (the bytes changed since it was written); "
                         "rebuild the store.")


# --- statistics -------------------------------------------------------------------------


def feature_stats(feats: np.ndarray, valid: np.ndarray) -> dict:
    """Per-feature ``{min, max, mean, std, nonzero}`` over valid bars (float64 sums)."""
    out = {}
    v = np.asarray(valid, dtype=bool)
    for k, name in enumerate(FEATURE_NAMES):
        x = feats[v, k].astype(np.float64)
        if len(x) == 0:
            out[name] = {"min": None, "max": None, "mean": None, "std": None, "nonzero": None}
            continue
        out[name] = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
                     "std": float(x.std()), "nonzero": float(np.count_nonzero(x) / len(x))}
    return out


def swing_counts(swing: np.ndarray, symbol_of_bar: np.ndarray, n_symbols: int) -> np.ndarray:
    """``[S, 2] int64`` swing highs and lows confirmed per symbol, from the engine's ``[n] int8`` swing codes."""
    out = np.zeros((n_symbols, 2), dtype=np.int64)
    for code in (1, 2):
        out[:, code - 1] = np.bincount(symbol_of_bar[swing == code], minlength=n_symbols)
    return out


def swing_stats(highs: int, lows: int, bars: int) -> dict:
    """Swing confirmations: counts, per 1,000 bars, and bars per confirmed swing."""
    total = int(highs) + int(lows)
    return {"highs": int(highs), "lows": int(lows), "per_1000_bars": 1000.0 * total / max(bars, 1),
            "bars_per_swing": (bars / total) if total else None}


def store_stats(feats, valid, symbol_of_bar, symbols, counts: np.ndarray) -> dict:
    """The manifest ``stats`` record, overall and per symbol.

    Args:
        feats: ``[n, 10] float32``; valid: ``[n] bool``; symbol_of_bar: ``[n] int64``.
        symbols: the ``S`` symbol names; counts: ``[S, 2]`` swing highs and lows per symbol.
    """
    per_symbol = {}
    for k, name in enumerate(symbols):
        sel = symbol_of_bar == k
        bars = int(sel.sum())
        per_symbol[name] = {"bars": bars, "valid_bars": int(valid[sel].sum()),
                            "features": feature_stats(feats[sel], valid[sel]),
                            "swings": swing_stats(counts[k, 0], counts[k, 1], bars)}
    total = counts.sum(axis=0)
    return {"bars": int(len(valid)), "valid_bars": int(valid.sum()),
            "valid_fraction": float(valid.mean()) if len(valid) else 0.0,
            "features": feature_stats(feats, valid), "swings": swing_stats(total[0], total[1], len(valid)),
            "per_symbol": per_symbol}


def split_counts(valid, split_ids, segment_bounds, K) -> dict:
    """Bars and usable windows per split."""
    starts = usable_starts(valid, split_ids, segment_bounds, K)
    out = {}
    for k, name in enumerate(splits_mod.SPLIT_NAMES):
        out[name] = {"bars": int(np.count_nonzero(split_ids == k)),
                     "windows": int(np.count_nonzero(starts & (split_ids == k)))}
    return out


# --- writing ----------------------------------------------------------------------------


def checkpoint_positions(segment_bounds: np.ndarray, shard_bounds: np.ndarray, every: int) -> np.ndarray:
    """Sorted bar positions whose preceding state is stored: segment starts, shard starts, every ``every`` bars."""
    pos = [np.asarray(segment_bounds[:-1]), np.asarray(shard_bounds[:-1])]
    for a, b in zip(segment_bounds[:-1], segment_bounds[1:]):
        pos.append(np.arange(a, b, every))
    return np.unique(np.concatenate(pos).astype(np.int64))


def shard_ranges(first: int, n: int, shard_bars: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each shard covering bars ``first .. first + n``."""
    return [(a, min(shard_bars, first + n - a)) for a in range(first, first + n, shard_bars)]


def write_shard(path: Path, feats, valid, timestamp, first: int) -> dict:
    """Write one shard; returns its manifest record (without the file name's directory)."""
    from safetensors.numpy import save_file

    save_file({"features": np.ascontiguousarray(feats, dtype=np.float32),
               "timestamp": np.ascontiguousarray(timestamp, dtype=np.int64),
               "valid": np.ascontiguousarray(valid, dtype=np.bool_)},
              str(path), metadata={"format": FORMAT, "version": str(VERSION), "first_bar": str(first)})
    return {"file": path.name, "first": int(first), "count": int(len(valid)), "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def write_state(path: Path, checkpoint_bar, checkpoint_state, end_state, every: int) -> dict:
    from safetensors.numpy import save_file

    save_file({"checkpoint_bar": np.ascontiguousarray(checkpoint_bar, dtype=np.int64),
               "checkpoint_state": np.ascontiguousarray(checkpoint_state, dtype=np.float64),
               "end_state": np.ascontiguousarray(end_state, dtype=np.float64)},
              str(path), metadata={"format": FORMAT, "version": str(VERSION)})
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "checkpoint_every": every}


def write_json_atomic(path: Path, obj, lines: bool = False) -> None:
    """Write ``obj`` as JSON (or, with ``lines``, a list as JSON lines) through a temporary sibling,
    an fsync and a rename: readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as f:
            if lines:
                f.writelines(json.dumps(x) + "\n" for x in obj)
            else:
                json.dump(obj, f, indent=1)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically: the commit point of a store."""
    write_json_atomic(path, manifest)


def source_record(bars: Bars) -> dict:
    """The manifest ``sources`` entry of some bars: where they came from and what ingest did."""
    return dict({"kind": "memory"}, **bars.source, ingest=bars.ingest)


def _is_store_or_empty(path: Path) -> bool:
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return json.loads((path / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a complete new store into place; an old one is removed only after the new one is there."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _segments(bars: Bars, seg_bounds: np.ndarray, ends: np.ndarray):
    """Symbols, series records, ``[n]`` symbol index per bar and ``[symbols, D]`` end states.

    A symbol cut at rolls has several consecutive segments: each after the first is marked
    ``"restart": true``: its engine state starts fresh, so its local bar index (``start_index``)
    starts at 0, while ``source_first`` counts from the symbol's first bar in the source. The
    symbol's end state is its last segment's (``--append`` continues it).
    """
    symbols = list(dict.fromkeys(bars.symbols))
    index = {name: k for k, name in enumerate(symbols)}
    series, before = [], {}
    last = np.zeros(len(symbols), dtype=np.int64)
    for s in range(bars.n_series):
        name = bars.symbols[s]
        count = int(seg_bounds[s + 1] - seg_bounds[s])
        done = before.get(name, 0)
        rec = {"name": name, "first": int(seg_bounds[s]), "count": count, "start_index": 0, "source": 0,
               "source_first": done}
        if name in before:
            rec["restart"] = True
        series.append(rec)
        before[name] = done + count
        last[index[name]] = s
    ids = np.array([index[name] for name in bars.symbols], dtype=np.int64)
    return symbols, series, np.repeat(ids, np.diff(seg_bounds)), np.asarray(ends)[last]


def precompute(bars_or_path, out_dir, config: FeatureConfig | None = None, engine: str = "auto",
               shard_bars: int = SHARD_BARS, splits=None, overwrite: bool = False, on_bad_bars: str = "error",
               checkpoint_every: int = CHECKPOINT_BARS, progress: Progress | None = None,
               reader: str = "auto", read_options: dict | None = None) -> Store:
    """Compute the features of some bars and write them as a new store.

    Args:
        bars_or_path: :class:`Bars`, or a parquet/CSV path for :func:`read_bars`.
        out_dir: the store directory to create.
        config: :class:`FeatureConfig` (default FEATURES.md).
        engine: ``auto``, ``reference``, ``host`` or ``gpu``.
        shard_bars: bars per shard.
        splits: None (fractions 0.9/0.05/0.05), ``{"fractions": [a, b, c]}`` or ``{"dates": [val, test]}``.
        overwrite: replace an existing store (only ever by a complete new one).
        on_bad_bars: ingest policy when reading a path (``error``, ``drop``, ``repair``).
        reader: how to read a path: ``auto`` (cudf for parquet where it imports, else pyarrow),
            ``pyarrow`` or ``cudf`` (:func:`read_bars`); the store is the same whichever reads.
        checkpoint_every: bars between stored engine states.
        progress: optional ``callback(stage, done, total)``.
        read_options: more :func:`read_bars` keywords for a path (``format``, ``timezone``,
            ``roll_column``, ``max_drop_fraction``...); a :class:`Bars` given directly is checked
            against the ingest rules (:func:`check_bars`).

    Returns:
        The opened new :class:`Store`.
    """
    progress = progress or _no_progress
    t_start = time.perf_counter()
    out = Path(out_dir)
    if shard_bars < 1 or checkpoint_every < 1:
        raise StoreError(f"shard_bars and checkpoint_every must be >= 1, got {shard_bars} and {checkpoint_every}.")
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; pass --overwrite to replace it (the old store stays until the "
                         "new one is complete) or choose another --output.")
    if not _is_store_or_empty(out):
        raise StoreError(f"{out} exists and is not a gpu-features store; refusing to replace it, choose another --output.")
    cfg = config or FeatureConfig()
    progress("read", 0, 1)
    if isinstance(bars_or_path, Bars):
        check_bars(bars_or_path)
        read = bars_or_path
    else:
        read = read_bars(bars_or_path, on_bad_bars, reader, **(read_options or {}))
    bars = read.on_host()  # timestamps and offsets for the store; the engine takes the prices where they were read
    progress("read", 1, 1)
    t_read = time.perf_counter()
    split_record = splits_mod.resolve(splits, bars.timestamp)

    seg_bounds = bars.series_bounds()
    shards = shard_ranges(0, bars.n, shard_bars)
    shard_bounds = np.array([a for a, _ in shards] + [bars.n], dtype=np.int64)
    cps = checkpoint_positions(seg_bounds, shard_bounds, checkpoint_every)
    progress("compute", 0, 1)
    run = engines.run(read.open, read.high, read.low, read.close, offsets=bars.offsets, config=cfg,
                      engine=engine, snapshot_at=cps)
    feats, valid, swing = to_numpy(run.features), to_numpy(run.valid), to_numpy(run.swing)
    snaps, ends = to_numpy(run.snapshots), to_numpy(run.end_states)
    progress("compute", 1, 1)
    t_compute = time.perf_counter()

    symbols, series, symbol_of_bar, ends = _segments(bars, seg_bounds, ends)
    ids = splits_mod.split_ids(bars.timestamp, split_record)
    split_record["counts"] = split_counts(valid, ids, seg_bounds, cfg.window_length)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        shard_records = []
        for k, (a, count) in enumerate(shards):
            name = f"bars-{k:05d}-of-{len(shards):05d}.safetensors"
            shard_records.append(write_shard(tmp / name, feats[a:a + count], valid[a:a + count],
                                             bars.timestamp[a:a + count], a))
            progress("write", k + 1, len(shards))
        state_record = write_state(tmp / STATE_FILE, cps, snaps, ends, checkpoint_every)
        t_write = time.perf_counter()
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": now_iso(),
            "feature_names": list(FEATURE_NAMES),
            "config": cfg.to_dict(),
            "n_bars": int(bars.n),
            "symbols": symbols,
            "sources": [source_record(bars)],
            "series": series,
            "shards": shard_records,
            "state": state_record,
            "splits": split_record,
            "engine": {"name": run.engine, "chunks": run.chunks, "fixups": run.fixups,
                       "kernel_seconds": run.kernel_seconds},
            "timings": {"read_s": t_read - t_start, "compute_s": t_compute - t_read,
                        "write_s": t_write - t_compute},
            "stats": store_stats(feats, valid, symbol_of_bar, symbols,
                                 swing_counts(swing, symbol_of_bar, len(symbols))),
        }
        manifest["timings"]["total_s"] = time.perf_counter() - t_start
        write_manifest(tmp / MANIFEST, manifest)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(out)
