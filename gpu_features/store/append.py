"""Incremental append: extend a store with newer bars without recomputing history.

Each symbol's exact end state lives in the store's state file; new bars of a
known symbol continue from it (any engine), so the result equals a full
recompute of old + new bars bit for bit. New symbols start fresh.

Layout: appended bars go into new shards after the old ones, one new series
segment per symbol (``start_index`` = bars of that symbol before it), so a
window never spans the seam between two appends. Overlap: bars at or before
a symbol's last stored timestamp are refused, or with ``on_overlap="skip"``
skipped after checking that they are identical to the stored source bars (the
same time and bit-equal OHLC, :func:`~gpu_features.ingest.identical_bars`;
re-derived from the manifest's sources).

Splits: the boundary timestamps recorded at build time are kept, so no
stored bar ever changes split; appended bars fall into the split their time
says (normally the open-ended test split). Rebuild with ``precompute`` to
re-split by fractions. Counts and statistics are recomputed over all bars.

Atomicity: the store's writer lock is held from reading the store to the
commit, so two appends (or an append and a precompute) run one after the
other and neither is lost. New shard and state files get names the old
manifest does not use, are fsynced with the directory, and ``manifest.json``
is replaced by a rename only when they are all written; a failure before that
removes them and leaves the old store intact, and files a killed append left
are removed by the next writer (:mod:`.recovery`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import engines
from ..arrays import to_numpy
from ..ingest import OVERLAP_POLICIES, Bars, ReadSpec, check_bars, identical_bars, read_bars
from ..errors import StoreError
from ..fileio import absolute, fault_point, fsync_dir, now_iso, writer_lock
from ..progress import Progress, no_progress
from ..splits import iso_time
from .format import MANIFEST, SHARD_BARS, check_before_commit, check_inputs_outside, input_paths
from .reader import Dataset, Store, open_store
from .recovery import clean
from .report import EngineUse, PhaseClock
from .writer import (checkpoint_positions, host_moments, manifest_numbers, shard_ranges, source_record, write_manifest,
                     write_shards, write_state)


def append_store(store_dir, bars_or_path, engine: str = "auto", on_bad_bars: str = "error",
                 on_overlap: str = "error", shard_bars: int = SHARD_BARS, progress: Progress | None = None,
                 spec: ReadSpec | None = None) -> Store:
    """Append newer bars to an existing store.

    Args:
        store_dir: the store to extend.
        bars_or_path: :class:`Bars`, or a parquet/CSV path.
        engine: ``auto``, ``reference``, ``host`` or ``gpu``.
        on_bad_bars: ingest policy for the new file.
        on_overlap: ``error`` (default) or ``skip`` (see module doc).
        shard_bars: bars per new shard.
        progress: optional ``callback(stage, done, total)``.
        spec: how to read the new file (default: :func:`recorded_spec`, how the store's first file
            source was read, so a vendor layout and time zone carry over).

    Returns:
        The reopened, extended :class:`~gpu_features.store.Store`; ``Store.report`` says what this append did.
    """
    progress = progress or no_progress
    if on_overlap not in OVERLAP_POLICIES:
        raise StoreError(f"on_overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {on_overlap!r}.")
    clock = PhaseClock()
    store_dir = absolute(store_dir)  # `--output .` has a name (and a lock beside it) from here on
    # A missing or broken store is refused before reading or waiting for the lock; its sources say how
    # its files were read.
    current = open_store(store_dir, checksums=False)
    check_inputs_outside(store_dir, input_paths(bars_or_path))
    progress("read", 0, 1)
    if isinstance(bars_or_path, Bars):
        check_bars(bars_or_path)
        new = bars_or_path
    else:
        new = read_bars(bars_or_path, on_bad_bars=on_bad_bars, spec=spec or recorded_spec(current))
    if len(set(new.segment_names)) != len(new.segment_names):
        raise StoreError(f"{_where(bars_or_path)}: the new bars cut a symbol at a roll; --append continues each "
                         "symbol's last segment, so rebuild the store with precompute to add a new contract segment.")
    progress("read", 1, 1)
    clock.lap("read")
    with writer_lock(store_dir, "the append"):
        return _append_locked(Path(store_dir), new, bars_or_path, engine, on_overlap, shard_bars, progress, clock)


def recorded_spec(store: Store) -> ReadSpec:
    """How the store's first file source was read (an append reads its new files the same way)."""
    first = next((s for s in store.sources if s.get("kind") in ("file", "files")), {})
    return ReadSpec.from_record(first.get("read"))


