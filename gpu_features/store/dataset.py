"""Datasets: part stores built apart (one per task of a distributed build) read as one store.

Layout of a dataset directory (format ``gpu-features-dataset``, version 1)::

    dataset.json        the commit point: format, version, config, splits, and the parts in order,
                        each with its symbols, bars and its manifest's size and SHA-256
    part-00000/         a complete store (manifest.json, bars-*.safetensors, state.safetensors)
    part-00001/         ...

Every part holds whole symbols (a symbol lives in exactly one part), was built
with the dataset's config, and is split at the dataset's boundary timestamps,
which the driver resolved once from every input bar (:func:`~gpu_features.splits.resolve_counted`),
so no symbol's test period leaks into another's training period.

Reading: :func:`open_store` is the store package's public opener. On a
directory holding ``dataset.json`` it returns a :class:`Dataset`: a
:class:`~gpu_features.store.reader.Store` whose manifest is the parts'
manifests laid end to end (bars, segments, sources and shards, part by part;
shard files named ``part-XXXXX/bars-....safetensors``), so every reader
(verify, inspect, plot, export, windows and the trainer) uses it unchanged.
Each part is opened and checked like a store, and its manifest must have the
size and SHA-256 the dataset recorded (always checked: it is small, and it
vouches for the part's shard checksums).

Writing: a build writes parts into a hidden sibling directory, then
:func:`write_dataset`, then renames the directory into place
(:mod:`gpu_features.distributed`). :func:`append_dataset` appends to the parts
of the new bars' symbols (hard-linked copies under new names, so the old
dataset stays whole until the new ``dataset.json`` replaces it); new symbols go
to a new part. Nothing here imports Dask.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import splits as splits_mod
from ..bars import Bars, read_bars, read_kwargs
from ..config import FEATURE_NAMES, FeatureConfig
from ..errors import ConfigError, StoreError
from ..fileio import absolute, lock_path, now_iso, sha256_file, write_json_atomic, writer_lock
from ..progress import Progress, no_progress
from . import reader
from .append import append_store, symbol_names
from .format import (DATASET_FORMAT, DATASET_MANIFEST, DATASET_VERSION, MANIFEST, SHARD_BARS, check_file,
                     check_inputs_outside, check_schema, input_paths, read_json_record)
from .reader import Store
from .stats import merge_stat_records, split_counts
from .writer import precompute, write_manifest


_DATASET_SCHEMA = {"format": str, "version": int, "created": str, "config": dict, "splits": dict, "parts": list,
                   "build": dict}
_PART_KEYS = {"dir": str, "symbols": list, "n_bars": int, "manifest_bytes": int, "manifest_sha256": str}


def part_name(index: int) -> str:
    """Directory name of the ``index``-th part."""
    return f"part-{index:05d}"


def is_dataset(path) -> bool:
    """True when ``path`` holds a dataset manifest."""
    return (Path(path) / DATASET_MANIFEST).is_file()


# --- reading ---------------------------------------------------------------------------------


def read_dataset_manifest(path: Path) -> dict:
    """Read and check ``path/dataset.json``: size, JSON, format, version (:func:`.format.read_json_record`),
    schema, part names."""
    mpath = path / DATASET_MANIFEST
    record = read_json_record(mpath, DATASET_FORMAT, DATASET_VERSION, "dataset", "dataset record")
    check_schema(record, _DATASET_SCHEMA, str(mpath))
    if not record["parts"]:
        raise StoreError(f"{mpath}: the dataset lists no parts; rebuild it.")
    seen: dict[str, str] = {}
    for k, entry in enumerate(record["parts"]):
        check_schema(entry, _PART_KEYS, f"{mpath} parts[{k}]")
        if Path(entry["dir"]).name != entry["dir"] or entry["dir"].startswith("."):
            raise StoreError(f"{mpath} parts[{k}]: part directory {entry['dir']!r} must be a plain name inside the "
                             "dataset; the manifest is corrupt.")
        for name in entry["symbols"]:
            if name in seen:
                raise StoreError(f"{mpath}: symbol {name} is in parts {seen[name]} and {entry['dir']}; a symbol "
                                 "must live in one part, rebuild the dataset.")
            seen[name] = entry["dir"]
    return record


def open_store(path, *args, **kwargs) -> Store:
    """Open a store, or a dataset of part stores as one :class:`Store` (see module doc).

    Args and Raises: as :func:`gpu_features.store.reader.open_store`, whose arguments
    (``checksums``...) apply to every part of a dataset.
    """
    if is_dataset(path):
        return open_dataset(path, *args, **kwargs)
    return reader.open_store(path, *args, **kwargs)


def open_dataset(path, *args, **kwargs) -> "Dataset":
    """Open and check a dataset: its manifest, each part's manifest checksum, each part as a store."""
    path = Path(path)
    record = read_dataset_manifest(path)
    parts = []
    for entry in record["parts"]:
        folder = path / entry["dir"]
        if not (folder / MANIFEST).is_file():
            raise StoreError(f"{path}: part {entry['dir']} has no {MANIFEST}; the dataset is incomplete, rebuild it.")
        check_file(folder, {"file": MANIFEST, "bytes": entry["manifest_bytes"], "sha256": entry["manifest_sha256"]},
                   f"{path}: the manifest of part {entry['dir']}", checksum=True)
        parts.append(reader.open_store(folder, *args, **kwargs))
    return Dataset(path, record, parts)


