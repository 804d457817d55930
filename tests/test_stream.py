"""The live stream equals the offline build bit for bit (features, validity, float64 states, windows).

Every check compares raw bits with the offline build: the store's features and
validity, its end states, and the reference engine's state snapshot after
every bar (``engines.run(snapshot_at=...)``), so one ULP anywhere fails.
"""
import json
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_features as gf
from gpu_features import engines, synthetic
from gpu_features import state as S
from gpu_features.arrays import to_numpy
from gpu_features.ingest import Bars
from gpu_features.engines import gpu, host, launch
from gpu_features.errors import BarsError, StreamError
from gpu_features.splits import iso_time
from gpu_features.stream import FeatureStream, read_state
from tests.harness import STORE_ENGINE, random_bars

N_BARS = 320          # per symbol: past warm-up (60) and K (105) with swings on both sides
WARMUP = gf.FeatureConfig().warmup_bars


# --- the offline truth ------------------------------------------------------------------------


class Offline:
    """The offline build of some bars: a store (features, validity, end states) and, from the reference
    engine, the exact state after every bar."""

    def __init__(self, bars: Bars, store):
        self.bars, self.store = bars, store
        self.bounds = bars.segment_bounds()
        self.features, self.valid = store.array("features"), store.array("valid")
        n = bars.n
        run = engines.run(bars.open, bars.high, bars.low, bars.close, bars.offsets, store.config, "reference",
                          snapshot_at=np.arange(n))
        after = np.empty_like(run.snapshots)
        after[:-1] = run.snapshots[1:]
        after[self.bounds[1:] - 1] = run.end_states   # the last bar of a series: its end state
        self.after = after
        ends = store.states()["end_state"]
        assert bits(ends) == bits(run.end_states) and bits(self.features) == bits(run.features), \
            "the store and the reference engine disagree"

    def position(self, symbol: str, local: int) -> int:
        return int(self.bounds[self.bars.segment_names.index(symbol)] + local)


def bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def assert_bits(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    if bits(got) != bits(want):
        g, w = (x.reshape(len(x), -1).view(np.uint8) for x in (got, want))
        rows = np.flatnonzero(np.any(g != w, axis=1))
        raise AssertionError(f"{what}: differs in {len(rows)} row(s), first {list(rows[:5])}: {got[rows[:2]]!r} vs "
                             f"{want[rows[:2]]!r}")


def prefix(bars: Bars, p: int) -> Bars:
    """The first ``p`` bars of every series (a series shorter than p whole)."""
    b = bars.segment_bounds()
    idx = np.concatenate([np.arange(b[s], min(b[s] + p, b[s + 1])) for s in range(bars.n_segments)])
    lengths = [min(p, int(b[s + 1] - b[s])) for s in range(bars.n_segments)]
    return Bars(bars.open[idx], bars.high[idx], bars.low[idx], bars.close[idx], bars.timestamp[idx],
                np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), bars.segment_names)


def as_table(bars: Bars, rows, form: str = "arrow"):
    """Rows of ``bars`` (global positions, in the given order) as an input the stream takes."""
    rows = np.asarray(rows, dtype=np.int64)
    names = np.array(bars.segment_names, dtype=object)[bars.segment_of()[rows]]
    cols = {"time": pa.array(bars.timestamp[rows], pa.timestamp("ns", tz="UTC")), "symbol": names.tolist(),
            "open": bars.open[rows], "high": bars.high[rows], "low": bars.low[rows], "close": bars.close[rows]}
    if form == "arrow":
        return pa.table(cols)
    if form == "pandas":
        return pa.table(cols).to_pandas()
    if form == "dict":
        return dict(cols, time=bars.timestamp[rows])  # epoch ns integers
    if form == "bars":  # a Bars: series grouped (in the given order of first appearance)
        series = bars.segment_of()[rows]
        order = np.argsort(pd_first_seen(series), kind="stable")
        rows, series = rows[order], series[order]
        starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]]).astype(np.int64)
        return Bars(bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows], bars.timestamp[rows], starts,
                    tuple(bars.segment_names[int(series[s])] for s in starts)), rows
    raise ValueError(form)


