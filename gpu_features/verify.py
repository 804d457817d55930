"""Semantic verification of a store: recompute sampled bars from the source and compare bits.

Shapes and ranges prove nothing (the old verifier passed a 99%-zero store),
so ``verify`` re-derives values. It checks, and reports each separately:

- structure: manifest schema and version, shard and state files, tensor shapes;
- checksums: SHA-256 of every shard and of the state file;
- content: not degenerate (some valid bars; no feature zero on > 99% of them),
  and the manifest's statistics and window counts match the stored arrays;
- source: found from the manifest (path + sha256, or the synthetic generator's
  parameters) or given; re-read with the recorded ingest policy; its
  timestamps equal the stored ones for every bar;
- values: whole checkpoint intervals (the stretch between two stored engine
  states) recomputed with the reference engine from the stored start state:
  features and validity must match bit for bit, and the state reached at the
  end must equal the next stored state (the first state of each symbol must
  be the initial one, so the sampled links hang on a known anchor). Always
  the intervals holding the first and last bar of every shard, and those of
  every series segment while they add up to at most ``sample_bars`` bars (a
  store of 100,000 short symbols gets a random choice of its segments, said
  in the detail), then random intervals until ``sample_bars`` bars are
  covered. Every step is linear in the store's segments, so verifying costs
  a small multiple of building whatever the number of symbols.

Leftovers of killed writers (stale temporary folders beside the store,
unlisted shard or state files in it) and splits without windows are
reported as warnings: the store itself is sound, the next writer removes the
leftovers, and an empty split is a setting to revisit.

When the source is missing or changed, the value check is reported as not
run, every other check still runs, and the verdict is "not verified".
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import engines
from . import state as S
from .config import FEATURE_NAMES
from .errors import GpuFeaturesError
from .ingest import Bars
from .sources import load_sources, store_bars
from .store import VERSION, Store, open_store
from .store.format import check_file
from .store.recovery import leftovers, size_of
from .store.report import split_rows, split_warnings
from .store.stats import feature_stats, split_counts

DEFAULT_SAMPLE_BARS = 10_000
DEGENERATE_ZERO_FRACTION = 0.99


@dataclasses.dataclass
class Check:
    """One line of the verdict: ``ok`` is True (passed), False (failed) or None (could not run)."""

    name: str
    ok: bool | None
    detail: str


@dataclasses.dataclass
class VerifyReport:
    store: str
    checks: list
    bars_recomputed: int = 0
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only when every check ran and passed."""
        return bool(self.checks) and all(c.ok is True for c in self.checks)

    @property
    def verdict(self) -> str:
        if self.ok:
            return "verified"
        return "FAILED" if any(c.ok is False for c in self.checks) else "not verified"

    @property
    def summary(self) -> str:
        """The verdict line: which checks failed or could not run, and how many bars were recomputed."""
        n = f"{self.bars_recomputed:,} bars recomputed with the reference engine"
        if self.ok:
            return f"verified: {self.bars_recomputed:,} bars recomputed bit for bit"
        failed = [c.name for c in self.checks if c.ok is False]
        if failed:
            return f"FAILED: {', '.join(failed)} ({n})"
        return f"not verified: {', '.join(c.name for c in self.checks if c.ok is None)} could not run ({n})"


