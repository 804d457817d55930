"""Datasets: part stores built apart (one per task of a distributed build), written and appended to.

Layout of a dataset directory (format ``gpu-features-dataset``, version 1)::

    dataset.json        the commit point: format, version, config, splits, and the parts in order,
                        each with its symbols, bars and its manifest's size and SHA-256
    part-00000/         a complete store (manifest.json, bars-*.safetensors, state.safetensors)
    part-00001/         ...

Every part holds whole symbols (a symbol lives in exactly one part), was built
with the dataset's config, and is split at the dataset's boundary timestamps,
which the driver resolved once from every input bar (:func:`~gpu_features.splits.resolve_counted`),
so no symbol's test period leaks into another's training period.

Reading: :func:`~.reader.open_store` opens a dataset as one store (a
:class:`~.reader.Dataset`).

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
from pathlib import Path

import numpy as np

from .. import splits as splits_mod
from ..config import FeatureConfig
from ..fileio import absolute, lock_path, now_iso, sha256_file, write_json_atomic, writer_lock
from ..ingest import Bars, ReadSpec, read_bars
from ..progress import Progress, no_progress
from .append import append_store, recorded_spec, segment_symbols
from .format import DATASET_FORMAT, DATASET_VERSION, MANIFEST, SHARD_BARS, check_inputs_outside, input_paths
from .reader import DATASET_MANIFEST, Dataset, open_dataset, open_store
from .report import EngineUse, PhaseClock
from .stats import split_counts
from .writer import precompute, write_manifest


def part_name(index: int) -> str:
    """Directory name of the ``index``-th part."""
    return f"part-{index:05d}"


def select_symbols(bars: Bars, names) -> Bars:
    """The series of ``bars`` named in ``names`` (every segment of each), in their order; source record kept.

    The source record still names the whole file, so ``verify`` re-reads it and takes
    these symbols' series by name.
    """
    names = set(names)
    keep = [s for s, name in enumerate(bars.segment_names) if name in names]
    if len(keep) == bars.n_segments:
        return bars
    bounds = bars.segment_bounds()
    idx = np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in keep]) if keep else np.zeros(0, np.int64)
    sizes = np.array([bounds[s + 1] - bounds[s] for s in keep], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    cols = {k: getattr(bars, k)[idx] for k in ("open", "high", "low", "close", "timestamp")}
    return dataclasses.replace(bars, **cols, offsets=offsets,
                               segment_names=tuple(bars.segment_names[s] for s in keep))


def set_part_splits(part_dir, split_record: dict) -> None:
    """Give a part store the dataset's splits: its manifest's ``splits`` record is rewritten atomically, with
    the bar and window counts of its own bars (features are independent of the splits)."""
    st = open_store(part_dir)
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
                   spec: ReadSpec | None = None) -> Dataset:
    """Append newer bars to a dataset: each symbol's bars to the part that holds it, new symbols to a new part.

    Each touched part is copied (hard links: nothing is rewritten in place) under a new
    name and extended with :func:`~gpu_features.store.append_store`; ``dataset.json`` is
    then replaced, and only then are the old part directories removed, so a failure
    leaves the old dataset intact. Splits keep the dataset's boundaries.

    Args:
        path: the dataset; bars_or_path: :class:`Bars`, or files for :func:`read_bars`.
        engine, on_bad_bars, on_overlap, shard_bars, progress, spec: as for
            :func:`~gpu_features.store.append_store`.

    Returns:
        The reopened :class:`Dataset`; ``Dataset.report`` says what this append did (summed over its parts).
    """
    path = absolute(path)
    check_inputs_outside(path, input_paths(bars_or_path), "dataset")
    with writer_lock(path, "precompute --append"):
        return _append_locked(path, bars_or_path, engine, on_bad_bars, on_overlap, shard_bars,
                              progress or no_progress, spec)


def _append_locked(path: Path, bars_or_path, engine, on_bad_bars, on_overlap, shard_bars, progress,
                   spec: ReadSpec | None) -> Dataset:
    clock = PhaseClock()
    ds = open_dataset(path, checksums=True)
    if isinstance(bars_or_path, Bars):
        new = bars_or_path
    else:  # read like the dataset's inputs were read, unless told otherwise
        new = read_bars(bars_or_path, on_bad_bars=on_bad_bars, spec=spec or recorded_spec(ds))
    new = dataclasses.replace(new, segment_names=tuple(segment_symbols(ds, new, bars_or_path)))
    names = list(dict.fromkeys(new.segment_names))
    owner = {name: k for k, entry in enumerate(ds.record["parts"]) for name in entry["symbols"]}
    touched: dict[int, list[str]] = {}
    fresh = []
    for name in names:
        (touched.setdefault(owner[name], []) if name in owner else fresh).append(name)
    generation = len(ds.record["build"].get("appends", [])) + 1
    entries = [dict(e) for e in ds.record["parts"]]
    made: list[Path] = []
    reports = []  # of every part this append wrote
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
            reports.append(st.report)
            progress("parts", done + 1, jobs)
        if fresh:
            target = path / f"{part_name(len(entries))}-g{generation:03d}"
            made.append(target)
            st = precompute(select_symbols(new, fresh), target, config=ds.config, engine=engine, shard_bars=shard_bars,
                            splits={"dates": [ds.splits["boundaries"][1][0], ds.splits["boundaries"][2][0]]})
            set_part_splits(target, ds.record["splits"])
            entries.append({"dir": target.name, "symbols": st.symbols, "n_bars": st.n_bars})
            reports.append(st.report)
            progress("parts", jobs, jobs)
        # The parts' phases summed; the rest of the wall time (reading the input, copying the parts) is "other".
        summed: dict[str, float] = {}
        for r in reports:
            for phase, seconds in r.phases.items():
                summed[phase] = summed.get(phase, 0.0) + seconds
        clock.lap_parts(summed)
        skipped = sum(r.skipped_overlap for r in reports)  # bars already in their part (--on-overlap skip)
        build = dict(ds.record["build"])
        build["appends"] = build.get("appends", []) + [{
            "created": now_iso(), "bars": int(new.n), "new_bars": int(new.n) - skipped, "skipped_overlap": skipped,
            "symbols": names, "new_symbols": fresh,
            "parts": [entries[k]["dir"] for k in sorted(touched)] + ([entries[-1]["dir"]] if fresh else []),
            "engine": EngineUse.summed([r.engine for r in reports]).record(), "timings": clock.record(),
            "total_s": clock.total_s}]
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