def pd_first_seen(series: np.ndarray) -> np.ndarray:
    """Each row's rank of its series by first appearance (to group a Bars keeping the call's symbol order)."""
    _, first = np.unique(series, return_index=True)
    rank = np.empty(series.max() + 1, dtype=np.int64)
    rank[series[np.sort(first)]] = np.arange(len(first))
    return rank[series]


def calls(bars: Bars, start: int, group, rng, shuffle: bool = True):
    """The remaining bars of every series from local bar ``start`` on, cut into calls of ``group`` bars per
    symbol (an int, or "random": 1 .. 12 per symbol per call); rows of a call interleave the symbols at
    random, each symbol's bars keeping their order. Yields arrays of global bar positions."""
    b = bars.segment_bounds()
    pos = [int(b[s]) + start for s in range(bars.n_segments)]
    while any(pos[s] < b[s + 1] for s in range(bars.n_segments)):
        rows, owner = [], []
        for s in range(bars.n_segments):
            g = int(rng.integers(1, 13)) if group == "random" else group
            take = list(range(pos[s], min(pos[s] + g, int(b[s + 1]))))
            rows += take
            owner += [s] * len(take)
            pos[s] += len(take)
        rows, owner = np.array(rows, dtype=np.int64), np.array(owner)
        if shuffle:
            slots = rng.permutation(len(rows))          # a random interleaving of the symbols ...
            mixed = np.empty_like(rows)
            for s in np.unique(owner):                  # ... keeping each symbol's bars in order
                mixed[np.sort(slots[owner == s])] = rows[owner == s]
            rows = mixed
        yield rows


def check_parity(stream: FeatureStream, off: Offline, start: int, group, seed: int = 0, form: str = "arrow",
                 shuffle: bool = True) -> None:
    """Feed the bars after local bar ``start`` and compare every output with the offline build, as raw bits."""
    rng = np.random.default_rng(seed)
    for rows in calls(off.bars, start, group, rng, shuffle):
        if form == "bars":
            inp, rows = as_table(off.bars, rows, "bars")
        else:
            inp = as_table(off.bars, rows, form)
        out = stream.update(inp)
        assert out.refusals == [] and out.accepted.all()
        assert_bits(out.features, off.features[rows], f"features of bars {rows[:4]}...")
        assert_bits(out.valid, off.valid[rows], f"validity of bars {rows[:4]}...")
        series = off.bars.segment_of()[rows]
        last = {int(s): int(r) for s, r in zip(series, rows)}          # each touched symbol's last bar here
        names = [off.bars.segment_names[s] for s in last]
        assert_bits(stream.states(names), off.after[list(last.values())], f"states after bars {rows[:4]}...")
    assert_bits(stream.states(list(off.bars.segment_names)), off.store.states()["end_state"], "end states")
    check_windows(stream, off)