def verify_store(path, sources=None, sample_bars: int = DEFAULT_SAMPLE_BARS, seed: int = 0,
                 progress=None) -> VerifyReport:
    """Verify a store (see module doc).

    Args:
        path: the store directory.
        sources: optional list of bar files replacing the manifest's sources, in order.
        sample_bars: least number of bars to recompute with the reference engine.
        seed: seed of the random interval choice.
        progress: optional ``callback(stage, done, total)``.

    Returns:
        :class:`VerifyReport`.
    """
    progress = progress or (lambda *a: None)
    report = VerifyReport(str(path), [])
    add = report.checks.append
    try:
        store = open_store(path, checksums=False)  # hashed below, reported as its own check
    except GpuFeaturesError as err:
        add(Check("structure", False, str(err)))
        return report
    left = leftovers(store.path, store.manifest)
    if left:
        report.warnings.append(f"{len(left)} leftover(s) of interrupted writes ({size_of(left) / 1e6:.1f} MB: "
                               f"{', '.join(p.name for p in left[:3])}{' ...' if len(left) > 3 else ''}); "
                               "the next precompute or --append into this store removes them")
    report.warnings += split_warnings(split_rows(store.splits), store.stats["valid_bars"])
    add(Check("structure", True, f"version {VERSION}, {len(store.shards)} shard(s), "
                                 f"{store.n_bars:,} bars, {len(store.symbols)} symbol(s)"))
    bad = []
    files = store.file_records()  # a dataset lists the files of every part
    for root, rec, what in files:
        try:
            check_file(root, rec, what, checksum=True)
        except GpuFeaturesError as err:
            bad.append(str(err))
    add(Check("checksums", not bad, "; ".join(bad) if bad else f"{len(files)} file(s) match their SHA-256"))
    progress("load", 0, 1)
    feats, valid = store.array("features"), store.array("valid")
    progress("load", 1, 1)
    add(_check_degenerate(feats, valid))
    add(_check_manifest_numbers(store, feats, valid))

    bars_by_source, why = load_sources(store, sources)
    if bars_by_source is None:
        add(Check("source", None, why))
        add(Check("values", None, "not recomputed: " + why))
        return report
    src_bars = store_bars(store, bars_by_source)
    if src_bars is None:
        add(Check("source", False, "the source does not hold the stored series (symbols or bar counts differ)"))
        add(Check("values", None, "not recomputed: the source does not match the store"))
        return report
    same_ts = np.array_equal(src_bars.timestamp, store.timestamps())
    if not same_ts:
        first = int(np.flatnonzero(src_bars.timestamp != store.timestamps())[0])
        add(Check("source", False, f"{why}; stored timestamps differ from the source first at bar {first}"))
    else:
        add(Check("source", True, f"{why}; timestamps of all {store.n_bars:,} bars match"))
    try:
        check, n_bars = _check_values(store, src_bars, feats, valid, sample_bars, seed, progress)
    except GpuFeaturesError as err:  # a state file whose checkpoints are inconsistent
        check, n_bars = Check("values", False, str(err)), 0
    report.bars_recomputed = n_bars
    add(check)
    return report


def _check_degenerate(feats, valid) -> Check:
    n_valid = int(valid.sum())
    if n_valid == 0:
        return Check("content", False, "the store has no valid bars, so no window can be trained on")
    zero = (feats[valid] == 0).mean(axis=0)
    worst = [f"{FEATURE_NAMES[k]} ({zero[k]:.1%})" for k in np.flatnonzero(zero > DEGENERATE_ZERO_FRACTION)]
    if worst:
        return Check("content", False, f"degenerate store: zero on more than {DEGENERATE_ZERO_FRACTION:.0%} of "
                                       f"valid bars: {', '.join(worst)}")
    return Check("content", True, f"{n_valid:,} valid bars ({n_valid / len(valid):.1%}); every feature "
                                  f"non-zero on >= {1 - zero.max():.1%} of them")


def _check_manifest_numbers(store: Store, feats, valid) -> Check:
    recorded_stats, recorded_splits = store.stats, store.splits
    problems = []
    stats = feature_stats(feats, valid)
    for name in FEATURE_NAMES:
        for key, value in stats[name].items():
            recorded = recorded_stats["features"].get(name, {}).get(key)
            if value is None or recorded is None:
                if value != recorded:
                    problems.append(f"{name}.{key}")
            elif not np.isclose(value, recorded, rtol=1e-9, atol=1e-12):
                problems.append(f"{name}.{key} {recorded} != {value}")
    counts = split_counts(valid, store.split_ids(), store.segment_bounds(), store.config.window_length)
    if counts != recorded_splits.get("counts"):
        problems.append(f"split counts {recorded_splits.get('counts')} != {counts}")
    if int(valid.sum()) != recorded_stats["valid_bars"]:
        problems.append(f"valid_bars {recorded_stats['valid_bars']} != {int(valid.sum())}")
    if problems:
        return Check("manifest numbers", False, "manifest disagrees with the stored arrays: " + "; ".join(problems[:5]))
    return Check("manifest numbers", True, "statistics, valid-bar and window counts match the stored arrays")


def _intervals(store: Store, cps: np.ndarray):
    """Checkpoint intervals ``(k, start, stop)``: from checkpoint k to the next checkpoint or segment end."""
    seg_bounds = store.segment_bounds()
    seg_end = seg_bounds[np.searchsorted(seg_bounds, cps, side="right")]
    nxt = np.append(cps[1:], store.n_bars)
    return np.minimum(nxt, seg_end)


