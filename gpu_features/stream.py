"""Live bars: a feature stream that continues every symbol, bit for bit, where the offline build left it.

::

    stream = gf.FeatureStream.from_store("data/features/nq")   # or gf.FeatureStream(config): fresh
    out = stream.update(bars)       # closed bars: a pyarrow/pandas/polars table or dict of columns, or a Bars
    out.features, out.valid         # [n, 10] float32, [n] bool, in the order of the input rows
    out.refusals                    # one Refusal per refused bar (row, symbol, rule, one sentence)
    stream.peek(bar)                # what a forming bar would get; nothing changes
    X, valid = stream.window(["ES", "NQ"])   # torch [S, K, 10] float32, [S, K] bool, the latest K bars
    stream.save("live.stream")      # one safetensors file with JSON metadata; FeatureStream.load(path)

Guarantee (live equals batch): the features, validity and float64
engine state after any sequence of updates equal, bit for bit, those of the
offline build (``precompute`` of all the bars, or ``--append`` of the new ones)
on every engine, whatever the grouping of bars into calls, the order of the
symbols in a call, and wherever the stream was opened, saved and loaded. The
step is the batch kernels' own: :func:`gpu_features.engines.advance` runs
``kernels/advance.cu`` (the per-bar functions of ``candle.cu`` and
``state.cuh``) for host and GPU, and the reference engine's own continuation.

Input: columns ``time``, ``symbol``, ``open``, ``high``, ``low``, ``close``
(any case; times as ``read_bars`` reads them: datetimes, ISO text, epoch
integers), one or several bars per symbol, symbols in any order; the bars of
one symbol are taken in row order. A symbol the stream has not seen starts
from the initial state (FEATURES.md).

Refusals are per bar and atomic: a bar that breaks an ingest rule (a price
missing, non-finite or <= 0, low above min(open, close), high below
max(open, close), no symbol, or a time not after the symbol's last accepted
bar) is refused with one sentence naming the symbol and the rule, and the
stream afterwards is bit for bit the stream that never saw it; the other bars
of the call, of that symbol and of the others, go on. :meth:`FeatureStream.update`
reports them in :attr:`StreamUpdate.refusals` (the refused rows carry NaN
features, ``valid`` False and ``accepted`` False) and raises nothing for
them; input that cannot be read at all (no price column, text that is not a
number, a missing time) raises :class:`~gpu_features.errors.BarsError` and
changes nothing.

A stream is not thread-safe: one caller updates it at a time.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import engines
from . import state as S
from .arrays import to_numpy
from .config import N_FEATURES, FeatureConfig
from .errors import BarsError, EngineError, StoreError, StreamError
from .fileio import fsync_dir, fsync_file, now_iso, temp_sibling
from .ingest import Bars, ReadSpec
from .ingest.decode import decode_table
from .ingest.inputs import is_table, table_from_object
from .ingest.rules import rule_masks
from .splits import iso_time

FORMAT = "gpu-features-stream"
VERSION = 1
NO_TIME = np.iinfo(np.int64).min  # last time of a symbol with no bar yet: every time is after it
_NO_SYMBOL_RULE = "no symbol"
_TIME_RULE = "time not after the symbol's last accepted bar"
_TENSORS = {"state": np.float64, "last_time": np.int64, "window_features": np.float32, "window_valid": np.bool_}

__all__ = ["FeatureStream", "Refusal", "StreamState", "StreamUpdate"]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A refused bar: its input row (0-based), symbol (None when it had none), time (ns, None when
    unknown), the rule it broke and the one sentence saying so."""

    row: int
    symbol: str | None
    time: int | None
    rule: str
    message: str


@dataclasses.dataclass
class StreamUpdate:
    """What one :meth:`FeatureStream.update` or :meth:`~FeatureStream.peek` gave, in the input's row order.

    Attributes:
        features: ``[n, 10] float32`` numpy; NaN rows for refused bars.
        valid: ``[n] bool`` (FEATURES.md validity); False for refused bars.
        accepted: ``[n] bool``, True for the bars the stream took.
        refusals: one :class:`Refusal` per refused bar, in row order.
        time: ``[n] int64`` ns UTC of each bar as the stream read it.
    """

    features: np.ndarray
    valid: np.ndarray
    accepted: np.ndarray
    refusals: list
    time: np.ndarray
    _code: np.ndarray = dataclasses.field(repr=False, default=None)
    _names: tuple = dataclasses.field(repr=False, default=())

    @property
    def n(self) -> int:
        return int(len(self.valid))

    def symbol(self, row: int) -> str | None:
        """The symbol of input row ``row`` (None when it had none)."""
        code = int(self._code[row])
        return self._names[code] if code >= 0 else None

    @property
    def symbols(self) -> list:
        """The symbol of every row (None where a row had none)."""
        return [self.symbol(r) for r in range(self.n)]