def check_windows(stream: FeatureStream, off: Offline) -> None:
    K = off.store.config.window_length
    X, valid = stream.window(list(off.bars.segment_names))
    for s, name in enumerate(off.bars.segment_names):
        a, b = int(off.bounds[s]), int(off.bounds[s + 1])
        m = min(K, b - a)
        assert_bits(X[s, K - m:].numpy(), off.features[b - m:b], f"window of {name}")
        assert_bits(valid[s, K - m:].numpy(), off.valid[b - m:b], f"window validity of {name}")
        assert not valid[s, :K - m].any() and not X[s, :K - m].any()


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three synthetic symbols of N_BARS bars and their offline store."""
    bars = synthetic.generate(N_BARS, 3, seed=5)
    store = gf.precompute(bars, tmp_path_factory.mktemp("stream") / "full", engine=STORE_ENGINE)
    return Offline(bars, store)


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("opened_at", [0, WARMUP, WARMUP + 13, N_BARS // 2, N_BARS - 1])
def test_opened_at_any_point_continues_bit_for_bit(engine, three, opened_at, make_store, tmp_path):
    """Open at warm-up, warm-up + 13, n/2, n - 1 (and fresh at 0): every later bar equals the offline store."""
    if opened_at == 0:
        stream = FeatureStream(three.store.config, engine=engine)
    else:
        make_store(prefix(three.bars, opened_at), tmp_path / "prefix")
        stream = FeatureStream.from_store(tmp_path / "prefix", engine=engine)
        assert_bits(stream.states(list(three.bars.segment_names)),
                    three.after[[three.position(s, opened_at - 1) for s in three.bars.segment_names]], "opened state")
    assert stream.engine == engine
    check_parity(stream, three, opened_at, group=1)


@pytest.mark.parametrize("group", [1, 7, 105, "random"])
def test_any_grouping_of_bars_into_calls_and_any_symbol_order(engine, three, group, make_store, tmp_path):
    make_store(prefix(three.bars, 40), tmp_path / "prefix")
    check_parity(FeatureStream.from_store(tmp_path / "prefix", engine=engine), three, 40, group, seed=11)


@pytest.mark.parametrize("form", ["pandas", "dict", "bars"])
def test_every_input_form_gives_the_same_bits(fast_engine, three, form):
    stream = FeatureStream(three.store.config, engine=fast_engine)
    check_parity(stream, three, 0, group="random", seed=3, form=form)


def test_without_symbol_order_shuffling_too(three):
    check_parity(FeatureStream(three.store.config, engine="reference"), three, 0, group=13, shuffle=False)


def test_many_symbols_some_appearing_mid_stream(fast_engine, make_store, tmp_path):
    """40 symbols of different lengths; 12 of them have no bar in the store and first appear mid-stream."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(150, 400, size=40)
    o, h, l, c, offsets = random_bars(rng, lengths)
    ts = np.concatenate([1_700_000_000_000_000_000 + 60_000_000_000 * (np.arange(m) + 400 - m) for m in lengths])
    names = tuple(f"S{k:02d}" for k in range(40))
    bars = Bars(o, h, l, c, ts, offsets, names)
    off = Offline(bars, make_store(bars, tmp_path / "full"))
    early = [k for k in range(40) if k % 10 < 7]  # 28 symbols in the store, 12 new ones
    sub = prefix(bars, 100)
    keep = np.concatenate([np.arange(sub.segment_bounds()[k], sub.segment_bounds()[k + 1]) for k in early])
    stored = Bars(sub.open[keep], sub.high[keep], sub.low[keep], sub.close[keep], sub.timestamp[keep],
                  np.arange(len(early), dtype=np.int64) * 100, tuple(names[k] for k in early))
    make_store(stored, tmp_path / "early")
    stream = FeatureStream.from_store(tmp_path / "early", engine=fast_engine)
    # The stored symbols continue from bar 100; the new ones start from their first bar, mid-stream.
    for rows in calls(off.bars, 0, "random", rng):
        local = rows - off.bounds[off.bars.segment_of()[rows]]
        stored_row = np.isin(off.bars.segment_of()[rows], early) & (local < 100)
        rows = rows[~stored_row]
        if len(rows) == 0:
            continue
        out = stream.update(as_table(off.bars, rows))
        assert out.accepted.all()
        assert_bits(out.features, off.features[rows], "features")
        assert_bits(out.valid, off.valid[rows], "validity")
    assert sorted(stream.symbols) == sorted(names)
    assert_bits(stream.states(list(names)), off.store.states()["end_state"], "end states")
    check_windows(stream, off)


# --- peek, refusals, persistence ----------------------------------------------------------------