class Dataset(Store):
    """A dataset read as one store: bars, segments and shards of its parts end to end.

    Attributes:
        record: the checked ``dataset.json``.
        parts: the opened part :class:`Store` objects, in order.
    """

    def __init__(self, path: Path, record: dict, parts: list[Store]):
        super().__init__(path, combine_manifests(record, parts, Path(path) / DATASET_MANIFEST))
        self.record = record
        self.parts = parts

    def part_offsets(self) -> np.ndarray:
        """``[P + 1] int64``: part ``p`` holds bars ``offsets[p] : offsets[p + 1]`` of the dataset."""
        return np.concatenate([[0], np.cumsum([p.n_bars for p in self.parts])]).astype(np.int64)

    def states(self) -> dict[str, np.ndarray]:
        """The parts' state files end to end (checkpoint bars shifted to dataset positions)."""
        got = [p.states() for p in self.parts]
        offsets = self.part_offsets()
        return {"checkpoint_bar": np.concatenate([g["checkpoint_bar"] + offsets[k] for k, g in enumerate(got)]),
                "checkpoint_state": np.concatenate([g["checkpoint_state"] for g in got]),
                "end_state": np.concatenate([g["end_state"] for g in got])}

    def file_records(self) -> list[tuple[Path, dict, str]]:
        """Every shard and state file of every part: ``(folder, record, description)``."""
        return [(root, rec, f"{part.path.name}/{what}") for part in self.parts
                for root, rec, what in part.file_records()]