def _append_locked(store_dir: Path, new: Bars, bars_or_path, engine, on_overlap, shard_bars, progress,
                   clock: PhaseClock):
    """The append itself, under the store's writer lock (see :func:`append_store`)."""
    store = open_store(store_dir, checksums=True)
    clean(store.path, store.manifest)  # files of killed appends, stale temporaries
    m = store.manifest
    cfg = store.config
    names = segment_symbols(store, new, bars_or_path)
    states = store.states()
    ts_old = store.timestamps()

    # Which new bars to take per symbol, and where each continues from.
    symbols = list(store.symbols)
    bounds = new.segment_bounds()
    pieces = []  # (name, first new bar in `new`, count, start_index, skipped)
    skipped_total = 0
    for s, name in enumerate(names):
        a, b = int(bounds[s]), int(bounds[s + 1])
        segs = [g for g in store.segments if g.name == name]
        if segs:
            last_ts = int(ts_old[segs[-1].stop - 1])
            overlap = int(np.count_nonzero(new.timestamp[a:b] <= last_ts))
            if overlap:
                if on_overlap == "error":
                    raise StoreError(f"{_where(bars_or_path)}: {overlap} bar(s) of {name} are at or before its last "
                                     f"stored bar ({iso_time(last_ts)}); remove them, or pass --on-overlap skip "
                                     "to skip them after checking they equal the stored bars.")
                _check_overlap(store, name, new, a, a + overlap, bars_or_path)
            start_index = segs[-1].start_index + segs[-1].count  # the last segment's local index goes on
        else:
            overlap, start_index = 0, 0
        skipped_total += overlap
        if b - (a + overlap) > 0:
            pieces.append((name, a + overlap, b - (a + overlap), start_index, overlap))
    if not pieces:
        raise StoreError(f"{_where(bars_or_path)}: no new bars to append (all {new.n} are already in the store).")

    # One engine call over every new segment, each from its symbol's stored end state.
    new_symbols = [p[0] for p in pieces if p[0] not in symbols]
    symbols += new_symbols
    index = {name: k for k, name in enumerate(symbols)}
    take = np.concatenate([np.arange(a, a + n) for _, a, n, _, _ in pieces])
    seg_counts = np.array([n for _, _, n, _, _ in pieces], dtype=np.int64)
    local_bounds = np.concatenate([[0], np.cumsum(seg_counts)]).astype(np.int64)
    n_old, n_new = store.n_bars, int(local_bounds[-1])
    dim = states["end_state"].shape[1]
    end_state = np.zeros((len(symbols), dim))
    end_state[: len(store.symbols)] = states["end_state"]
    start_states = end_state[[index[p[0]] for p in pieces]]
    shards = shard_ranges(n_old, n_new, shard_bars)
    shard_bounds = np.array([a for a, _ in shards] + [n_old + n_new], dtype=np.int64)
    every = store.state_record["checkpoint_every"]
    cps = checkpoint_positions(local_bounds + n_old, shard_bounds, every)
    progress("compute", 0, 1)
    o, h, l, c, ts_new = (getattr(new, k)[take] for k in ("open", "high", "low", "close", "timestamp"))
    run = engines.run(o, h, l, c, offsets=local_bounds[:-1], config=cfg, engine=engine, start_states=start_states,
                      snapshot_at=cps - n_old)
    feats, valid, swing = to_numpy(run.features), to_numpy(run.valid), to_numpy(run.swing)
    ends = to_numpy(run.end_states)
    for k, p in enumerate(pieces):
        end_state[index[p[0]]] = ends[k]
    progress("compute", 1, 1)
    clock.lap("compute")

    gen = len(store.appends) + 1
    source_index = len(store.sources)
    new_series = [{"name": name, "first": n_old + int(local_bounds[k]), "count": int(n), "start_index": int(si),
                   "source": source_index, "source_first": int(skip)}
                  for k, (name, _, n, si, skip) in enumerate(pieces)]
    root = store.path
    written: list[Path] = []
    try:
        fault_point("append.before_shards")
        shard_records = write_shards(root, len(store.shards), shards, n_old, feats, valid, ts_new, written, progress,
                                     fault="append")
        state_path = root / f"state-append{gen:03d}.safetensors"
        written.append(state_path)
        all_cps = np.concatenate([states["checkpoint_bar"], cps])
        all_states = np.concatenate([states["checkpoint_state"], to_numpy(run.snapshots)])
        state_record = write_state(state_path, all_cps, all_states, end_state, every)
        fault_point("append.after_state")
        clock.lap("write")

        # Whole-store numbers: old arrays + new ones. The old bars' swing codes are not stored, so their
        # counts come from the manifest and the new bars' from the moments.
        feats_all = np.concatenate([store.array("features"), feats])
        valid_all = np.concatenate([store.array("valid"), valid])
        swing_all = np.concatenate([np.zeros(n_old, dtype=np.int8), swing])
        ts_all = np.concatenate([ts_old, ts_new])
        series = m["series"] + new_series
        before = np.zeros((len(symbols), 2), dtype=np.int64)
        for name, st in store.stats["per_symbol"].items():
            before[index[name]] = (st["swings"]["highs"], st["swings"]["lows"])
        seg_starts = np.array([g["first"] for g in series], dtype=np.int64)
        moments = host_moments(engines.moments(feats_all, valid_all, swing_all, offsets=seg_starts,
                                               engine=run.engine, atr_period=cfg.atr_period))
        split_record, stats = manifest_numbers(moments, valid_all, ts_all, series, symbols, store.splits,
                                               cfg.window_length, before)
        clock.lap("stats")
        manifest = dict(m)
        manifest.update(
            n_bars=n_old + n_new, symbols=symbols, series=series, shards=m["shards"] + shard_records,
            sources=m["sources"] + [source_record(new)], state=state_record, splits=split_record, stats=stats,
            appends=store.appends + [{
                "created": now_iso(), "source": source_index, "bars": n_new, "skipped_overlap": skipped_total,
                "new_symbols": new_symbols, "engine": EngineUse.of_run(run).record(), "timings": clock.record()}],
        )
        check_before_commit(root, manifest, root, all_cps)  # what every reader checks, before the commit
        fsync_dir(root)
        fault_point("append.before_manifest")
        write_manifest(root / MANIFEST, manifest)  # the commit point
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    fault_point("append.after_manifest")  # after the try: the committed manifest lists the new files
    old_state = root / store.state_record["file"]
    if old_state.name != state_record["file"]:
        old_state.unlink(missing_ok=True)  # no longer referenced
    return open_store(root, checksums=False)  # the hashes were just taken from the written bytes