def test_peek_changes_nothing_and_tells_what_update_will_give(fast_engine, three):
    stream = FeatureStream(three.store.config, engine=fast_engine)
    rng = np.random.default_rng(2)
    for k, rows in enumerate(calls(three.bars, 0, 3, rng)):
        if k % 5 == 0:
            before = stream.state()
            seen = stream.peek(as_table(three.bars, rows))
            after = stream.state()
            for name in ("state", "last_time", "window_features", "window_valid"):
                assert_bits(getattr(after, name), getattr(before, name), f"{name} after peek")
            assert after.symbols == before.symbols and after.origin == before.origin
            out = stream.update(as_table(three.bars, rows))
            assert_bits(seen.features, out.features, "peeked features")
            assert_bits(seen.valid, out.valid, "peeked validity")
        else:
            stream.update(as_table(three.bars, rows))
    assert_bits(stream.states(list(three.bars.segment_names)), three.store.states()["end_state"], "end states")


def _with_bad_bar(bars: Bars, rows, kind: str):
    """The call of ``rows`` with a bad bar of the first row's symbol inserted as row 1: a bar broken by one
    ingest rule, timed 1 ns after the first row (price rules), at its time ("repeat") or 2 min before ("past")."""
    r = int(rows[0])
    o, h, l, c = (np.insert(getattr(bars, k)[rows], 1, getattr(bars, k)[r]) for k in ("open", "high", "low", "close"))
    ts = np.insert(bars.timestamp[rows], 1, bars.timestamp[r] + {"repeat": 0, "past": -120_000_000_000}.get(kind, 1))
    names = np.array(bars.segment_names, dtype=object)[bars.segment_of()[rows]].tolist()
    names.insert(1, names[0])
    if kind == "nan":
        o[1] = np.nan
    elif kind == "nonpositive":
        l[1] = -1.0
    elif kind == "high_below_low":
        h[1], l[1] = l[1] - 1.0, h[1]
    elif kind == "low_above":
        l[1] = max(o[1], c[1]) + 0.5
        h[1] = max(h[1], l[1])
    return pa.table({"time": pa.array(ts, pa.timestamp("ns", tz="UTC")), "symbol": names, "open": o, "high": h,
                     "low": l, "close": c})


@pytest.mark.parametrize("kind, rule", [("nan", "price missing"), ("nonpositive", "<= 0"),
                                        ("high_below_low", "low above|high below"), ("low_above", "low above"),
                                        ("past", "not after"), ("repeat", "not after")])
def test_a_refused_bar_leaves_the_state_of_a_stream_that_never_saw_it(fast_engine, three, kind, rule):
    """A bad bar between good ones of its symbol, in a call with other symbols: only it is refused, and the
    state afterwards equals, bit for bit, a control stream fed only the good bars."""
    cfg = three.store.config
    stream, control = FeatureStream(cfg, engine=fast_engine), FeatureStream(cfg, engine=fast_engine)
    rng = np.random.default_rng(4)
    injected = 0
    for k, rows in enumerate(calls(three.bars, 0, 4, rng)):
        want = control.update(as_table(three.bars, rows))
        if k % 9 == 4:
            got = stream.update(_with_bad_bar(three.bars, rows, kind))
            assert len(got.refusals) == 1, got.refusals
            r = got.refusals[0]
            assert r.row == 1 and r.symbol == got.symbol(0) and re.search(rule, r.rule)
            assert r.symbol in r.message and r.rule in r.message and "refused" in r.message
            assert not got.accepted[1] and not got.valid[1] and np.isnan(got.features[1]).all()
            keep = np.r_[0, 2:len(rows) + 1]
            assert got.accepted[keep].all()
            assert_bits(got.features[keep], want.features, "the other bars of the call")
            assert_bits(got.valid[keep], want.valid, "their validity")
            injected += 1
        else:
            stream.update(as_table(three.bars, rows))
        a, b = stream.state(), control.state()
        for name in ("state", "last_time", "window_features", "window_valid"):
            assert_bits(getattr(a, name), getattr(b, name), f"{name} after call {k}")
    assert injected >= 5