@dataclasses.dataclass
class StreamState:
    """A stream's whole state (what :meth:`FeatureStream.save` writes), on the host.

    Attributes:
        config: the feature config.
        symbols: the ``S`` symbols, in the stream's order.
        state: ``[S, 16 + P] float64`` engine state of each symbol after its last bar (gpu_features/state.py).
        last_time: ``[S] int64`` ns of each symbol's last bar.
        window_features: ``[S, K, 10] float32``, the latest K bars of each symbol's series, oldest first,
            zero rows before a series' first bar.
        window_valid: ``[S, K] bool``, False for those padding rows.
        origin: where the stream started: ``{"kind": "config"}``, or ``{"kind": "store", "path", "n_bars",
            "appends", "created", "bars_after"}``: the store it was opened from (or last committed to) and
            the bars it took since.
    """

    config: FeatureConfig
    symbols: tuple
    state: np.ndarray
    last_time: np.ndarray
    window_features: np.ndarray
    window_valid: np.ndarray
    origin: dict

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype=dtype) for name, dtype in _TENSORS.items()}

    def metadata(self) -> dict[str, str]:
        """The JSON half: format, version, config, the kernel sources' digest, symbols and origin."""
        from .engines.abi import sources_digest

        return {"format": FORMAT, "version": str(VERSION), "config": self.config.to_json(),
                "kernel_sources": sources_digest().hexdigest(), "symbols": json.dumps(list(self.symbols)),
                "origin": json.dumps(self.origin), "created": now_iso()}


@dataclasses.dataclass
class _Rows:
    """Decoded input rows: float64 prices, int64 ns times, and each row's symbol as an index into ``names``
    (-1 where a row has none)."""

    o: np.ndarray
    h: np.ndarray
    l: np.ndarray
    c: np.ndarray
    ts: np.ndarray
    code: np.ndarray
    names: tuple

    @property
    def n(self) -> int:
        return int(len(self.ts))


