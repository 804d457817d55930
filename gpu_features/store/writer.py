"""Writing stores: shard and state files, the manifest's numbers, and :func:`precompute`.

State checkpoints: the exact engine state before every segment start, every
shard start and every ``checkpoint_every`` bars of a segment. Any stretch
between two checkpoints can be recomputed alone by any engine (``verify``
does it with the reference engine and compares bits), and the end state of
each symbol lets ``--append`` continue a series without recomputing it.

Writes are atomic: a new store is assembled in a hidden sibling directory and
renamed into place; an existing store is replaced only by a complete new one.
:mod:`.append` writes new files beside the old ones with this module's
writers and commits by replacing the manifest.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .. import engines, splits as splits_mod
from ..arrays import to_numpy
from ..bars import Bars, check_bars, read_bars
from ..config import FEATURE_NAMES, FeatureConfig
from ..errors import StoreError
from ..fileio import now_iso, replace_dir, sha256_file, temp_sibling, write_json_atomic
from ..progress import Progress, no_progress
from .format import CHECKPOINT_BARS, FORMAT, MANIFEST, SHARD_BARS, STATE_FILE, VERSION, shard_name
from .reader import Store, open_store
from .stats import split_counts, store_stats, swing_counts


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


def write_shards(folder: Path, first_index: int, ranges: list[tuple[int, int]], bar0: int, feats, valid,
                 timestamp, written: list[Path], progress: Progress) -> list[dict]:
    """Write the shards ``ranges`` (store bar positions) of arrays that start at store bar ``bar0``.

    Args:
        folder: where the files go; first_index: number of the first new shard file.
        ranges: ``(first, count)`` per shard, in store bars.
        feats ``[m, 10] f32``, valid ``[m] bool``, timestamp ``[m] i64``: bars ``bar0 .. bar0 + m``.
        written: every path is appended before it is written (so a caller can remove them on failure).

    Returns:
        The shards' manifest records.
    """
    records = []
    for k, (a, count) in enumerate(ranges):
        path = folder / shard_name(first_index + k)
        written.append(path)
        lo, hi = a - bar0, a - bar0 + count
        records.append(write_shard(path, feats[lo:hi], valid[lo:hi], timestamp[lo:hi], a))
        progress("write", k + 1, len(ranges))
    return records


def write_state(path: Path, checkpoint_bar, checkpoint_state, end_state, every: int) -> dict:
    """Write the state file; returns its manifest record."""
    from safetensors.numpy import save_file

    save_file({"checkpoint_bar": np.ascontiguousarray(checkpoint_bar, dtype=np.int64),
               "checkpoint_state": np.ascontiguousarray(checkpoint_state, dtype=np.float64),
               "end_state": np.ascontiguousarray(end_state, dtype=np.float64)},
              str(path), metadata={"format": FORMAT, "version": str(VERSION)})
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "checkpoint_every": every}


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically: the commit point of a store."""
    write_json_atomic(path, manifest)


def source_record(bars: Bars) -> dict:
    """The manifest ``sources`` entry of some bars: where they came from and what ingest did."""
    return dict({"kind": "memory"}, **bars.source, ingest=bars.ingest)


def manifest_numbers(feats, valid, timestamp, segments: list[dict], symbols: list[str], split_record: dict,
                     K: int, swings: np.ndarray) -> tuple[dict, dict]:
    """The ``splits`` record with its bar and window counts, and the ``stats`` record, of a whole store.

    Args:
        feats ``[n, 10] f32``, valid ``[n] bool``, timestamp ``[n] i64``: every bar of the store.
        segments: the manifest's series entries (``name``, ``first``, ``count``) in bar order.
        symbols: the ``S`` symbol names; split_record: the boundaries (its counts are replaced).
        K: window length; swings: ``[S, 2] int64`` swing highs and lows per symbol.
    """
    n = len(valid)
    seg_bounds = np.array([g["first"] for g in segments] + [n], dtype=np.int64)
    index = {name: k for k, name in enumerate(symbols)}
    symbol_of_bar = np.repeat(np.array([index[g["name"]] for g in segments], dtype=np.int64),
                              [g["count"] for g in segments])
    splits = dict(split_record)
    splits["counts"] = split_counts(valid, splits_mod.split_ids(timestamp, splits), seg_bounds, K)
    return splits, store_stats(feats, valid, symbol_of_bar, symbols, swings)


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
        bars_or_path: :class:`Bars` (checked against the ingest rules by :func:`check_bars`), or what
            :func:`read_bars` reads: a file, several files, a directory, a glob, or a table.
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
        read_options: more :func:`read_bars` keywords (``format``, ``timezone``, ``roll_column``,
            ``max_drop_fraction``...).

    Returns:
        The opened new :class:`Store`.
    """
    progress = progress or no_progress
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

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out, "tmp")
    tmp.mkdir()
    try:
        shard_records = write_shards(tmp, 0, shards, 0, feats, valid, bars.timestamp, [], progress)
        state_record = write_state(tmp / STATE_FILE, cps, snaps, ends, checkpoint_every)
        t_write = time.perf_counter()
        split_record, stats = manifest_numbers(feats, valid, bars.timestamp, series, symbols, split_record,
                                               cfg.window_length, swing_counts(swing, symbol_of_bar, len(symbols)))
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
            "stats": stats,
        }
        manifest["timings"]["total_s"] = time.perf_counter() - t_start
        write_manifest(tmp / MANIFEST, manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(out)
