"""The bars behind a store, re-derived from the sources its manifest records.

``verify`` recomputes features from them; ``--append --on-overlap skip`` checks
overlapping new bars against them. A file source is found by its recorded
path and must still have its recorded SHA-256; a synthetic source is
regenerated from its parameters. Files are re-read with the ingest policy
they were read with, so dropped bars are dropped again, identically.

``store`` is an opened :class:`~gpu_features.store.Store` (this module sits
below the store package, which uses it to check overlapping appends).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import synthetic
from .ingest import Bars, file_digest, reread
from .errors import GpuFeaturesError


def load_sources(store, overrides=None):
    """Bars of every manifest source, or ``(None, why)`` when one is missing or changed.

    A source read from several files (``kind: files``) takes as many ``overrides``, in order.
    """
    recs = store.sources
    overrides = list(overrides or [])
    wanted = sum(len(r.get("files", [])) if r.get("kind") == "files" else 1 for r in recs)
    if overrides and len(overrides) != wanted:
        return None, f"{len(overrides)} --source given but the store has {wanted} source file(s), in order"
    loaded, said = [], []
    pos = 0
    for k, rec in enumerate(recs):
        width = len(rec.get("files", [])) if rec.get("kind") == "files" else 1
        given = overrides[pos:pos + width] if overrides else None
        pos += width
        if rec.get("kind") == "synthetic" and not overrides:
            need = sum(g.source_first + g.count for g in store.segments if g.source == k)
            total = int(rec["n_bars"]) * max(int(rec["n_symbols"]), 1)
            if "take" not in rec and total > 2 * need + 1:
                return None, (f"the synthetic source {k} says {total:,} bars but the store holds {need:,} of it "
                              "(the manifest is inconsistent); rebuild the store")
        if rec.get("kind") == "files":
            bars, what = _load_files(rec, given)
        else:
            bars, what = _load_one(rec, given[0] if given else None)
        if bars is None:
            return None, what
        # A store built from a slice of some bars (Bars.take) re-derives that slice.
        loaded.append(bars.take(*rec["take"]) if "take" in rec and not overrides else bars)
        said.append(what)
    return loaded, "source " + ", ".join(said)


def _load_one(rec: dict, override):
    """``(Bars, description)`` of one source record, or ``(None, why not)``."""
    if rec.get("kind") == "synthetic" and override is None:
        return synthetic.regenerate(rec), f"synthetic {rec['generator']} seed {rec['seed']} regenerated"
    if rec.get("kind") not in ("file", "synthetic") and override is None:
        return None, "the store was built from bars in memory, so there is no file to re-read; pass one with --source"
    path = Path(override) if override is not None else Path(rec["path"])
    if not path.is_file():
        return None, (f"source {path} is not a file; pass the bar file with --source" if path.exists()
                      else f"source {path} is missing; pass it with --source")
    if rec.get("kind") == "file" and override is None and file_digest(path)["sha256"] != rec.get("sha256"):
        return None, f"source {path} changed since the store was built (SHA-256 differs); pass the original with --source"
    policy = rec.get("ingest", {}).get("policy", "error")
    bars, why = _read(path, policy, rec)
    if bars is None:
        return None, why
    return bars, (f"{path.name} (sha256 ok)" if override is None else f"{path.name} (given)")


def _load_files(rec: dict, overrides):
    """``(Bars, description)`` of a source read from several files, each checked by its SHA-256."""
    paths = []
    for k, f in enumerate(rec["files"]):
        path = Path(overrides[k]) if overrides else Path(f["path"])
        if not path.is_file():
            return None, f"source {path} is missing; pass the source files with --source, in order"
        if not overrides and file_digest(path)["sha256"] != f.get("sha256"):
            return None, f"source {path} changed since the store was built (SHA-256 differs); pass the original with --source"
        paths.append(path)
    policy = rec.get("ingest", {}).get("policy", "error")
    bars, why = _read(paths, policy, rec)
    if bars is None:
        return None, why
    return bars, f"{len(paths)} files ({'sha256 ok' if not overrides else 'given'})"


def _read(paths, policy: str, rec: dict):
    """``(Bars, None)`` re-read with the store's recorded policy and read options, or ``(None, why not)``."""
    try:
        return reread(rec, paths), None
    except GpuFeaturesError as err:
        # The store's recorded policy is the only one that re-derives its bars, so no other policy is offered.
        said = "; ".join(part for part in re.split(r";\s+", str(err).rstrip(".")) if "--on-bad-bars" not in part)
        return None, (f"source {paths} cannot be read with the ingest policy the store was built with "
                      f"({policy!r}): {said}; pass the file the store was built from")


def store_bars(store, bars_by_source) -> Bars | None:
    """The source bars laid out like the store (segment by segment), or None if they do not fit."""
    parts = {k: [] for k in ("open", "high", "low", "close", "timestamp")}
    # Per source, once: its series bounds and each symbol's first and last series (a linear pass, so a
    # store of 100,000 symbols is laid out in a second, not in a search per segment).
    layout = {}
    for k, src in enumerate(bars_by_source):
        spans: dict[str, list[int]] = {}
        for s, name in enumerate(src.segment_names):
            spans.setdefault(name, [s, s])[1] = s
        layout[k] = (src.segment_bounds(), spans)
    for seg in store.segments:
        src = bars_by_source[seg.source]
        bounds, spans = layout[seg.source]
        # A file without a symbol column holds one series, named after the file: match it by position.
        # A symbol cut at rolls has consecutive segments; source_first counts from its first bar.
        if seg.name in spans:
            s, s_end = spans[seg.name][0], spans[seg.name][1] + 1
        elif src.n_segments == 1:
            s, s_end = 0, 1
        else:
            return None
        a = int(bounds[s]) + seg.source_first
        b = a + seg.count
        if b > bounds[s_end]:
            return None
        for key in parts:
            parts[key].append(getattr(src, key)[a:b])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Bars(cat["open"], cat["high"], cat["low"], cat["close"], cat["timestamp"],
                store.segment_bounds()[:-1], tuple(s.name for s in store.segments))