def _check_values(store: Store, src: Bars, feats, valid, sample_bars, seed, progress):
    states = store.states()
    cps, cstate, end_state = states["checkpoint_bar"], states["checkpoint_state"], states["end_state"]
    stops = _intervals(store, cps)
    cfg = store.config
    problems = []
    rng = np.random.default_rng(seed)
    # Anchor: every symbol's first segment (and each segment after a roll) starts from the initial state.
    firsts = np.array([g.first for g in store.segments], dtype=np.int64)
    anchored = np.array([g.start_index == 0 or g.restart for g in store.segments], dtype=bool)
    k = np.minimum(np.searchsorted(cps, firsts), len(cps) - 1)
    unanchored = anchored & ((cps[k] != firsts) | np.any(cstate[k] != 0, axis=1))
    problems += [f"series {store.segments[g].name} does not start from the initial state"
                 for g in np.flatnonzero(unanchored)[:3]]
    # Which intervals: the first/last bar of every shard; of every segment while they fit the sample.
    sizes = stops - cps

    def holding(bars):  # the intervals holding these bars
        return np.unique(np.searchsorted(cps, np.asarray(bars, dtype=np.int64), side="right") - 1)

    must = holding([b for s in store.shards for b in (s.first, s.first + s.count - 1)])
    seg_edges = holding(np.concatenate([firsts, firsts + np.array([g.count for g in store.segments]) - 1]))
    segment_note = ""
    if int(sizes[seg_edges].sum()) > max(sample_bars, int(sizes[must].sum())):
        picked = rng.permutation(seg_edges)
        take = int(np.searchsorted(np.cumsum(sizes[picked]), sample_bars, side="right")) + 1
        seg_edges = picked[:take]
        segment_note = f"; edges of {take:,} of {len(store.segments):,} segments, chosen at random"
    must = np.union1d(must, seg_edges)
    covered = int(sizes[must].sum())
    chosen = [int(x) for x in must]
    if covered < sample_bars:
        rest = np.setdiff1d(rng.permutation(len(cps)), must, assume_unique=True)
        rest = rest[:int(np.searchsorted(np.cumsum(sizes[rest]), sample_bars - covered, side="left")) + 1]
        chosen += [int(x) for x in rest]
    chosen.sort()
    # The state each interval must end in: the next checkpoint, or the symbol's next
    # segment start, or the symbol's stored end state.
    sym_index = {name: i for i, name in enumerate(store.symbols)}
    seg_bounds = store.segment_bounds()
    next_seg_of, seen = {}, {}  # segment -> the same symbol's next segment (one pass from the end)
    for g in range(len(store.segments) - 1, -1, -1):
        name = store.segments[g].name
        next_seg_of[g] = seen.get(name)
        seen[name] = g
    n_done = 0
    for done, k in enumerate(chosen):
        a, b = int(cps[k]), int(stops[k])
        run = engines.run(src.open[a:b], src.high[a:b], src.low[a:b], src.close[a:b], config=cfg,
                          engine="reference", start_states=cstate[k:k + 1])
        n_done += b - a
        diff = np.flatnonzero(np.any(run.features.view(np.uint32) != feats[a:b].view(np.uint32), axis=1)
                              | (run.valid != valid[a:b]))
        if len(diff):
            j = int(diff[0])
            cols = np.flatnonzero(run.features[j].view(np.uint32) != feats[a + j].view(np.uint32))
            names = ", ".join(FEATURE_NAMES[c] for c in cols) or "valid"
            problems.append(f"{len(diff)} bar(s) of [{a}, {b}) differ from the reference, first bar {a + j} "
                            f"({names}: stored {feats[a + j][cols].tolist()} vs {run.features[j][cols].tolist()})")
        g = int(np.searchsorted(seg_bounds, a, side="right") - 1)
        if b < seg_bounds[g + 1]:
            want = cstate[k + 1]
        elif next_seg_of[g] is not None and store.segments[next_seg_of[g]].restart:
            want = None  # the next segment starts afresh after a roll: no stored state follows this one
        elif next_seg_of[g] is not None:
            want = cstate[int(np.searchsorted(cps, seg_bounds[next_seg_of[g]]))]
        else:
            want = end_state[sym_index[store.segments[g].name]]
        if want is not None and not np.array_equal(run.end_states[0].view(np.uint64),
                                                   np.asarray(want).view(np.uint64)):
            fields = [S.FIELD_NAMES[i] if i < S.TRS else f"trs[{i - S.TRS}]"
                      for i in np.flatnonzero(run.end_states[0].view(np.uint64) != np.asarray(want).view(np.uint64))]
            problems.append(f"engine state after bar {b - 1} differs from the stored one ({', '.join(fields[:4])})")
        progress("recompute", done + 1, len(chosen))
    detail = (f"{n_done:,} bars in {len(chosen):,} checkpoint interval(s) recomputed with the reference engine"
              f"{segment_note}")
    if problems:
        return Check("values", False, detail + ": " + "; ".join(problems[:3])), n_done
    return Check("values", True, detail + ": bit-identical, and every end state matches"), n_done