def _where(bars_or_path) -> str:
    return str(bars_or_path) if not isinstance(bars_or_path, Bars) else "the new bars"


def segment_symbols(store: Store, new: Bars, bars_or_path) -> list[str]:
    """The store symbol of each segment of the new bars (:func:`.dataset.append_dataset` asks the same).

    Bars of files without a symbol column are each the series named after their file: such files continue the
    store's symbols of those names, or one file (or files of one name) continues a store of one symbol whatever
    its name; anything else is refused, naming the way out.
    """
    names = list(new.segment_names)
    if new.ingest.get("symbol_column", True) or set(names) <= set(store.symbols):
        return names
    kind = "dataset" if isinstance(store, Dataset) else "store"
    if len(store.symbols) == 1 and len(set(names)) == 1:
        return [store.symbols[0]] * new.n_segments
    if len(store.symbols) == 1:
        raise StoreError(f"{_where(bars_or_path)}: files without a symbol column are each a series named after the "
                         f"file ({', '.join(sorted(set(names)))}), and the {kind} holds one symbol "
                         f"({store.symbols[0]}); append them one at a time (each continues it), or add a symbol "
                         "column.")
    raise StoreError(f"{_where(bars_or_path)} has no symbol column but the {kind} holds {len(store.symbols)} "
                     f"symbols ({', '.join(store.symbols)}); add a symbol column to say which bars are whose (or name "
                     "each file after its symbol).")


def _check_overlap(store, name: str, new: Bars, a: int, b: int, bars_or_path) -> None:
    """Refuse unless new bars ``a:b`` are :func:`~gpu_features.ingest.identical_bars` to the stored source bars of
    ``name`` at the same timestamps."""
    from ..sources import load_sources, store_bars

    loaded, why = load_sources(store)
    old = store_bars(store, loaded) if loaded is not None else None
    if old is None:
        raise StoreError(f"{_where(bars_or_path)}: cannot check the overlapping bars of {name} against the store "
                         f"({why or 'its sources do not match it'}); remove the overlap from the new file instead.")
    sel = np.repeat([g.name == name for g in store.segments], [g.count for g in store.segments])
    ts = old.timestamp[sel]
    pos = np.searchsorted(ts, new.timestamp[a:b])
    at = np.minimum(pos, len(ts) - 1)
    keys = ("open", "high", "low", "close", "timestamp")
    same = (pos < len(ts)) & identical_bars({k: getattr(old, k)[sel][at] for k in keys},
                                             {k: getattr(new, k)[a:b] for k in keys})
    if not same.all():
        first = int(np.flatnonzero(~same)[0]) + a
        raise StoreError(f"{_where(bars_or_path)}: {int((~same).sum())} overlapping bar(s) of {name} differ from the "
                         f"stored bars (first at {iso_time(int(new.timestamp[first]))}); the history changed, "
                         "so rebuild the store with precompute.")