def combine_manifests(record: dict, parts: list[Store], where) -> dict:
    """One store manifest for the parts of a dataset, laid end to end (refuses parts that do not belong).

    ``where``: the dataset's ``dataset.json``, named in the refusals.
    """
    series, shards, sources, symbols, appends = [], [], [], [], []
    bar0 = src0 = 0
    boundaries = record["splits"]["boundaries"]
    try:
        config = FeatureConfig.from_dict(record["config"])
    except ConfigError as err:
        raise StoreError(f"{where}: bad feature config ({err}); rebuild the dataset.") from None
    for entry, part in zip(record["parts"], parts):
        d = entry["dir"]
        if part.config != config:
            raise StoreError(f"{where}: part {d} was built with another feature config than the dataset's; "
                             "rebuild the dataset.")
        if part.splits["boundaries"] != boundaries:
            raise StoreError(f"{where}: part {d} is split at other boundaries than the dataset; rebuild the dataset.")
        if part.symbols != list(entry["symbols"]) or part.n_bars != entry["n_bars"]:
            raise StoreError(f"{where}: part {d} holds {part.n_bars} bars of {part.symbols}, but the dataset lists "
                             f"{entry['n_bars']} bars of {entry['symbols']}; rebuild the dataset.")
        series += [dict(g, first=g["first"] + bar0, source=g["source"] + src0) for g in part.manifest["series"]]
        shards += [dict(s, file=f"{d}/{s['file']}", first=s["first"] + bar0) for s in part.manifest["shards"]]
        appends += [dict(a, source=a["source"] + src0, part=d) for a in part.appends]
        sources += part.sources
        symbols += part.symbols
        bar0 += part.n_bars
        src0 += len(part.sources)
    counts = {name: {key: sum(p.splits["counts"][name][key] for p in parts) for key in ("bars", "windows")}
              for name in splits_mod.SPLIT_NAMES}
    engines = [p.engine for p in parts]
    return {
        "format": parts[0].manifest["format"], "version": parts[0].manifest["version"], "created": record["created"],
        "feature_names": list(FEATURE_NAMES), "config": config.to_dict(), "n_bars": bar0, "symbols": symbols,
        "sources": sources, "series": series, "shards": shards,
        "state": {"file": f"{len(parts)} part state files", "bytes": sum(int(p.state_record["bytes"]) for p in parts),
                  "sha256": "", "checkpoint_every": parts[0].state_record["checkpoint_every"]},
        "splits": dict(record["splits"], counts=counts),
        "engine": {"name": ",".join(sorted({e["name"] for e in engines})), "chunks": sum(e["chunks"] for e in engines),
                   "fixups": sum(e["fixups"] for e in engines),
                   "kernel_seconds": sum(e["kernel_seconds"] for e in engines)},
        "timings": record["build"].get("timings") or {k: sum(p.timings.get(k, 0.0) for p in parts)
                                                      for k in ("read_s", "compute_s", "write_s", "total_s")},
        "stats": combine_stats([p.stats for p in parts]),
        "appends": appends,
    }


def combine_stats(parts: list[dict]) -> dict:
    """The ``stats`` record of several stores' bars together, from their own records.

    Counts and extremes add up exactly; means and standard deviations combine in
    float64 (:func:`.stats.merge_stat_records`, Chan's pairwise update), equal to a
    recomputation to ~1e-15 relative.
    """
    per_symbol: dict = {}
    for st in parts:
        per_symbol.update(st["per_symbol"])
    return dict(merge_stat_records(parts), per_symbol=per_symbol)


# --- writing ---------------------------------------------------------------------------------


