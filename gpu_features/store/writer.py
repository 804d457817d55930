"""Writing stores: shard and state files, the manifest's numbers, and :func:`precompute`.

State checkpoints: the exact engine state before every segment start, every
shard start and every ``checkpoint_every`` bars of a segment. Any stretch
between two checkpoints can be recomputed alone by any engine (``verify``
does it with the reference engine and compares bits), and the end state of
each symbol lets ``--append`` continue a series without recomputing it.

Writes are atomic and serialized: a writer holds the store's lock
(:func:`gpu_features.fileio.writer_lock`, ``.NAME.lock`` beside the store),
cleans what killed writers left (:mod:`.recovery`), assembles a new store in
a hidden sibling directory, fsyncs every file and the directory, and swaps it
into place (:func:`gpu_features.fileio.replace_dir`); an existing store is
replaced only by a complete new one. :mod:`.append` writes new files beside
the old ones with this module's writers and commits by replacing the
manifest. Files get the permissions the umask gives, and equal inputs give
equal bytes (safetensors metadata sorted, manifest keys in a fixed order).
Named :func:`~gpu_features.fileio.fault_point` calls mark every step where the
fault-injection tests kill a writer.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import engines, splits as splits_mod
from ..arrays import to_numpy
from ..ingest import Bars, ReadSpec, check_bars, read_bars
from ..config import FEATURE_NAMES, FeatureConfig
from ..errors import StoreError
from ..fileio import (absolute, fault_point, fsync_dir, now_iso, replace_dir, temp_sibling, write_json_atomic,
                      writer_lock)
from ..progress import Progress, no_progress
from .format import (CHECKPOINT_BARS, FORMAT, MANIFEST, SHARD_BARS, STATE_FILE, VERSION, check_before_commit,
                     check_output, input_paths, shard_name)
from .reader import Store, open_store
from .recovery import clean, recover
from .report import EngineUse, PhaseClock
from .stats import split_counts, store_stats


def checkpoint_positions(segment_bounds: np.ndarray, shard_bounds: np.ndarray, every: int) -> np.ndarray:
    """Sorted bar positions whose preceding state is stored: segment starts, shard starts, every ``every`` bars."""
    pos = [np.asarray(segment_bounds[:-1]), np.asarray(shard_bounds[:-1])]
    for a, b in zip(segment_bounds[:-1], segment_bounds[1:]):
        pos.append(np.arange(a, b, every))
    return np.unique(np.concatenate(pos).astype(np.int64))


def shard_ranges(first: int, n: int, shard_bars: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each shard covering bars ``first .. first + n``."""
    return [(a, min(shard_bars, first + n - a)) for a in range(first, first + n, shard_bars)]


# safetensors' dtype codes of the arrays a store holds, little-endian as the format is.
_DTYPE_CODES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64", np.dtype("|b1"): "BOOL"}
WRITE_BLOCK = 1 << 20  # bytes hashed and then written while they are still in the core's cache


@functools.lru_cache(maxsize=None)
def _library_order(names_dtypes: tuple) -> tuple:
    """The order in which the safetensors library lays out tensors of these ``(name, dtype)`` (by dtype, then
    name), asked of the library itself with one-element arrays, so the direct writer follows it."""
    from safetensors.numpy import save

    data = save({name: np.zeros(1, dtype) for name, dtype in names_dtypes})
    (n,) = struct.unpack("<Q", data[:8])
    return tuple(k for k in json.loads(data[8:8 + n]) if k != "__metadata__")


