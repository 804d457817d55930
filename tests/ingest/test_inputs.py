"""Many files, refusals, nothing silently lost, futures, DataFrames in and out."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from gpu_features import engines, read_bars
from gpu_features.bars import Bars, longest_increasing
from gpu_features.cli import main
from gpu_features.errors import BarsError
from gpu_features.store import open_store, precompute
from gpu_features.verify import verify_store

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
MIN = 60_000_000_000
YEAR = 366 * 86_400 * 10**9


def walk(n, seed=0, start=15000.0):
    """``n`` bars on a 0.25 tick grid (every price exact in binary)."""
    rng = np.random.default_rng(seed)
    c = start + np.round(rng.normal(0, 4, n).cumsum()) / 4
    o = np.r_[start, c[:-1]]
    return {"timestamp": T0 + np.arange(n, dtype=np.int64) * MIN, "open": o, "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.25, "close": c}


def tbl(cols, **extra):
    d = dict(cols)
    d["timestamp"] = pa.array(d["timestamp"], type=pa.timestamp("ns", tz="UTC"))
    d.update(extra)
    return pa.table(d)


def sl(cols, a, b):
    return {k: v[a:b] for k, v in cols.items()}


# --- many files -------------------------------------------------------------------------------


def test_files_are_joined_in_time_order_and_each_is_a_source(tmp_path):
    w = walk(300)
    for k, (a, b) in enumerate(((200, 300), (0, 100), (100, 200))):  # names not in time order
        pq.write_table(tbl(sl(w, a, b)), tmp_path / f"part{k}.parquet")
    files = sorted(tmp_path.glob("*.parquet"))
    for given in (files, tmp_path, str(tmp_path / "part*.parquet")):
        bars = read_bars(given)
        assert bars.n == 300 and bars.timestamp.tolist() == w["timestamp"].tolist()
        assert bars.close.tolist() == w["close"].tolist()
        assert bars.source["kind"] == "files" and [f["path"] for f in bars.source["files"]] == [str(f) for f in files]
        assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in bars.source["files"])


def test_repeated_input_flags_keep_every_file_and_verify_rereads_them(tmp_path):
    w = walk(400)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pcsv.write_csv(tbl(sl(w, 0, 200)), a)
    pcsv.write_csv(tbl(sl(w, 200, 400)), b)
    out = tmp_path / "store"
    assert main(["precompute", "--input", str(a), "--input", str(b), "--output", str(out), "--engine", "reference",
                 "--quiet"]) == 0
    st = open_store(out)
    assert st.n_bars == 400 and st.timestamps().tolist() == w["timestamp"].tolist()
    assert verify_store(out).ok
    b.write_text(b.read_text().replace("15", "16", 1))  # a changed source: not verified
    report = verify_store(out)
    assert not report.ok and "changed since the store was built" in report.checks[-1].detail


def test_overlapping_files_refused_or_identical_bars_skipped(tmp_path):
    w = walk(300)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(tbl(sl(w, 0, 200)), a)
    pq.write_table(tbl(sl(w, 150, 300)), b)
    with pytest.raises(BarsError, match=r"50 bar\(s\) of a in b.parquet are at or before the last bar of a.parquet "
                                         r"\(first data rows, 0-based: b.parquet:0, b.parquet:1.*--on-overlap skip"):
        read_bars([a, b])
    bars = read_bars([a, b], on_overlap="skip")
    assert bars.n == 300 and bars.timestamp.tolist() == w["timestamp"].tolist()
    assert bars.ingest["skipped_overlap"]["count"] == 50 and bars.ingest["dropped"] == {}
    changed = dict(sl(w, 150, 300))
    changed["close"] = changed["close"].copy()
    changed["close"][3] += 0.25
    changed["high"] = np.maximum(changed["high"], changed["close"])
    pq.write_table(tbl(changed), b)
    with pytest.raises(BarsError, match=r"1 bar\(s\) of a in b.parquet repeat a time of a.parquet with different prices"):
        read_bars([a, b], on_overlap="skip")


# --- refusals, one sentence each ---------------------------------------------------------------


@pytest.mark.parametrize("text, hint", [("abc", "plain numbers"), ('"1,199.5"', "thousands separators")])
@pytest.mark.parametrize("policy", ["error", "drop", "repair"])
def test_price_text_is_one_sentence_under_every_policy(tmp_path, text, hint, policy):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n"
                    f"2024-01-01T00:01:00Z,1,2,0.5,{text}\n")
    with pytest.raises(BarsError, match=rf"bad.csv: column 'close' row 1 \(0-based data row\) holds .*not a number.*{hint}"):
        read_bars(path, on_bad_bars=policy)
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet",
                 "--on-bad-bars", policy]) == 2


def test_verify_with_a_bad_source_file_is_one_sentence(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text("timestamp,open,high,low,close\n" + "".join(
        f"2024-01-01T00:{k:02d}:00Z,1,2,0.5,1.5\n" for k in range(60)))
    assert main(["precompute", "--input", str(good), "--output", str(tmp_path / "s"), "--quiet"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text().replace(",1.5\n", ",abc\n", 1))
    capsys.readouterr()
    # The source cannot be re-read: "not verified" (exit 1) with the one-sentence reason; the other checks still run.
    assert main(["verify", str(tmp_path / "s"), "--source", str(bad), "--quiet"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "column 'close' row 0 (0-based data row) holds 'abc', which is not a number" in out
    assert "checksums" in out and "Traceback" not in out


def test_input_refusals(tmp_path):
    with pytest.raises(BarsError, match="the directory holds no bar files"):
        read_bars(tmp_path)
    with pytest.raises(BarsError, match="the pattern matches no file"):
        read_bars(str(tmp_path / "*.csv"))
    with pytest.raises(BarsError, match="no such file or directory"):
        read_bars(tmp_path / "gone.csv")
    one = tmp_path / "x.csv"
    one.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n")
    with pytest.raises(BarsError, match="given twice"):
        read_bars([one, one])
    with pytest.raises(BarsError, match="unknown format 'metastock'"):
        read_bars(one, format="metastock")


def test_unreadable_file_says_permission(tmp_path, monkeypatch):
    path = tmp_path / "locked.parquet"
    path.write_bytes(b"PAR1")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the open fail as it does for other users
        import builtins

        real_open = builtins.open

        def deny(file, *a, **kw):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(BarsError, match="cannot be read \\(permission denied\\)"):
        read_bars(path)


def test_semicolon_file_is_sniffed_and_a_wrong_delimiter_gets_a_hint(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("timestamp;open;high;low;close\n2024-01-01T00:00:00Z;1;2;0.5;1.5\n2024-01-01T00:01:00Z;1;2;0.5;1\n")
    assert read_bars(path).n == 2
    with pytest.raises(BarsError, match=r"a ';'-separated file\? pass --delimiter ';'"):
        read_bars(path, delimiter=",")


def test_integer_times_in_the_1970s_are_warned_on_screen(tmp_path, capsys):
    path = tmp_path / "small.csv"
    path.write_text("time,open,high,low,close\n" + "".join(f"{k},1,2,0.5,1.5\n" for k in range(2000)))
    bars = read_bars(path)
    assert any("fall before 1980" in w and "1970-01-01T00:00:00Z" in w for w in bars.ingest["warnings"])
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet", "--engine",
                 "reference"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning:" in err and "read as epoch s fall before 1980" in err


def test_date_only_time_on_intraday_data_names_the_time_column(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"date": ["2024-01-02"] * 3, "clock": ["09:30", "09:31", "09:32"], "open": [1.0] * 3,
                             "high": [2.0] * 3, "low": [0.5] * 3, "close": [1.5] * 3}), path)
    with pytest.raises(BarsError, match="holds dates only but 1 day\\(s\\) have several bars.*--date-column date "
                                        "--time-column clock"):
        read_bars(path)
    assert read_bars(path, date_column="date", time_column="clock").n == 3


# --- nothing silently lost ----------------------------------------------------------------------


def test_one_year_ahead_typo_costs_one_bar(tmp_path):
    w = walk(20_000)
    w["timestamp"] = w["timestamp"].copy()
    w["timestamp"][10] += YEAR
    path = tmp_path / "typo.parquet"
    pq.write_table(tbl(w), path)
    with pytest.raises(BarsError, match=r"1 bar\(s\) break the rule 'timestamp out of order within its series' "
                                        r"\(first data rows, 0-based: 10\)"):
        read_bars(path)
    bars = read_bars(path, on_bad_bars="drop")
    assert bars.n == 19_999 and 10 not in set((bars.timestamp - T0) // MIN)
    assert bars.ingest["dropped"] == {"timestamp out of order within its series": {"count": 1, "first_rows": [10]}}


def test_longest_increasing_keeps_the_most_bars():
    ts = np.array([0, 1, 2, 50, 3, 4, 4, 5, -1, 6])
    keep = longest_increasing(ts)
    assert np.flatnonzero(~keep).tolist() == [3, 6, 8]
    assert np.all(np.diff(ts[keep]) > 0)


def test_drop_refuses_above_its_limit_and_the_cli_prints_what_it_dropped(tmp_path, capsys):
    w = walk(1000)
    w["low"] = w["low"].copy()
    w["low"][[5, 50, 500]] = w["high"][[5, 50, 500]] + 1  # 0.3% of bars: low above high
    path = tmp_path / "bad.parquet"
    pq.write_table(tbl(w), path)
    with pytest.raises(BarsError, match=r"would remove 3 of 1000 bars \(0.30%.*more than the 0.10% allowed.*"
                                        "--max-drop-fraction"):
        read_bars(path, on_bad_bars="drop", max_drop_fraction=0.001)
    assert read_bars(path, on_bad_bars="drop").n == 997
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet", "--engine",
                 "reference", "--on-bad-bars", "drop"]) == 0
    out = capsys.readouterr().out
    assert "1,000 rows read, 997 bars kept; dropped 3 (low above min(open, close); first rows 5, 50, 500)" in " ".join(out.split())


# --- futures -------------------------------------------------------------------------------------


def test_back_adjusted_prices_need_the_flag_and_features_are_shift_invariant(tmp_path):
    w = walk(3000, start=15000.0)
    shifted = {k: (v - 20000.0 if k != "timestamp" else v) for k, v in w.items()}  # exact: a 0.25 grid below 2**40
    assert shifted["close"].max() < 0
    path = tmp_path / "adj.parquet"
    pq.write_table(tbl(shifted), path)
    with pytest.raises(BarsError, match="<= 0.*--allow-nonpositive-prices"):
        read_bars(path)
    bars = read_bars(path, allow_nonpositive=True)
    a = engines.run(w["open"], w["high"], w["low"], w["close"], engine="reference")
    b = engines.run(bars.open, bars.high, bars.low, bars.close, engine="reference")
    assert np.array_equal(a.features.view(np.uint32), b.features.view(np.uint32))
    assert np.array_equal(a.valid, b.valid) and a.valid.any()
    st = precompute(path, tmp_path / "s", engine="reference", read_options={"allow_nonpositive": True})
    assert np.array_equal(st.array("features").view(np.uint32), a.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok


def test_roll_column_cuts_segments_no_window_spans_a_roll_and_append_continues(tmp_path):
    w = walk(1200)
    contract = np.where(np.arange(1200) < 700, "NQH4", "NQM4")
    w2 = dict(w)
    w2["open"], w2["high"], w2["low"], w2["close"] = (np.where(contract == "NQM4", v + 150.0, v)
                                                      for v in (w["open"], w["high"], w["low"], w["close"]))
    path = tmp_path / "nq.parquet"
    pq.write_table(tbl(sl(w2, 0, 1000), symbol=["NQ"] * 1000, contract=contract[:1000]), path)
    bars = read_bars(path, roll_column="contract")
    assert bars.symbols == ("NQ", "NQ") and bars.offsets.tolist() == [0, 700] and bars.ingest["roll_segments"] == 1
    st = precompute(path, tmp_path / "s", engine="reference", read_options={"roll_column": "contract"})
    assert [(g.first, g.count, g.start_index, g.restart) for g in st.segments] == [(0, 700, 0, False),
                                                                                  (700, 300, 0, True)]
    K = st.config.window_length
    starts = st.usable_window_starts()
    assert len(starts) and not np.any((starts < 700) & (starts + K > 700))
    fresh = engines.run(w2["open"][700:1000], w2["high"][700:1000], w2["low"][700:1000], w2["close"][700:1000],
                        engine="reference")
    assert np.array_equal(st.array("features")[700:].view(np.uint32), fresh.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok
    more = tmp_path / "more.parquet"
    pq.write_table(tbl(sl(w2, 1000, 1200), symbol=["NQ"] * 200, contract=contract[1000:]), more)
    st = open_store(tmp_path / "s")
    from gpu_features.store import append_store

    st = append_store(tmp_path / "s", more, engine="reference")
    whole = engines.run(w2["open"][700:], w2["high"][700:], w2["low"][700:], w2["close"][700:], engine="reference")
    assert np.array_equal(st.array("features")[700:].view(np.uint32), whole.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok
    assert main(["inspect", str(tmp_path / "s")]) == 0


# --- Bars built by hand, DataFrames in and out ------------------------------------------------


def test_precompute_refuses_hand_built_bars_that_break_the_rules(tmp_path):
    w = walk(200)
    ts = w["timestamp"].copy()
    ts[50] = ts[10]
    backwards = Bars(w["open"], w["high"], w["low"], w["close"], ts, np.zeros(1, np.int64), ("X",))
    with pytest.raises(BarsError, match="timestamps must strictly increase within each series"):
        precompute(backwards, tmp_path / "a", engine="reference")
    low = w["low"].copy()
    low[7] = w["high"][7] + 1
    crossed = Bars(w["open"], w["high"], low, w["close"], w["timestamp"], np.zeros(1, np.int64), ("X",))
    with pytest.raises(BarsError, match=r"low above min\(open, close\).*0-based: 7"):
        precompute(crossed, tmp_path / "b", engine="reference")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _frame_cases():
    cases = ["pyarrow", "pandas"]
    try:
        import polars  # noqa: F401
        cases.append("polars")
    except ImportError:
        cases.append(pytest.param("polars", marks=pytest.mark.skip(reason="polars is not installed")))
    return cases


@pytest.mark.parametrize("kind", _frame_cases())
def test_dataframes_in_apply_every_rule_and_store_to_arrow_comes_out(tmp_path, kind):
    w = walk(500)
    table = tbl(w, symbol=["NQ"] * 500)
    if kind == "pandas":
        pd = pytest.importorskip("pandas", reason="pandas is not installed")
        frame = table.to_pandas()
        indexed = frame.set_index("timestamp")  # the time as a DatetimeIndex
        assert read_bars(indexed).timestamp.tolist() == w["timestamp"].tolist()
        assert isinstance(frame, pd.DataFrame)
    elif kind == "polars":
        import polars as pl

        frame = pl.from_arrow(table)
    else:
        frame = table
    bars = read_bars(frame)
    assert bars.symbols == ("NQ",) and bars.close.tolist() == w["close"].tolist()
    assert bars.timestamp.tolist() == w["timestamp"].tolist() and bars.source == {"kind": "memory"}
    bad = table.set_column(table.column_names.index("low"), "low", pa.array(np.r_[w["high"][:1] + 1, w["low"][1:]]))
    with pytest.raises(BarsError, match=r"the table: 1 bar\(s\) break the rule 'low above min"):
        read_bars(pl.from_arrow(bad) if kind == "polars" else bad.to_pandas() if kind == "pandas" else bad)
    st = precompute(bars, tmp_path / "s", engine="reference")
    out = st.to_arrow()
    assert out.column_names[:3] == ["timestamp", "symbol", "valid"] and out.num_rows == 500
    assert out.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(out.schema.field("symbol").type)
    assert np.array_equal(out.column("range_z").to_numpy(), st.array("features")[:, 5])
    if kind == "pandas":
        assert out.to_pandas()["symbol"].astype(str).unique().tolist() == ["NQ"]
    if kind == "polars":
        assert pl.from_arrow(out).height == 500


def test_export_parquet_layout(tmp_path):
    path = tmp_path / "bars.parquet"
    pq.write_table(tbl(walk(300), symbol=["ES"] * 300), path)
    precompute(path, tmp_path / "s", engine="reference")
    assert main(["export", str(tmp_path / "s"), "--layout", "parquet", "--output", str(tmp_path / "f.parquet")]) == 0
    got = pq.read_table(tmp_path / "f.parquet")
    want = open_store(tmp_path / "s").to_arrow()
    assert got.equals(want)
    assert main(["export", str(tmp_path / "s"), "--layout", "parquet", "--output", str(tmp_path / "f.parquet")]) == 2


def test_symbol_column_is_read_dictionary_encoded(tmp_path):
    from gpu_features.readers import ReadOptions, _read_parquet, _read_csv

    path = tmp_path / "s.parquet"
    pq.write_table(tbl(walk(10), symbol=["A", "B"] * 5), path)
    assert pa.types.is_dictionary(_read_parquet(path, ReadOptions()).schema.field("symbol").type)
    csv = tmp_path / "s.csv"
    pcsv.write_csv(tbl(walk(10), symbol=["A", "B"] * 5), csv)
    assert pa.types.is_dictionary(_read_csv(csv, ReadOptions())[0].schema.field("symbol").type)


def test_a_roll_between_two_files_is_a_roll_and_a_file_boundary_is_not(tmp_path):
    """Each file's roll column is its own dictionary: codes are compared by contract name across files."""
    w = walk(900)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(tbl(sl(w, 0, 300), symbol=["NQ"] * 300, contract=["NQH4"] * 300), a)  # both code 0 in their file
    pq.write_table(tbl(sl(w, 300, 600), symbol=["NQ"] * 300, contract=["NQM4"] * 300), b)
    bars = read_bars([a, b], roll_column="contract")
    assert bars.offsets.tolist() == [0, 300] and bars.ingest["roll_segments"] == 1
    # NQM4 is code 1 in b (after NQH4) and code 0 in c: the same contract, so no cut at the file boundary
    pq.write_table(tbl(sl(w, 300, 600), symbol=["NQ"] * 300, contract=["NQH4"] * 100 + ["NQM4"] * 200), b)
    pq.write_table(tbl(sl(w, 600, 900), symbol=["NQ"] * 300, contract=["NQM4"] * 300), c)
    bars = read_bars([a, b, c], roll_column="contract")
    assert bars.offsets.tolist() == [0, 400] and bars.ingest["roll_segments"] == 1