def select_symbols(bars: Bars, names) -> Bars:
    """The series of ``bars`` named in ``names`` (every segment of each), in their order; source record kept.

    The source record still names the whole file, so ``verify`` re-reads it and takes
    these symbols' series by name.
    """
    names = set(names)
    keep = [s for s, name in enumerate(bars.symbols) if name in names]
    if len(keep) == bars.n_series:
        return bars
    bounds = bars.series_bounds()
    idx = np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in keep]) if keep else np.zeros(0, np.int64)
    sizes = np.array([bounds[s + 1] - bounds[s] for s in keep], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    cols = {k: getattr(bars, k)[idx] for k in ("open", "high", "low", "close", "timestamp")}
    return dataclasses.replace(bars, **cols, offsets=offsets, symbols=tuple(bars.symbols[s] for s in keep))


def set_part_splits(part_dir, split_record: dict) -> None:
    """Give a part store the dataset's splits: its manifest's ``splits`` record is rewritten atomically, with
    the bar and window counts of its own bars (features are independent of the splits)."""
    st = reader.open_store(part_dir)
    rec = {k: v for k, v in split_record.items() if k != "counts"}
    counts = split_counts(st.array("valid"), splits_mod.split_ids(st.timestamps(), rec), st.segment_bounds(),
                          st.config.window_length)
    write_manifest(Path(part_dir) / MANIFEST, dict(st.manifest, splits=dict(rec, counts=counts)))


def write_dataset(folder: Path, parts: list[dict], split_record: dict, config: FeatureConfig, build: dict) -> dict:
    """Write ``folder/dataset.json`` (atomically) listing the part stores in ``parts`` order.

    Args:
        folder: the dataset directory (or its hidden temporary sibling).
        parts: ``{"dir", "symbols", "n_bars"}`` per part; the part manifests must be final.
        split_record: the resolved splits (boundaries); config: the features' config.
        build: how it was built (inputs, tasks, cluster, timings), recorded as is.

    Returns:
        The dataset record written.
    """
    entries = []
    for p in parts:
        mpath = folder / p["dir"] / MANIFEST
        entries.append({"dir": p["dir"], "symbols": list(p["symbols"]), "n_bars": int(p["n_bars"]),
                        "manifest_bytes": mpath.stat().st_size, "manifest_sha256": sha256_file(mpath)})
    record = {"format": DATASET_FORMAT, "version": DATASET_VERSION, "created": now_iso(), "config": config.to_dict(),
              "splits": {k: v for k, v in split_record.items() if k != "counts"}, "parts": entries, "build": build}
    write_json_atomic(folder / DATASET_MANIFEST, record)
    return record


def append_dataset(path, bars_or_path, engine: str = "auto", on_bad_bars: str = "error", on_overlap: str = "error",
                   shard_bars: int = SHARD_BARS, progress: Progress | None = None,
                   read_options: dict | None = None) -> "Dataset":
    """Append newer bars to a dataset: each symbol's bars to the part that holds it, new symbols to a new part.

    Each touched part is copied (hard links: nothing is rewritten in place) under a new
    name and extended with :func:`~gpu_features.store.append_store`; ``dataset.json`` is
    then replaced, and only then are the old part directories removed, so a failure
    leaves the old dataset intact. Splits keep the dataset's boundaries.

    Args:
        path: the dataset; bars_or_path: :class:`Bars`, or files for :func:`read_bars`.
        engine, on_bad_bars, on_overlap, shard_bars, progress, read_options: as for
            :func:`~gpu_features.store.append_store`.

    Returns:
        The reopened :class:`Dataset`.
    """
    path = absolute(path)
    check_inputs_outside(path, input_paths(bars_or_path), "dataset")
    with writer_lock(path, "precompute --append"):
        return _append_locked(path, bars_or_path, engine, on_bad_bars, on_overlap, shard_bars,
                              progress or no_progress, read_options)


def _append_locked(path: Path, bars_or_path, engine, on_bad_bars, on_overlap, shard_bars, progress,
                   read_options) -> "Dataset":
    t0 = time.perf_counter()
    ds = open_dataset(path, checksums=True)
    if isinstance(bars_or_path, Bars):
        new = bars_or_path
    else:
        if read_options is None:  # read like the dataset's inputs were read
            first = next((s for s in ds.sources if s.get("kind") in ("file", "files")), {})
            read_options = read_kwargs(first.get("read"))
        new = read_bars(bars_or_path, on_bad_bars=on_bad_bars, **read_options)
    new = dataclasses.replace(new, symbols=tuple(symbol_names(ds, new, bars_or_path)))
    names = list(dict.fromkeys(new.symbols))
    owner = {name: k for k, entry in enumerate(ds.record["parts"]) for name in entry["symbols"]}
    touched: dict[int, list[str]] = {}
    fresh = []
    for name in names:
        (touched.setdefault(owner[name], []) if name in owner else fresh).append(name)
    generation = len(ds.record["build"].get("appends", [])) + 1
    entries = [dict(e) for e in ds.record["parts"]]
    made: list[Path] = []
    skipped = 0  # bars of the new input already in their part (--on-overlap skip), counted on screen
    runs: list[tuple[dict, dict]] = []  # (engine, timings) of every part this append wrote
    jobs = len(touched) + bool(fresh)
    try:
        for done, (k, syms) in enumerate(sorted(touched.items())):
            old = entries[k]["dir"]
            target = path / f"{old.split('-g')[0]}-g{generation:03d}"
            made.append(target)
            shutil.copytree(path / old, target, copy_function=os.link)  # new files only; the manifest is replaced
            st = append_store(target, select_symbols(new, syms), engine=engine, on_overlap=on_overlap,
                              shard_bars=shard_bars)
            entries[k] = {"dir": target.name, "symbols": st.symbols, "n_bars": st.n_bars}
            skipped += int(st.appends[-1]["skipped_overlap"])
            runs.append((st.appends[-1]["engine"], st.appends[-1]["timings"]))
            progress("parts", done + 1, jobs)
        if fresh:
            target = path / f"{part_name(len(entries))}-g{generation:03d}"
            made.append(target)
            st = precompute(select_symbols(new, fresh), target, config=ds.config, engine=engine, shard_bars=shard_bars,
                            splits={"dates": [ds.splits["boundaries"][1][0], ds.splits["boundaries"][2][0]]})
            set_part_splits(target, ds.record["splits"])
            entries.append({"dir": target.name, "symbols": st.symbols, "n_bars": st.n_bars})
            runs.append((st.engine, st.timings))
            progress("parts", jobs, jobs)
        build = dict(ds.record["build"])
        build["appends"] = build.get("appends", []) + [{
            "created": now_iso(), "bars": int(new.n), "new_bars": int(new.n) - skipped, "skipped_overlap": skipped,
            "symbols": names, "new_symbols": fresh,
            "parts": [entries[k]["dir"] for k in sorted(touched)] + ([entries[-1]["dir"]] if fresh else []),
            **_summed_runs(runs, time.perf_counter() - t0)}]
        record = write_dataset(path, [{k: e[k] for k in ("dir", "symbols", "n_bars")} for e in entries],
                               ds.record["splits"], ds.config, build)  # the commit point
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
            lock_path(folder).unlink(missing_ok=True)
        raise
    for folder in made:  # parts are written only under the dataset's own lock: their locks are not needed
        lock_path(folder).unlink(missing_ok=True)
    live = {e["dir"] for e in record["parts"]}
    for entry in ds.record["parts"]:
        if entry["dir"] not in live:
            shutil.rmtree(path / entry["dir"], ignore_errors=True)
            lock_path(path / entry["dir"]).unlink(missing_ok=True)  # nobody writes a part no longer listed
    return open_dataset(path)


def _summed_runs(runs: list[tuple[dict, dict]], total_s: float) -> dict:
    """The engine and timings of an append over several parts: counts and phases summed over the parts, the
    rest of the wall time (reading the input, copying the parts, the dataset record) as ``other_s``, so the
    phases add up to ``total_s``."""
    names = sorted({e["name"] for e, _ in runs})
    engine = {"name": "+".join(names) or "none", "chunks": sum(int(e.get("chunks", 0)) for e, _ in runs),
              "fixups": sum(int(e.get("fixups", 0)) for e, _ in runs),
              "kernel_seconds": sum(float(e.get("kernel_seconds", 0.0)) for e, _ in runs)}
    timings: dict[str, float] = {}
    for _, t in runs:
        for key, value in t.items():
            if key.endswith("_s") and key != "total_s":
                timings[key] = timings.get(key, 0.0) + float(value)
    timings["other_s"] = max(total_s - sum(v for k, v in timings.items() if k != "other_s"), 0.0)
    timings["total_s"] = total_s
    return {"engine": engine, "timings": timings, "total_s": total_s}