def safetensors_parts(tensors: dict, metadata: dict) -> list:
    """A safetensors file as the buffers to write in order, without copying any array.

    The first buffer is the 8-byte header length and the header (metadata keys sorted, space-padded to a
    multiple of 8 bytes, tensors in the library's order); then each tensor's own memory as a byte view.
    Their concatenation is, byte for byte, what ``safetensors.numpy.save`` gives after
    :func:`.format.canonical_safetensors` (tests compare the two), without the two copies of every array
    that serializing in memory makes.

    Args:
        tensors: name -> C-contiguous little-endian array (float32, float64, int64 or bool).
        metadata: str -> str.
    """
    order = _library_order(tuple(sorted((name, a.dtype.str) for name, a in tensors.items())))
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    views, offset = [], 0
    for name in order:
        a = tensors[name]
        if not a.flags.c_contiguous:
            raise ValueError(f"tensor {name} must be C-contiguous to be written in place")
        header[name] = {"dtype": _DTYPE_CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        views.append(a.reshape(-1).view(np.uint8))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return [struct.pack("<Q", len(raw)) + raw, *views]


@dataclasses.dataclass
class WriteTimes:
    """Seconds one :func:`write_bytes` call spent hashing and writing (fsync included)."""

    hash_s: float = 0.0
    write_s: float = 0.0


def write_bytes(path: Path, parts, times: WriteTimes | None = None) -> dict:
    """Write the buffers ``parts`` to ``path`` in one pass and fsync it: where every shard and state file
    reaches disk, with the permissions the umask gives.

    Each block of :data:`WRITE_BLOCK` bytes is hashed and then written while it is in cache, so memory
    is read once and never copied in user space; both release the GIL, so threads write files in
    parallel. Returns ``{"bytes", "sha256"}`` of what was written (hashed from memory, never re-read);
    ``times`` gets the seconds spent in each.
    """
    times = times if times is not None else WriteTimes()
    digest, size = hashlib.sha256(), 0
    clock = time.perf_counter
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            size += len(view)
            for start in range(0, len(view), WRITE_BLOCK):
                block = view[start:start + WRITE_BLOCK]
                t0 = clock()
                digest.update(block)
                t1 = clock()
                while block:
                    block = block[os.write(fd, block):]
                times.hash_s += t1 - t0
                times.write_s += clock() - t1
        t0 = clock()
        os.fsync(fd)
        times.write_s += clock() - t0
    finally:
        os.close(fd)
    return {"bytes": size, "sha256": digest.hexdigest()}


def write_safetensors(path: Path, tensors: dict, metadata: dict, times: WriteTimes | None = None) -> dict:
    """Write ``tensors`` as a safetensors file in place (:func:`safetensors_parts`, :func:`write_bytes`);
    returns ``{"bytes", "sha256"}`` of the written bytes."""
    return write_bytes(path, safetensors_parts(tensors, metadata), times)


def _shard_tensors(feats, valid, timestamp, first: int) -> tuple[dict, dict]:
    return ({"features": np.ascontiguousarray(feats, dtype="<f4"),
             "timestamp": np.ascontiguousarray(timestamp, dtype="<i8"),
             "valid": np.ascontiguousarray(valid, dtype="|b1")},
            {"format": FORMAT, "version": str(VERSION), "first_bar": str(first)})


def write_shard(path: Path, feats, valid, timestamp, first: int) -> dict:
    """Write one shard; returns its manifest record (without the file name's directory)."""
    written = write_safetensors(path, *_shard_tensors(feats, valid, timestamp, first))
    return {"file": path.name, "first": int(first), "count": int(len(valid)), "bytes": written["bytes"],
            "sha256": written["sha256"]}


@dataclasses.dataclass
class WriteClock:
    """Wall seconds of the writing stages, for the manifest's timings (they add up to the writing time).

    ``serialize_s`` lays out the headers; hashing and writing run interleaved in the same threads, so the
    wall time of that stage is split between ``hash_s`` and ``write_s`` in proportion to the time the
    threads spent in each.
    """

    serialize_s: float = 0.0
    hash_s: float = 0.0
    write_s: float = 0.0

    def add_write_stage(self, wall_s: float, spent: list) -> None:
        """Add a stage of ``wall_s`` seconds in which threads spent ``spent`` (:class:`WriteTimes`)."""
        hashing, writing = sum(t.hash_s for t in spent), sum(t.write_s for t in spent)
        share = hashing / (hashing + writing) if hashing + writing > 0 else 0.5
        self.hash_s += wall_s * share
        self.write_s += wall_s * (1.0 - share)


def write_workers(n_files: int) -> int:
    """Threads for hashing and writing ``n_files`` files: two per core (while one waits for its file's fsync,
    the other hashes), at most 8. Files are written in place, so a thread holds no memory of its own."""
    return max(1, min(2 * (os.cpu_count() or 1), 8, n_files))


def write_shards(folder: Path, first_index: int, ranges: list[tuple[int, int]], bar0: int, feats, valid,
                 timestamp, written: list[Path], progress: Progress, fault: str = "precompute",
                 clock: WriteClock | None = None) -> list[dict]:
    """Write the shards ``ranges`` (store bar positions) of arrays that start at store bar ``bar0``.

    The files and records are those of :func:`write_shard`. Every file is written in place from the
    arrays (:func:`write_bytes`: no serialized copy in memory) by :func:`write_workers` threads, so
    memory holds nothing but the arrays themselves; ``clock`` gets the stage times. The fault points
    ``{fault}.after_shard_{k}`` follow each shard's write, in order. A failure is raised once the
    files in flight (one per thread) have finished; no file is started after it.

    Args:
        folder: where the files go; first_index: number of the first new shard file.
        ranges: ``(first, count)`` per shard, in store bars.
        feats ``[m, 10] f32``, valid ``[m] bool``, timestamp ``[m] i64``: bars ``bar0 .. bar0 + m``.
        written: every path is appended before it is written (so a caller can remove them on failure).
        clock: optional :class:`WriteClock` the stage times are added to.

    Returns:
        The shards' manifest records.
    """
    clock = clock if clock is not None else WriteClock()
    t0 = time.perf_counter()
    jobs = []
    for k, (a, count) in enumerate(ranges):
        lo, hi = a - bar0, a - bar0 + count
        jobs.append((folder / shard_name(first_index + k),
                     safetensors_parts(*_shard_tensors(feats[lo:hi], valid[lo:hi], timestamp[lo:hi], a))))
    t1 = time.perf_counter()
    clock.serialize_s += t1 - t0
    spent = [WriteTimes() for _ in jobs]
    written.extend(path for path, _ in jobs)
    records = []
    workers = write_workers(len(jobs))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # At most one file per thread in flight, taken in order: after a failure no new file is started.
        def submit(k: int):
            return pool.submit(write_bytes, jobs[k][0], jobs[k][1], spent[k])

        futures = [submit(k) for k in range(min(workers, len(jobs)))]
        for k, ((path, _), (a, count)) in enumerate(zip(jobs, ranges)):
            done = futures[k].result()
            if k + workers < len(jobs):
                futures.append(submit(k + workers))
            records.append({"file": path.name, "first": int(a), "count": int(count), "bytes": done["bytes"],
                            "sha256": done["sha256"]})
            fault_point(f"{fault}.after_shard_{k}")
            progress("write", k + 1, len(ranges))
    clock.add_write_stage(time.perf_counter() - t1, spent)
    return records


def write_state(path: Path, checkpoint_bar, checkpoint_state, end_state, every: int) -> dict:
    """Write the state file; returns its manifest record."""
    written = write_safetensors(path, {"checkpoint_bar": np.ascontiguousarray(checkpoint_bar, dtype="<i8"),
                                       "checkpoint_state": np.ascontiguousarray(checkpoint_state, dtype="<f8"),
                                       "end_state": np.ascontiguousarray(end_state, dtype="<f8")},
                                {"format": FORMAT, "version": str(VERSION)})
    return {"file": path.name, "bytes": written["bytes"], "sha256": written["sha256"], "checkpoint_every": every}


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically: the commit point of a store."""
    write_json_atomic(path, manifest)


def source_record(bars: Bars) -> dict:
    """The manifest ``sources`` entry of some bars: where they came from and what ingest did."""
    return dict({"kind": "memory"}, **bars.source, ingest=bars.ingest)


def manifest_numbers(moments: engines.Moments, valid, timestamp, segments: list[dict], symbols: list[str],
                     split_record: dict, K: int, swings_before=None) -> tuple[dict, dict]:
    """The ``splits`` record with its bar and window counts, and the ``stats`` record, of a whole store.

    Args:
        moments: ``engines.moments`` of every bar of the store (numpy arrays), blocks cut at the segments.
        valid ``[n] bool``, timestamp ``[n] i64``: every bar of the store.
        segments: the manifest's series entries (``name``, ``first``, ``count``) in bar order.
        symbols: the ``S`` symbol names; split_record: the boundaries (its counts are replaced).
        K: window length; swings_before: optional ``[S, 2]`` swing counts of bars not in ``moments``' swings.
    """
    n = len(valid)
    seg_bounds = np.array([g["first"] for g in segments] + [n], dtype=np.int64)
    splits = dict(split_record)
    splits["counts"] = split_counts(valid, splits_mod.split_ids(timestamp, splits), seg_bounds, K)
    return splits, store_stats(moments, segments, symbols, swings_before)


def host_moments(m: engines.Moments) -> engines.Moments:
    """``m`` with its tables on the host (one transfer of ``[blocks, 3]`` and ``[blocks, 10, 6]``)."""
    return dataclasses.replace(m, counts=to_numpy(m.counts), moments=to_numpy(m.moments))


def _segments(bars: Bars, seg_bounds: np.ndarray, ends: np.ndarray):
    """Symbols, series records and ``[symbols, D]`` end states.

    A symbol cut at rolls has several consecutive segments: each after the first is marked
    ``"restart": true``: its engine state starts fresh, so its local bar index (``start_index``)
    starts at 0, while ``source_first`` counts from the symbol's first bar in the source. The
    symbol's end state is its last segment's (``--append`` continues it).
    """
    symbols = list(dict.fromkeys(bars.segment_names))
    index = {name: k for k, name in enumerate(symbols)}
    series, before = [], {}
    last = np.zeros(len(symbols), dtype=np.int64)
    for s in range(bars.n_segments):
        name = bars.segment_names[s]
        count = int(seg_bounds[s + 1] - seg_bounds[s])
        done = before.get(name, 0)
        rec = {"name": name, "first": int(seg_bounds[s]), "count": count, "start_index": 0, "source": 0,
               "source_first": done}
        if name in before:
            rec["restart"] = True
        series.append(rec)
        before[name] = done + count
        last[index[name]] = s
    return symbols, series, np.asarray(ends)[last]


def precompute(bars_or_path, out_dir, config: FeatureConfig | None = None, engine: str = "auto",
               shard_bars: int = SHARD_BARS, splits=None, overwrite: bool = False, on_bad_bars: str = "error",
               checkpoint_every: int = CHECKPOINT_BARS, progress: Progress | None = None,
               reader: str = "auto", spec: ReadSpec | None = None) -> Store:
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
        spec: how to read a path (:class:`~gpu_features.ingest.ReadSpec`: ``format``, ``timezone``,
            ``roll_column``, ``max_drop_fraction``...).

    Returns:
        The opened new :class:`Store`; ``Store.report`` says what this build did.
    """
    progress = progress or no_progress
    clock = PhaseClock()
    if shard_bars < 1 or checkpoint_every < 1:
        raise StoreError(f"shard_bars and checkpoint_every must be >= 1, got {shard_bars} and {checkpoint_every}.")
    inputs = input_paths(bars_or_path)
    if absolute(out_dir).name:
        recover(absolute(out_dir))  # a replace cut between its renames is put right first, never built over
    out = check_output(out_dir, overwrite, inputs)  # early, so a refusal costs no compute; again under the lock
    cfg = config or FeatureConfig()
    progress("read", 0, 1)
    if isinstance(bars_or_path, Bars):
        check_bars(bars_or_path)
        read = bars_or_path
    else:
        read = read_bars(bars_or_path, on_bad_bars, reader, spec=spec)
    bars = read.on_host()  # timestamps and offsets for the store; the engine takes the prices where they were read
    # The split boundaries before the features exist: with several series np.partition copies the timestamps,
    # which would otherwise add to the peak of features and prices held together (and a bad spec costs no compute).
    split_record = splits_mod.resolve(splits, bars.timestamp)
    progress("read", 1, 1)
    clock.lap("read")
    seg_bounds = bars.segment_bounds()
    shards = shard_ranges(0, bars.n, shard_bars)
    shard_bounds = np.array([a for a, _ in shards] + [bars.n], dtype=np.int64)
    cps = checkpoint_positions(seg_bounds, shard_bounds, checkpoint_every)
    progress("compute", 0, 1)
    run = engines.run(read.open, read.high, read.low, read.close, offsets=bars.offsets, config=cfg,
                      engine=engine, snapshot_at=cps)
    feats, valid = to_numpy(run.features), to_numpy(run.valid)
    snaps, ends = to_numpy(run.snapshots), to_numpy(run.end_states)
    progress("compute", 1, 1)
    clock.lap("compute")

    # Statistics where the features are (the GPU engine's device, else the host), one small table back.
    moments = host_moments(engines.moments(run.features, run.valid, run.swing, offsets=bars.offsets,
                                           engine=run.engine, atr_period=cfg.atr_period))
    engine = EngineUse.of_run(run)
    del run  # the device copies go now
    symbols, series, ends = _segments(bars, seg_bounds, ends)
    split_record, stats = manifest_numbers(moments, valid, bars.timestamp, series, symbols, split_record,
                                           cfg.window_length)
    clock.lap("stats")

    out.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "precompute"):
        check_output(out, overwrite, inputs)
        clean(out, None)  # stale .NAME.tmp-* / .NAME.old-* of killed writers
        tmp = temp_sibling(out, "tmp")
        tmp.mkdir()
        try:
            fault_point("precompute.before_shards")
            clock.lap("lock")
            writing = WriteClock()
            shard_records = write_shards(tmp, 0, shards, 0, feats, valid, bars.timestamp, [], progress,
                                         clock=writing)
            t0 = time.perf_counter()
            state_record = write_state(tmp / STATE_FILE, cps, snaps, ends, checkpoint_every)
            writing.write_s += time.perf_counter() - t0
            fault_point("precompute.after_state")
            # Thread start-up and the rest between the writing stages is "other" (the manifest write and the
            # swap after it take milliseconds).
            clock.lap_parts({"serialize": writing.serialize_s, "hash": writing.hash_s, "write": writing.write_s})
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
                "engine": engine.record(),
                "timings": clock.record(),
                "stats": stats,
            }
            check_before_commit(tmp, manifest, out, cps)  # what every reader checks, before anything is swapped in
            fsync_dir(tmp)
            fault_point("precompute.before_manifest")
            write_manifest(tmp / MANIFEST, manifest)
            fault_point("precompute.after_manifest")
            replace_dir(tmp, out)  # the commit point
            fault_point("precompute.after_commit")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return open_store(out, checksums=False)  # the hashes were just taken from the written bytes