def test_a_bar_of_a_new_symbol_refused_registers_nothing(three):
    stream = FeatureStream(three.store.config, engine="reference")
    out = stream.update({"time": [1, 2], "symbol": ["NEW", "ES"], "open": [1.0, 1.0], "high": [0.5, 2.0],
                         "low": [0.5, 0.5], "close": [1.0, 1.0]})
    assert out.accepted.tolist() == [False, True] and stream.symbols == ["ES"]
    assert out.refusals[0].symbol == "NEW" and "high below max(open, close)" in out.refusals[0].message
    out = stream.update({"time": [5], "symbol": [None], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.0]})
    assert out.refusals[0].rule == "no symbol" and stream.symbols == ["ES"]


def test_input_that_cannot_be_read_is_refused_whole_and_changes_nothing(three):
    stream = FeatureStream(three.store.config, engine="reference")
    stream.update(as_table(three.bars, [0, N_BARS]))
    before = stream.state()
    with pytest.raises(BarsError, match="missing column"):
        stream.update({"time": [10**18], "symbol": ["SYN0"], "open": [1.0], "high": [2.0], "low": [0.5]})
    with pytest.raises(BarsError, match="not a number"):
        stream.update({"time": [10**18], "symbol": ["SYN0"], "open": ["x"], "high": [2.0], "low": [0.5],
                       "close": [1.0]})
    with pytest.raises(BarsError, match="takes a pyarrow"):
        stream.update([1, 2, 3])
    assert_bits(stream.state().state, before.state, "state")
    assert stream.update(pa.table({"time": pa.array([], pa.int64()), "symbol": pa.array([], pa.string())})).n == 0


def test_the_symbols_of_each_table_are_read_afresh_when_they_change(three):
    """The names of a table's symbol column are cached between calls; a new set or order is read anew."""
    stream = FeatureStream(three.store.config, engine="reference")
    for k, order in enumerate([["SYN0", "SYN1"], ["SYN0", "SYN1"], ["SYN1", "SYN0"], ["SYN2", None, "SYN1"]]):
        out = stream.update({"time": [10**18 + k] * len(order), "symbol": order, "open": [1.0] * len(order),
                             "high": [2.0] * len(order), "low": [0.5] * len(order), "close": [1.0] * len(order)})
        assert out.symbols == order and out.accepted.tolist() == [s is not None for s in order]
    assert stream.symbols == ["SYN0", "SYN1", "SYN2"]
    assert stream.states(["SYN0", "SYN1", "SYN2"])[:, S.BARS].tolist() == [3, 4, 1]


def test_one_symbol_tables_may_omit_the_symbol_column(three):
    stream = FeatureStream(three.store.config, engine="reference")
    with pytest.raises(BarsError, match="no symbol column and the stream holds 0 symbols"):
        stream.update({"time": [1], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.0]})
    stream.update({"time": [1], "symbol": ["ES"], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.0]})
    out = stream.update({"time": [2], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.0]})
    assert out.accepted.all() and out.symbol(0) == "ES" and stream.states()[0, S.BARS] == 2


def test_the_read_spec_says_how_tables_are_read(three, make_store, tmp_path):
    """``spec`` (a ReadSpec or a dict of its fields) reads the tables; a store's stream reads them as the store's
    file was read (its recorded spec, as --append does), a dict keeping its allow_nonpositive."""
    from tests.harness import write_parquet

    negative = {"time": [10**18], "symbol": ["ES"], "open": [-1.0], "high": [-0.5], "low": [-2.0], "close": [-1.0]}
    out = FeatureStream(three.store.config, engine="reference").update(negative)
    assert out.refusals[0].rule == "price missing, non-finite or <= 0"
    allowed = FeatureStream(three.store.config, engine="reference", spec=gf.ReadSpec(allow_nonpositive=True))
    assert allowed.update(negative).accepted.all()
    chicago = FeatureStream(three.store.config, engine="reference", spec={"timezone": "America/Chicago"})
    out = chicago.update({"time": ["2024-01-02 09:30:00"], "symbol": ["ES"], "open": [1.0], "high": [2.0],
                          "low": [0.5], "close": [1.0]})
    assert out.accepted.all() and iso_time(int(out.time[0])).startswith("2024-01-02T15:30:00")
    with pytest.raises(BarsError, match="unknown read setting"):
        FeatureStream(three.store.config, engine="reference", spec={"time_zone": "UTC"})

    write_parquet(tmp_path / "bars.parquet", prefix(three.bars, 100))
    make_store(tmp_path / "bars.parquet", tmp_path / "s", spec=gf.ReadSpec(allow_nonpositive=True))
    assert FeatureStream.from_store(tmp_path / "s", engine="reference").allow_nonpositive
    assert FeatureStream.from_store(tmp_path / "s", engine="reference", spec={"timezone": "UTC"}).allow_nonpositive
    assert not FeatureStream.from_store(tmp_path / "s", engine="reference", spec=gf.ReadSpec()).allow_nonpositive