class FeatureStream:
    """Relativity-10 features of live bars, continued from a store or started fresh from a config.

    Args:
        config: the feature config (default FEATURES.md); a stream from a store takes the store's.
        engine: ``auto`` (gpu, then host, then reference), ``reference``, ``host`` or ``gpu``.
        device: where :meth:`window` puts its tensors (default: ``cuda`` for the GPU engine, else ``cpu``).
        spec: how tables are read: a :class:`~gpu_features.ingest.ReadSpec`, or a dict of its fields
            (``timezone`` of naive times, ``symbol_column``, ``rename`` ...; ``allow_nonpositive`` accepts
            prices <= 0, back-adjusted futures, as ``read_bars`` does).
    """

    def __init__(self, config: FeatureConfig | None = None, engine: str = "auto", device=None,
                 spec: ReadSpec | Mapping | None = None):
        self.config = config or FeatureConfig()
        self.engine, self._kernels, self.engine_note = _open_engine(engine, self.config.atr_period)
        self._xp = np if self._kernels is None else self._kernels.xp
        self.device = device if device is not None else ("cuda" if self.engine == "gpu" else "cpu")
        self._spec = spec if isinstance(spec, ReadSpec) else ReadSpec().replace(**(spec or {}))
        self.allow_nonpositive = bool(self._spec.allow_nonpositive)
        e = np.zeros(0)
        self._rules = [name for name, _ in rule_masks(e, e, e, e, self.allow_nonpositive)] + [_NO_SYMBOL_RULE,
                                                                                            _TIME_RULE]
        K, D = self.config.window_length, S.state_dim(self.config.atr_period)
        self.symbols: list[str] = []
        self._index: dict[str, int] = {}
        self._states = self._xp.zeros((0, D), dtype=np.float64)   # engine state per symbol (on the engine's device)
        self._bars = np.zeros(0, dtype=np.int64)                     # bars of each symbol's series = state[:, 0]
        self._last_time = np.zeros(0, dtype=np.int64)
        self._ring_f = self._xp.zeros((0, K, N_FEATURES), dtype=np.float32)  # bar i of a series at [s, i % K]
        self._ring_v = self._xp.zeros((0, K), dtype=np.bool_)
        self.origin: dict = {"kind": "config"}
        self._pending: list | None = None   # accepted bars kept for commit() (from_store(keep_for_commit=True))
        self._names_cache: tuple = ((), 0, np.zeros(0, dtype=np.int64))  # names -> slots of the last input
        self._dictionary: list = [None, ()]                                  # its symbol dictionary (tables)

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store, engine: str = "auto", device=None, checksums: bool = True,
                   keep_for_commit: bool = False, spec: ReadSpec | Mapping | None = None) -> "FeatureStream":
        """Continue every symbol of a store (or dataset) from its stored end state.

        The store's config, how its input file was read (``store.append.recorded_spec``, as ``--append``
        reads new bars; ``spec`` replaces that: a dict of fields keeps the store's ``allow_nonpositive``
        unless it names it) and the last K bars of each symbol's series (for :meth:`window`) come along.
        ``keep_for_commit`` keeps the accepted bars so that :meth:`commit` can append them to the store.
        """
        from .store import Store, open_store
        from .store.append import recorded_spec

        store = store if isinstance(store, Store) else open_store(store, checksums=checksums)
        recorded = recorded_spec(store)
        if spec is None:
            spec = recorded
        elif not isinstance(spec, ReadSpec):
            spec = ReadSpec(allow_nonpositive=recorded.allow_nonpositive).replace(**spec)
        stream = cls(store.config, engine, device, spec)
        stream._load(_store_state(store))
        if keep_for_commit:
            stream._pending = []
        return stream

    @classmethod
    def from_state(cls, state: StreamState, engine: str = "auto", device=None, spec: ReadSpec | Mapping | None = None,
                   keep_for_commit: bool = False) -> "FeatureStream":
        """A stream continuing a :class:`StreamState` (from :meth:`state`, or read by :meth:`load`)."""
        stream = cls(state.config, engine, device, spec)
        stream._load(state)
        if keep_for_commit:
            stream._pending = []
        return stream

    @classmethod
    def load(cls, path, engine: str = "auto", device=None, config: FeatureConfig | None = None,
             spec: ReadSpec | Mapping | None = None, keep_for_commit: bool = False) -> "FeatureStream":
        """A stream from a file written by :meth:`save`.

        Refused (:class:`StreamError`) when the file is not a stream state, was saved with other kernel
        sources, or (with ``config``) holds another feature config.
        """
        state = read_state(path)
        if config is not None and config != state.config:
            raise StreamError(f"{path}: the stream state was saved with feature config {state.config.to_json()}, "
                              f"not {config.to_json()}; open the stream from a store built with this config instead.")
        return cls.from_state(state, engine, device, spec, keep_for_commit)

    def _load(self, st: StreamState) -> None:
        xp, K = self._xp, self.config.window_length
        n = len(st.symbols)
        self.symbols = list(st.symbols)
        self._index = {name: k for k, name in enumerate(self.symbols)}
        self._states = xp.asarray(np.ascontiguousarray(st.state, dtype=np.float64))
        self._bars = st.state[:, S.BARS].astype(np.int64)
        self._last_time = np.asarray(st.last_time, dtype=np.int64).copy()
        # The window rows are oldest first; bar i of a series lives at ring slot i % K.
        local = self._bars[:, None] - K + np.arange(K)[None, :]
        ring = np.mod(local, K)
        ring_f = np.zeros((n, K, N_FEATURES), dtype=np.float32)
        ring_v = np.zeros((n, K), dtype=np.bool_)
        rows = np.repeat(np.arange(n), K)
        ring_f[rows, ring.ravel()] = st.window_features.reshape(n * K, N_FEATURES)
        ring_v[rows, ring.ravel()] = st.window_valid.ravel()
        self._ring_f, self._ring_v = xp.asarray(ring_f), xp.asarray(ring_v)
        self.origin = dict(st.origin)

    # --- updating -----------------------------------------------------------------------------
    def update(self, bars) -> StreamUpdate:
        """Take closed bars: features of each, the state moved past them.

        Args:
            bars: a pyarrow, pandas or polars table (or a dict of columns) with time, symbol, open, high,
                low, close; or a :class:`Bars`. One or several bars per symbol, symbols in any order.

        Returns:
            :class:`StreamUpdate`: ``features [n, 10] float32`` and ``valid [n] bool`` in row order, and
            the refusals (see the module doc; refused bars change nothing).

        Raises:
            BarsError: the input cannot be read at all (then nothing changed).
        """
        return self._apply(self._rows(bars), commit=True)

    def peek(self, bars) -> StreamUpdate:
        """The features forming bars would get if they closed now; the stream does not change.

        Takes what :meth:`update` takes (typically one bar per symbol) and refuses what it refuses.
        """
        return self._apply(self._rows(bars), commit=False)

    def _apply(self, rows: _Rows, commit: bool) -> StreamUpdate:
        n, n_known = rows.n, len(self.symbols)
        if n == 0:
            return StreamUpdate(np.zeros((0, N_FEATURES), np.float32), np.zeros(0, np.bool_), np.zeros(0, np.bool_), [],
                                rows.ts, rows.code, rows.names)
        slot = self._slots(rows)                     # known symbols: their slot; new ones: n_known + j; none: -1
        rule = np.full(n, -1, dtype=np.int64)        # index into self._rules of the first rule a bar breaks
        for k, (_, mask) in reversed(list(enumerate(rule_masks(rows.o, rows.h, rows.l, rows.c,
                                                               self.allow_nonpositive)))):
            if mask.any():
                rule[mask] = k
        no_symbol, late = len(self._rules) - 2, len(self._rules) - 1
        rule[slot < 0] = no_symbol
        last = self._last_time if slot.max() < n_known else \
            np.concatenate([self._last_time, np.full(len(rows.names), NO_TIME, dtype=np.int64)])
        order, after = _time_rule(slot, rows.ts, rule < 0, last)
        rule[(rule < 0) & (rows.ts <= after)] = late
        accepted = rule < 0
        every = bool(accepted.all())
        refusals = [] if every else [self._refusal(int(r), rows, self._rules[int(rule[r])], int(after[r]))
                                     for r in np.flatnonzero(~accepted)]
        if order is None:                            # at most one bar per symbol: each accepted bar is a series
            take = None if every else np.flatnonzero(accepted)
            group_slot = slot if every else slot[take]
            bounds = np.arange(len(group_slot) + 1, dtype=np.int64)
        else:                                        # accepted rows grouped by symbol, each group in row order
            take = order[accepted[order]]
            group_slot, bounds = _groups(slot[take])
        if len(group_slot) == 0:
            return StreamUpdate(np.full((n, N_FEATURES), np.nan, np.float32), np.zeros(n, np.bool_), accepted,
                                refusals, rows.ts, rows.code, rows.names)
        o, h, l, c = (x if take is None else x[take] for x in (rows.o, rows.h, rows.l, rows.c))
        run = engines.advance(o, h, l, c, bounds, self.config, self.engine, self._start_states(group_slot, n_known),
                              self._kernels)
        if take is None:                             # the kernel's rows are the input's rows
            feats, valid = to_numpy(run.features), to_numpy(run.valid)
        else:
            feats, valid = np.full((n, N_FEATURES), np.nan, np.float32), np.zeros(n, np.bool_)
            feats[take], valid[take] = to_numpy(run.features), to_numpy(run.valid)
        if commit:
            self._commit(rows, np.arange(n) if take is None else take, group_slot, bounds, run, n_known)
        return StreamUpdate(feats, valid, accepted, refusals, rows.ts, rows.code, rows.names)

    def _start_states(self, group_slot: np.ndarray, n_known: int):
        """``[G, D]`` states before each group's first bar: a symbol's own, the initial state for a new one
        (a view when the slots are a range: the engine copies what it is given)."""
        xp = self._xp
        known = group_slot < n_known
        if known.all():
            span = _span(group_slot)
            return self._states[span] if span is not None else xp.take(self._states, xp.asarray(group_slot), axis=0)
        start = xp.zeros((len(group_slot), self._states.shape[1]), dtype=np.float64)
        if known.any():
            start[xp.asarray(np.flatnonzero(known))] = self._states[xp.asarray(group_slot[known])]
        return start

    def _commit(self, rows: _Rows, take, group_slot, bounds, run, n_known: int) -> None:
        """Move the touched symbols past their accepted bars: new symbols join, then states, windows and last
        times are assigned (numpy/CuPy assignments of checked bars: nothing here depends on the input's validity)."""
        xp, K = self._xp, self.config.window_length
        new = group_slot >= n_known
        if new.any():  # symbols seen for the first time with an accepted bar, in order of first appearance
            provisional = group_slot[new]
            firsts = np.argsort(provisional, kind="stable")
            final = np.empty(len(provisional), dtype=np.int64)
            final[firsts] = n_known + np.arange(len(provisional))
            names = [rows.names[int(p) - n_known] for p in provisional[firsts]]
            group_slot = group_slot.copy()
            group_slot[new] = final
            self._grow(names)
        counts = np.diff(bounds)
        if len(group_slot) == len(take):                           # one bar per symbol
            member, local, keep = group_slot, self._bars[group_slot], slice(None)
        else:
            member = np.repeat(group_slot, counts)                 # slot of each accepted bar, grouped
            local = np.repeat(self._bars[group_slot], counts) + (np.arange(len(take)) - np.repeat(bounds[:-1], counts))
            recent = local >= np.repeat(self._bars[group_slot] + counts - K, counts)  # only the last K bars land
            member, local, keep = member[recent], local[recent], xp.asarray(np.flatnonzero(recent))
        at = xp.asarray(member * K + local % K)                    # row of the flattened [S * K] ring
        self._ring_f.reshape(-1, N_FEATURES)[at] = run.features[keep]
        self._ring_v.reshape(-1)[at] = run.valid[keep]
        span = _span(group_slot)   # every symbol in the stream's order (a feed's usual call): slices, not gathers
        self._states[span if span is not None else xp.asarray(group_slot)] = run.end_states
        self._bars[span if span is not None else group_slot] += counts
        self._last_time[span if span is not None else group_slot] = rows.ts[take[bounds[1:] - 1]]
        if self._pending is not None:
            names = np.array(self.symbols, dtype=object)[np.repeat(group_slot, counts)]
            self._pending.append((names, rows.ts[take], rows.o[take], rows.h[take], rows.l[take], rows.c[take]))
        if self.origin.get("kind") == "store":
            self.origin = dict(self.origin, bars_after=self.origin.get("bars_after", 0) + len(take))

    def _grow(self, names: list[str]) -> None:
        xp, K, m = self._xp, self.config.window_length, len(names)
        self._states = xp.concatenate([self._states, xp.zeros((m, self._states.shape[1]), dtype=np.float64)])
        self._ring_f = xp.concatenate([self._ring_f, xp.zeros((m, K, N_FEATURES), dtype=np.float32)])
        self._ring_v = xp.concatenate([self._ring_v, xp.zeros((m, K), dtype=np.bool_)])
        self._bars = np.concatenate([self._bars, np.zeros(m, dtype=np.int64)])
        self._last_time = np.concatenate([self._last_time, np.full(m, NO_TIME, dtype=np.int64)])
        for name in names:
            self._index[name] = len(self.symbols)
            self.symbols.append(name)

    def _refusal(self, r: int, rows: _Rows, rule: str, after: int) -> Refusal:
        code = int(rows.code[r])
        symbol = rows.names[code] if code >= 0 else None
        t = int(rows.ts[r])
        when = iso_time(t)
        if rule == _NO_SYMBOL_RULE:
            msg = f"the bar at {when} has no symbol, so it was refused and changed nothing; give every bar its symbol."
        elif rule == _TIME_RULE:
            msg = (f"{symbol} bar at {when} breaks the rule '{rule}' (at {iso_time(after)}), so it was refused and "
                   f"{symbol} goes on from its bar at {iso_time(after)}; send each symbol's bars once, in increasing "
                   "time.")
        else:
            msg = (f"{symbol} bar at {when} breaks the rule '{rule}', so it was refused and {symbol} goes on from "
                   "its last accepted bar; fix the bar's prices.")
        return Refusal(r, symbol, t, rule, msg)

    # --- input --------------------------------------------------------------------------------
    def _rows(self, bars) -> _Rows:
        """Decode the input (see :meth:`update`) into :class:`_Rows`; raises BarsError when it cannot be read."""
        if isinstance(bars, Bars):
            b = bars.on_host()
            if b.segment_names is not self._names_cache[0] and len(set(b.segment_names)) != len(b.segment_names):
                raise BarsError("the bars cut a symbol at a roll (a symbol has several segments); a stream continues "
                                "each symbol's series, so give one segment per symbol.")
            code = b.segment_of()
            return _Rows(*(np.asarray(x, dtype=np.float64) for x in (b.open, b.high, b.low, b.close)),
                         np.asarray(b.timestamp, dtype=np.int64), code, tuple(b.segment_names))
        if isinstance(bars, Mapping):
            import pyarrow as pa

            try:
                bars = pa.table(dict(bars))
            except Exception as err:  # pyarrow says which column it could not convert
                first = str(err).splitlines()[0]
                raise BarsError(f"the columns could not be made a table ({first}); give equal-length columns time, "
                                "symbol, open, high, low, close.") from None
        if not is_table(bars):
            raise BarsError(f"a stream takes a pyarrow, pandas or polars table, a dict of columns or a Bars, got "
                            f"{type(bars).__name__}; give columns time, symbol, open, high, low, close.")
        table = table_from_object(bars)
        if table.num_rows == 0:
            e = np.zeros(0)
            return _Rows(e, e, e, e, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), ())
        column = _symbol_column(table, self._spec)
        if column is None:
            if len(self.symbols) != 1:
                raise BarsError(f"the bars have no symbol column and the stream holds {len(self.symbols)} symbols; "
                                "add a symbol column saying whose each bar is.")
            code, names = np.zeros(table.num_rows, dtype=np.int64), (self.symbols[0],)
        else:
            code, names = _symbol_codes(table.column(column), self._dictionary)
            table = table.drop_columns([column])  # the stream maps symbols to its own slots (below)
        dec = decode_table("the bars", table, self._spec.replace(symbol_column=None), {"kind": "memory"})
        p = dec.prices
        return _Rows(p["open"], p["high"], p["low"], p["close"], dec.timestamp, code, names)

    def _slots(self, rows: _Rows) -> np.ndarray:
        """``[n] int64`` slot of each row: a known symbol's, ``len(symbols) + j`` for the j-th new name, -1 for none."""
        cached_names, cached_n, cached = self._names_cache
        if rows.names == cached_names and cached_n == len(self.symbols):
            per_name = cached
        else:
            n_known = len(self.symbols)
            per_name = np.array([self._index.get(name, n_known + j) for j, name in enumerate(rows.names)],
                                dtype=np.int64)
            if len(per_name) and per_name.max() < n_known:   # every name known: reuse while the symbols stay
                self._names_cache = (rows.names, n_known, per_name)
        slot = per_name[np.maximum(rows.code, 0)] if len(per_name) else np.full(rows.n, -1, dtype=np.int64)
        return np.where(rows.code >= 0, slot, -1)

    # --- windows and state --------------------------------------------------------------------
    def window(self, symbols=None):
        """The latest K bars of each symbol, oldest first: ``(X [S, K, 10] float32, valid [S, K] bool)``.

        torch tensors on the stream's device. Rows before a series' first bar are zeros with valid False.
        ``symbols``: names (default: every symbol, in :attr:`symbols` order); an unknown name is refused.
        """
        from .devices import as_device_tensor

        X, valid = self._window(self._slot_list(symbols))
        return as_device_tensor(X, self.device), as_device_tensor(valid, self.device)

    def _slot_list(self, symbols) -> np.ndarray:
        if symbols is None:
            return np.arange(len(self.symbols), dtype=np.int64)
        if isinstance(symbols, str):
            symbols = [symbols]
        unknown = [s for s in symbols if s not in self._index]
        if unknown:
            raise StreamError(f"symbol(s) {', '.join(map(str, unknown[:5]))} have no bars in this stream; ask for "
                              f"symbols it holds ({len(self.symbols)}: {', '.join(self.symbols[:5])} ...).")
        return np.array([self._index[s] for s in symbols], dtype=np.int64)

    def _window(self, slots: np.ndarray):
        """``(X [S, K, 10], valid [S, K])`` on the engine's device (numpy or CuPy)."""
        xp, K = self._xp, self.config.window_length
        local = self._bars[slots][:, None] - K + np.arange(K)[None, :]   # local bar index of each window row
        present = local >= 0
        s_idx = xp.asarray(np.repeat(slots, K).reshape(len(slots), K))
        r_idx = xp.asarray(np.mod(local, K))
        X = self._ring_f[s_idx, r_idx]
        valid = self._ring_v[s_idx, r_idx] & xp.asarray(present)
        X[~xp.asarray(present)] = 0.0
        return X, valid

    def states(self, symbols=None) -> np.ndarray:
        """``[S, 16 + P] float64`` engine state of each symbol after its last bar, on the host (a copy).

        ``symbols``: names (default: every symbol, in :attr:`symbols` order). gpu_features/state.py names the fields.
        """
        return to_numpy(self._states[self._xp.asarray(self._slot_list(symbols))]).copy()

    def state(self) -> StreamState:
        """The whole state, on the host (what :meth:`save` writes)."""
        X, valid = self._window(np.arange(len(self.symbols), dtype=np.int64))
        return StreamState(self.config, tuple(self.symbols), to_numpy(self._states).copy(), self._last_time.copy(),
                           to_numpy(X), to_numpy(valid), dict(self.origin))

    def save(self, path) -> Path:
        """Write :meth:`state` to ``path`` (one safetensors file with JSON metadata), atomically; only a new
        path or an earlier stream state is replaced (:func:`check_state_path`)."""
        from safetensors.numpy import save_file

        path = check_state_path(path)
        st = self.state()
        tmp = temp_sibling(path, "tmp")
        try:
            save_file(st.tensors(), str(tmp), metadata=st.metadata())
            fsync_file(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return path

    # --- committing ---------------------------------------------------------------------------
    @property
    def pending_bars(self) -> int:
        """Accepted bars kept for :meth:`commit` (0 unless the stream keeps them, ``keep_for_commit``)."""
        return sum(len(p[1]) for p in self._pending or [])

    def commit(self, store_path, engine: str | None = None):
        """Append the bars accepted since the stream was opened from ``store_path`` (or last committed) to it.

        Uses the store's own append machinery (:func:`gpu_features.store.append_store`, as ``--append``),
        so the store afterwards equals an append of the same bars; then the stream's state is checked,
        bit for bit, against the store's new end states. Needs a stream opened with ``keep_for_commit``
        from this store (or a state saved in step with it), and the store unchanged since.

        Returns:
            The reopened store (as it was when nothing is pending).
        """
        from .store import append_store, open_store

        if self._pending is None:
            raise StreamError("this stream keeps no bars to commit; open it with keep_for_commit=True "
                              "(FeatureStream.from_store or load).")
        store = open_store(store_path, checksums=False)
        origin, mark = self.origin, _store_mark(store)
        if origin.get("kind") != "store" or origin.get("path") != str(Path(store.path).resolve()):
            where = f"the store {origin.get('path')}" if origin.get("kind") == "store" else "a config"
            raise StreamError(f"{store_path}: the stream was not opened from this store but from {where}; open a "
                              "stream from this store to commit to it.")
        if {k: origin.get(k) for k in mark} != mark:
            raise StreamError(f"{store_path}: the store changed since the stream was opened from it (another append "
                              "or a rebuild); open a new stream from the store and feed the bars again.")
        if origin.get("bars_after", 0) != self.pending_bars:
            raise StreamError(f"{store_path}: the stream took {origin.get('bars_after', 0) - self.pending_bars} bar(s) "
                              "beyond the store before it kept bars for a commit (a state saved ahead of the store); "
                              "open a new stream from the store and feed those bars again.")
        if not self._pending:
            return store
        names, ts, o, h, l, c = (np.concatenate([p[k] for p in self._pending]) for k in range(6))
        order = np.lexsort((np.arange(len(ts)), names.astype(str)))  # by symbol, each in arrival (= time) order
        names = names[order]
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]]).astype(np.int64)
        ingest = {"policy": "error", "rows_read": int(len(ts)), "symbol_column": True, "dropped": {}, "repaired": {},
                  "bars": int(len(ts))}
        bars = Bars(*(x[order] for x in (o, h, l, c, ts)), starts, tuple(str(names[s]) for s in starts),
                    {"via": "gpu-features stream"}, ingest)
        done = append_store(store_path, bars, engine=engine or self.engine)
        ends = done.states()["end_state"]
        index = {name: k for k, name in enumerate(done.symbols)}
        mine = to_numpy(self._states)
        wrong = [s for s in self.symbols if s in index
                 and not np.array_equal(ends[index[s]].view(np.uint64), mine[self._index[s]].view(np.uint64))]
        if wrong:
            raise StreamError(f"after the commit the store's end state of {', '.join(wrong[:5])} differs from the "
                              "stream's; this is a bug in gpu-features, please report it.")
        self._pending = []
        self.origin = _store_origin(done)
        return done