def test_plot_swings_restart_at_a_roll(tmp_path):
    from gpu_features import reference
    from gpu_features.plot import chart_data

    w = walk(1000, seed=3)
    contract = np.where(np.arange(1000) < 600, "ESH4", "ESM4")
    path = tmp_path / "es.parquet"
    pq.write_table(tbl(w, contract=contract), path)
    st = precompute(path, tmp_path / "s", engine="reference", read_options={"roll_column": "contract"})
    want = []
    for g in st.segments:
        a, b = g.first, g.stop
        events = []
        n = b - a
        reference.run_series(w["open"][a:b].tolist(), w["high"][a:b].tolist(), w["low"][a:b].tolist(),
                             w["close"][a:b].tolist(), st.config, np.zeros(16 + st.config.atr_period),
                             np.zeros((n, 10), np.float32), np.zeros(n, bool), np.zeros(n, np.int8), events=events)
        want += [("high" if code == 1 else "low", int(ext_i) + a, float(p), a + j) for j, code, ext_i, p in events]
    got = chart_data(tmp_path / "s", last=1000).swings
    assert [(s.kind, s.extreme_bar, s.extreme_price, s.confirm_bar) for s in got] == want and len(want) > 4


def test_cli_generic_layout_flags_reach_the_reader_and_the_manifest(tmp_path):
    w = walk(300)
    shifted = {k: (v - 20000.0 if k != "timestamp" else v) for k, v in w.items()}
    path = tmp_path / "raw.txt"
    path.write_text("".join(f"NQ|{t // 10**9}|{o * 4:.0f}|{h * 4:.0f}|{lo * 4:.0f}|{c * 4:.0f}\n" for t, o, h, lo, c in
                            zip(shifted["timestamp"], shifted["open"], shifted["high"], shifted["low"], shifted["close"])))
    out = tmp_path / "s"
    args = ["precompute", "--input", str(path), "--output", str(out), "--quiet", "--engine", "reference",
            "--no-header", "--columns", "ticker,when,o,h,l,c", "--delimiter", "|", "--time-column", "when",
            "--rename", "o=open", "--rename", "h=high", "--rename", "l=low", "--rename", "c=close",
            "--symbol-column", "ticker", "--price-scale", "0.25"]
    assert main(args) == 2  # negative prices need the flag
    assert main(args + ["--allow-nonpositive-prices", "--max-drop-fraction", "0.05"]) == 0
    st = open_store(out)
    assert st.symbols == ["NQ"] and st.timestamps().tolist() == w["timestamp"].tolist()
    read = st.sources[0]["read"]
    assert read["rename"] == {"o": "open", "h": "high", "l": "low", "c": "close"} and read["header"] is False
    assert read["allow_nonpositive"] is True and read["max_drop_fraction"] == 0.05 and read["price_scale"] == 0.25
    assert verify_store(out).ok
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "t"), "--rename", "oops"]) == 2