def test_save_and_load_in_another_process_continue_bit_for_bit(fast_engine, three, tmp_path):
    stream = FeatureStream(three.store.config, engine=fast_engine)
    rng = np.random.default_rng(8)
    done = 0
    for rows in calls(three.bars, 0, 10, rng):
        stream.update(as_table(three.bars, rows))
        done += 10
        if done >= 150:
            break
    path = stream.save(tmp_path / "live.stream")
    rest = np.concatenate(list(calls(three.bars, done, 10**6, rng)))
    pq.write_table(as_table(three.bars, rest), tmp_path / "rest.parquet")
    code = f"""
import numpy as np, pyarrow.parquet as pq
from safetensors.numpy import save_file
from gpu_features.stream import FeatureStream
s = FeatureStream.load({str(path)!r}, engine={fast_engine!r})
out = s.update(pq.read_table({str(tmp_path / 'rest.parquet')!r}))
save_file({{"features": out.features, "valid": out.valid}}, {str(tmp_path / 'out.safetensors')!r})
s.save({str(tmp_path / 'after.stream')!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    from safetensors.numpy import load_file

    got = load_file(str(tmp_path / "out.safetensors"))
    assert_bits(got["features"], three.features[rest], "features after load")
    assert_bits(got["valid"], three.valid[rest], "validity after load")
    after = FeatureStream.load(tmp_path / "after.stream", engine="reference")
    assert_bits(after.states(list(three.bars.segment_names)), three.store.states()["end_state"], "end states")
    check_windows(after, three)
    # and in this process, the same
    mine = FeatureStream.load(path, engine=fast_engine)
    assert_bits(mine.update(as_table(three.bars, rest)).features, three.features[rest], "features")


def test_a_state_file_from_other_kernels_or_config_is_refused(three, tmp_path, monkeypatch):
    stream = FeatureStream(three.store.config, engine="reference")
    stream.update(as_table(three.bars, [0, N_BARS, 2 * N_BARS]))
    path = stream.save(tmp_path / "s.stream")
    state = read_state(path)
    assert state.symbols == ("SYN0", "SYN1", "SYN2") and state.origin == {"kind": "config"}
    with pytest.raises(StreamError, match="saved with feature config"):
        FeatureStream.load(path, config=gf.FeatureConfig(warmup_bars=10))
    from gpu_features.engines import abi

    real = abi.sources_digest
    monkeypatch.setattr(abi, "sources_digest", lambda: type("D", (), {"hexdigest": lambda self: "0" * 64})())
    with pytest.raises(StreamError, match="other kernel sources"):
        FeatureStream.load(path)
    monkeypatch.setattr(abi, "sources_digest", real)
    (tmp_path / "junk.stream").write_bytes(b"not safetensors")
    with pytest.raises(StreamError, match="not a readable stream state"):
        FeatureStream.load(tmp_path / "junk.stream")
    with pytest.raises(StreamError, match="no such stream state"):
        FeatureStream.load(tmp_path / "missing.stream")


def test_an_empty_stream_saves_and_loads(tmp_path):
    stream = FeatureStream(gf.FeatureConfig(atr_period=3, window_length=8), engine="reference")
    back = FeatureStream.load(stream.save(tmp_path / "e.stream"))
    assert back.symbols == [] and back.config == stream.config
    X, valid = back.window()
    assert tuple(X.shape) == (0, 8, 10) and tuple(valid.shape) == (0, 8)


def test_save_replaces_only_an_earlier_stream_state(three, tmp_path):
    stream = FeatureStream(gf.FeatureConfig(atr_period=3, window_length=8), engine="reference")
    first = stream.save(tmp_path / "s.stream")
    assert stream.save(first) == first and FeatureStream.load(first).symbols == []  # ours: replaced
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's notes")
    for target, words in [(notes, "is not a stream state"), (tmp_path, "is a folder"),
                          (three.store.path / "s.stream", "lies inside the feature store")]:
        with pytest.raises(StreamError, match=words):
            stream.save(target)
    assert notes.read_text() == "the user's notes" and not (three.store.path / "s.stream").exists()


def test_window_refuses_unknown_symbols(three):
    stream = FeatureStream(three.store.config, engine="reference")
    stream.update(as_table(three.bars, [0]))
    with pytest.raises(StreamError, match="NOPE have no bars in this stream"):
        stream.window(["SYN0", "NOPE"])
    X, valid = stream.window("SYN0")
    assert tuple(X.shape) == (1, 105, 10) and valid.sum() == 0 and X[0, -1].any() and not X[0, :-1].any()


# --- the store: --append, mutation, devices -----------------------------------------------------


def test_commit_equals_append_of_the_same_bars(fast_engine, three, make_store, tmp_path):
    """Bars through a stream opened from a store, committed, give the store --append of the same bars gives."""
    from gpu_features.store import append_store
    from tests.harness import write_parquet
    from tests.store.test_append import per_symbol

    make_store(prefix(three.bars, 200), tmp_path / "a")
    make_store(prefix(three.bars, 200), tmp_path / "b")
    stream = FeatureStream.from_store(tmp_path / "a", engine=fast_engine, keep_for_commit=True)
    for rows in calls(three.bars, 200, "random", np.random.default_rng(9)):
        out = stream.update(as_table(three.bars, rows))
        assert_bits(out.features, three.features[rows], "streamed features")
    assert stream.pending_bars == 3 * (N_BARS - 200)
    a = stream.commit(tmp_path / "a")
    b = append_store(tmp_path / "b", write_parquet(tmp_path / "new.parquet", three.bars, 200), engine=STORE_ENGINE)
    for name in ("features", "valid", "timestamp"):
        assert_bits(a.array(name), b.array(name), name)
    sa, sb = a.states(), b.states()
    for name in sa:
        assert_bits(sa[name], sb[name], name)
    assert a.stats == b.stats and a.splits == b.splits and a.manifest["series"] == b.manifest["series"]
    for k, name in enumerate(three.bars.segment_names):   # and per symbol, the offline build of all the bars
        lo, hi = three.bounds[k], three.bounds[k + 1]
        assert_bits(per_symbol(a, name, "features"), three.features[lo:hi], f"{name} in the committed store")
    assert stream.pending_bars == 0 and stream.origin["n_bars"] == a.n_bars
    assert stream.commit(tmp_path / "a").n_bars == a.n_bars   # nothing pending: nothing changes


def test_commit_is_refused_unless_the_stream_kept_its_bars_and_the_store_is_unchanged(three, make_store, tmp_path):
    from gpu_features.store import append_store

    make_store(prefix(three.bars, 200), tmp_path / "a")
    make_store(prefix(three.bars, 200), tmp_path / "b")
    bar = {"time": [4_000_000_000_000_000_000], "symbol": ["SYN0"], "open": [1.0], "high": [2.0], "low": [0.5],
           "close": [1.0]}
    with pytest.raises(StreamError, match="keeps no bars"):
        FeatureStream.from_store(tmp_path / "a", engine="reference").commit(tmp_path / "a")
    other = FeatureStream.from_store(tmp_path / "b", engine="reference", keep_for_commit=True)
    other.update(bar)
    with pytest.raises(StreamError, match="not opened from this store"):
        other.commit(tmp_path / "a")
    late = FeatureStream.from_store(tmp_path / "a", engine="reference", keep_for_commit=True)
    late.update(bar)
    append_store(tmp_path / "a", as_table(three.bars, [200]).to_pandas().pipe(
        lambda df: Bars(df.open.values, df.high.values, df.low.values, df.close.values,
                        three.bars.timestamp[[200]], np.zeros(1, np.int64), ("SYN0",))), engine="reference")
    with pytest.raises(StreamError, match="changed since"):
        late.commit(tmp_path / "a")
    ahead = FeatureStream.from_store(tmp_path / "b", engine="reference")
    ahead.update(bar)
    resumed = FeatureStream.from_state(ahead.state(), engine="reference", keep_for_commit=True)
    with pytest.raises(StreamError, match="beyond the store"):
        resumed.commit(tmp_path / "b")


@pytest.mark.parametrize("engine_name", ["reference", pytest.param("host", marks=pytest.mark.skipif(
    not host.available(), reason="no C++ compiler for the host engine"))])
def test_a_one_ulp_change_in_an_engine_step_fails_the_parity_check(engine_name, three, monkeypatch):
    """Mutation check: nudge the EMA of one series by one ULP once, inside the engine's step; the parity
    check must notice (it compares raw bits of features and float64 states after every call)."""
    nudged = []

    def nudge(states):
        if not nudged:
            states[0, S.EMA] = np.nextafter(states[0, S.EMA], np.inf)
            nudged.append(True)

    if engine_name == "host":
        real = launch.run_advance

        def mutated(*args, **kwargs):
            run = real(*args, **kwargs)
            nudge(run.end_states)
            return run

        monkeypatch.setattr(launch, "run_advance", mutated)
    else:
        from gpu_features import reference

        real = reference.run_series

        def mutated(*args, **kwargs):
            end = real(*args, **kwargs)
            nudge(end[None, :])
            return end

        monkeypatch.setattr(reference, "run_series", mutated)
    stream = FeatureStream(three.store.config, engine=engine_name)
    with pytest.raises(AssertionError, match="states after bars"):
        check_parity(stream, three, 0, group=5, seed=1)
    assert nudged


def test_advance_equals_run_for_every_engine(engine):
    """engines.advance (one thread per series) and engines.run (the chunk scan) agree bit for bit."""
    rng = np.random.default_rng(12)
    o, h, l, c, offsets = random_bars(rng, [300, 1, 57, 200])
    cfg = gf.FeatureConfig(atr_period=7, ema_period=5)
    full = engines.run(o, h, l, c, offsets, cfg, "reference")
    bounds = np.append(offsets, len(c))
    cut = offsets + np.array([150, 0, 30, 1])   # continue each series from a snapshot
    first = engines.run(o, h, l, c, offsets, cfg, "reference", snapshot_at=cut)
    take = np.concatenate([np.arange(a, b) for a, b in zip(cut, bounds[1:])])
    sb = np.concatenate([[0], np.cumsum(bounds[1:] - cut)]).astype(np.int64)
    start = first.snapshots.copy()
    got = engines.advance(o[take], h[take], l[take], c[take], sb, cfg, engine, start)
    assert_bits(first.snapshots, start, "start states untouched")
    assert_bits(to_numpy(got.features), full.features[take], "features")
    assert_bits(to_numpy(got.valid), full.valid[take], "validity")
    assert_bits(to_numpy(got.swing), full.swing[take], "swings")
    assert_bits(to_numpy(got.end_states), full.end_states, "end states")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason=f"GPU engine: {gpu.unavailable_reason()}")
def test_gpu_stream_equals_host_stream(three):
    a = FeatureStream(three.store.config, engine="gpu")
    assert a.device == "cuda"
    check_parity(a, three, 0, group="random", seed=6)
    X, valid = a.window()
    assert X.device.type == "cuda"


def test_auto_engine_and_the_stream_meta(three):
    stream = FeatureStream(three.store.config)
    assert stream.engine == engines.resolve("auto") and stream.device in ("cpu", "cuda")
    assert json.loads(stream.state().metadata()["symbols"]) == []