def _store_mark(store) -> dict:
    """What identifies a store's content for :meth:`FeatureStream.commit`: bars, appends, creation time."""
    return {"n_bars": int(store.n_bars), "appends": len(store.appends), "created": store.created}


def _store_origin(store) -> dict:
    """The ``origin`` of a stream equal to ``store``; ``bars_after`` counts the bars it took since."""
    return {"kind": "store", "path": str(Path(store.path).resolve()), **_store_mark(store), "bars_after": 0}


def _open_engine(engine: str, atr_period: int):
    """``(engine name, kernel backend or None, note)``: ``auto`` falls back to the reference when the host
    kernels cannot be built here (the same bits, slower), saying why."""
    name = engines.resolve(engine)
    if name == "reference":
        return name, None, ""
    try:
        return name, engines.backend(name, atr_period), ""
    except EngineError as err:
        if engine != "auto":
            raise
        return "reference", None, f"the {name} engine could not run ({err}), so the reference engine runs instead"


def _time_rule(slot: np.ndarray, ts: np.ndarray, ok: np.ndarray, last: np.ndarray):
    """Each bar's time must be after its symbol's last accepted bar, taking the rows in order.

    Args:
        slot: ``[n]`` symbol slot of each row (-1: none); ts ``[n]`` ns; ok ``[n]`` rows breaking no other rule.
        last: ``[slots]`` last accepted time of each slot before this call.

    Returns:
        ``(order [n], after [n])``: the rows grouped by slot, each group in row order (None when no symbol has
        two rows: the rows stay as they are); and for each row the time it must be after: the latest of its
        symbol's last time and the times of the earlier ``ok`` rows of its symbol (a bar refused for its time
        is never later than that, so it moves nothing).
    """
    n = len(ts)
    last = np.append(last, NO_TIME)   # slot -1 (no symbol) reads this
    if np.bincount(slot + 1)[1:].max(initial=0) <= 1:  # at most one bar per symbol: the common live case
        return None, last[slot]
    order = np.argsort(slot, kind="stable")
    s = slot[order]
    first = np.r_[True, s[1:] != s[:-1]]
    after = np.empty(n, dtype=np.int64)
    base = last[s]
    # Running maximum of the ok rows' times within each group, via dense ranks: group g's keys lie in
    # [g (U + 1), g (U + 1) + U], so the maximum never leaks across groups; key 0 of a group = no ok row yet.
    t = ts[order]
    uniq, rank = np.unique(t, return_inverse=True)
    span = len(uniq) + 1
    g = np.cumsum(first) - 1
    key = g * span + np.where(ok[order], rank.ravel() + 1, 0)
    running = np.maximum.accumulate(key)
    before = np.empty(n, dtype=np.int64)
    before[0] = 0
    before[1:] = running[:-1]
    before = np.where(first, g * span, before) - g * span - 1   # rank of the latest earlier ok row, -1: none
    in_call = np.where(before >= 0, uniq[np.maximum(before, 0)], NO_TIME)
    after[order] = np.maximum(base, in_call)
    return order, after


def _span(slots: np.ndarray) -> slice | None:
    """``slice(a, b)`` when ``slots`` are ``a, a + 1, ..., b - 1``, else None."""
    a, n = int(slots[0]), len(slots)
    if int(slots[-1]) != a + n - 1 or (n > 2 and not bool(np.all(np.diff(slots) == 1))):
        return None
    return slice(a, a + n)


def _groups(sorted_slots: np.ndarray):
    """``(group_slot [G], bounds [G + 1])`` of slots already grouped (equal slots adjacent)."""
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]).astype(np.int64)
    return sorted_slots[starts], np.append(starts, len(sorted_slots)).astype(np.int64)


def _symbol_column(table, opts: ReadSpec) -> str | None:
    """The table's symbol column (``opts.symbol_column`` or ``symbol``, any case), or None."""
    wanted = (opts.symbol_column or "symbol").strip().lower()
    for name in table.column_names:
        if str(name).strip().lower() == wanted:
            return name
    if opts.symbol_column:
        raise BarsError(f"the bars have no symbol column '{opts.symbol_column}' (found: "
                        f"{', '.join(map(str, table.column_names))}).")
    return None


def _symbol_codes(col, cache: list) -> tuple[np.ndarray, tuple]:
    """``(code [n] int64, names)``: each row's index into the distinct names in order of appearance, -1 if null.

    ``cache``: ``[dictionary, names]`` of the previous call; a feed that sends the same symbols in the same
    order gets the same names tuple back without making Python strings of them again.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if cache[0] is None or not arr.dictionary.equals(cache[0]):
        cache[:] = [arr.dictionary, tuple(str(x) for x in arr.dictionary.cast(pa.string()).to_pylist())]
    indices = arr.indices.fill_null(-1) if arr.indices.null_count else arr.indices
    return indices.to_numpy(zero_copy_only=False).astype(np.int64), cache[1]


def _store_state(store) -> StreamState:
    """The stream state a store ends in: end states, last times and the last K bars of each symbol's series."""
    cfg = store.config
    K = cfg.window_length
    ends = store.states()["end_state"]
    ts, feats, valid = store.timestamps(), store.array("features"), store.array("valid")
    n = len(store.symbols)
    last_time = np.full(n, NO_TIME, dtype=np.int64)
    window_f = np.zeros((n, K, N_FEATURES), dtype=np.float32)
    window_v = np.zeros((n, K), dtype=np.bool_)
    chains: dict[str, list] = {}
    for seg in store.segments:
        chain = chains.setdefault(seg.name, [])
        if seg.restart:
            chain.clear()  # a roll: the series starts again from the initial state
        chain.append(seg)
    for k, name in enumerate(store.symbols):
        chain = chains.get(name, [])
        count = sum(seg.count for seg in chain)
        if not chain or count != int(ends[k, S.BARS]):
            raise StoreError(f"{store.path}: the end state of {name} counts {int(ends[k, S.BARS])} bars but its series "
                             f"holds {count}; the store is inconsistent, so rebuild it with precompute.")
        positions = np.concatenate([np.arange(seg.first, seg.stop, dtype=np.int64) for seg in chain])[-K:]
        window_f[k, K - len(positions):] = feats[positions]
        window_v[k, K - len(positions):] = valid[positions]
        last_time[k] = ts[chain[-1].stop - 1]
    return StreamState(cfg, tuple(store.symbols), ends, last_time, window_f, window_v, _store_origin(store))


def check_state_path(path, option: str = "--save") -> Path:
    """Refuse a place a stream state may not be written to; returns it as an absolute path.

    Only our own files are replaced: a new path, or an existing file that is a stream state (its
    safetensors metadata says so). Refused: a folder, a path inside a feature store or dataset (its
    folder holds only its own files), and any other existing file.
    """
    from .fileio import absolute
    from .store import check_outside_artifact
    from .store.format import read_safetensors_header

    out = absolute(path)
    if out.is_dir():
        raise StreamError(f"{option} {path} is a folder; give a file name like stream.safetensors.")
    check_outside_artifact(out, f"{option} {path}", "save the stream state elsewhere", StreamError)
    if out.exists() or out.is_symlink():
        try:
            ours = read_safetensors_header(out, str(path)).get("__metadata__", {}).get("format") == FORMAT
        except (StoreError, OSError, AttributeError):
            ours = False
        if not ours:
            raise StreamError(f"{option} {path} already exists and is not a stream state gpu-features saved; "
                              "refusing to replace it, so choose another name (or move the file away).")
    return out


def read_state(path) -> StreamState:
    """Read and check a file written by :meth:`FeatureStream.save` (refused with one sentence otherwise)."""
    from safetensors import SafetensorError, safe_open

    from .engines.abi import sources_digest

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise StreamError(f"{path}: no such stream state file; give a file written by --save (FeatureStream.save).") \
            from None
    except (SafetensorError, OSError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else "unreadable"
        raise StreamError(f"{path}: not a readable stream state ({why}); give a file written by --save "
                          "(FeatureStream.save).") from None
    if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
        raise StreamError(f"{path}: not a gpu-features stream state of version {VERSION} (format "
                          f"{meta.get('format')!r}, version {meta.get('version')!r}); give a file written by --save.")
    digest = sources_digest().hexdigest()
    if meta.get("kernel_sources") != digest:
        saved = str(meta.get("kernel_sources"))[:12]
        raise StreamError(f"{path}: the stream state was saved with other kernel sources ({saved} ..., these are "
                          f"{digest[:12]} ...), so it may not continue bit for bit; open the stream from the store "
                          "again.")
    try:
        config = FeatureConfig.from_json(meta.get("config", ""))
        symbols = tuple(json.loads(meta.get("symbols", "")))
        origin = json.loads(meta.get("origin", "null"))
    except (ValueError, TypeError) as err:
        raise StreamError(f"{path}: the stream state's metadata is damaged ({err}); save the stream again.") from None
    n, K, D = len(symbols), config.window_length, S.state_dim(config.atr_period)
    shapes = {"state": (n, D), "last_time": (n,), "window_features": (n, K, N_FEATURES), "window_valid": (n, K)}
    for name, dtype in _TENSORS.items():
        got = tensors.get(name)
        if got is None or got.dtype != dtype or got.shape != shapes[name]:
            what = "missing" if got is None else f"{got.dtype} {tuple(got.shape)}"
            raise StreamError(f"{path}: tensor '{name}' is {what}, expected {np.dtype(dtype)} {shapes[name]}; the file "
                              "is damaged, so save the stream again.")
    if len(set(symbols)) != n or not all(isinstance(s, str) for s in symbols):
        raise StreamError(f"{path}: the symbols of the stream state are not distinct names; save the stream again.")
    return StreamState(config, symbols, tensors["state"], tensors["last_time"], tensors["window_features"],
                       tensors["window_valid"], origin if isinstance(origin, dict) else {"kind": "config"})
