"""Every row of the README's Inputs table: a file written the way the vendor documents it, read back
to exact UTC timestamps, prices and series."""
import datetime as dt
import gzip
import io
import json
from types import SimpleNamespace as NS

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from gpu_features.ingest.files import SCID_EPOCH_DAYS, SCID_HEADER, SCID_RECORD
from tests.ingest.samples import refusal, table, write

MIN = 60_000_000_000
T0 = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z = 09:30 in New York (EST, UTC-5)
N = 5
O = np.array([16800.25, 16801.0, 16800.5, 16802.75, 16803.0])
C = np.array([16801.0, 16800.5, 16802.75, 16803.0, 16801.25])
H = np.maximum(O, C) + 0.5
L = np.minimum(O, C) - 0.25
NY_LOCAL = [f"09:{30 + k}" for k in range(N)]


def check(bars, ts=None, symbols=None, scale=1.0):
    """The bars equal the reference five (times from T0 a minute apart, unless given)."""
    ts = T0 + np.arange(N) * MIN if ts is None else ts
    assert bars.timestamp.tolist() == list(ts)
    for got, want in ((bars.open, O), (bars.high, H), (bars.low, L), (bars.close, C)):
        assert got.tolist() == (want * scale).tolist()
    if symbols is not None:
        assert bars.segment_names == tuple(symbols)


# --- Databento ---------------------------------------------------------------------------------


def _dbn_bytes(with_mappings=True):
    dbn = pytest.importorskip("databento_dbn", reason="databento-dbn is not installed (extra 'databento')")
    day = dt.date(2024, 1, 2)
    mappings = [NS(raw_symbol="NQH4", intervals=[NS(start_date=day, end_date=day + dt.timedelta(1), symbol="42")])]
    meta = dbn.Metadata(dataset="GLBX.MDP3", start=T0, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
                        schema=dbn.Schema.OHLCV_1M, symbols=["NQH4"], end=T0 + N * MIN,
                        mappings=mappings if with_mappings else [])
    out = bytearray(meta.encode())
    for k in range(N):  # OHLCV-1m: rtype 0x21, fixed-point prices (1e-9)
        out += bytes(dbn.OHLCVMsg(0x21, 1, 42, int(T0 + k * MIN), int(O[k] * 1e9), int(H[k] * 1e9), int(L[k] * 1e9),
                                  int(C[k] * 1e9), 100 + k))
    return bytes(out), dbn


def _transcode(raw, dbn, **kw):
    out = io.BytesIO()
    t = dbn.Transcoder(out, dbn.Encoding.CSV, dbn.Compression.NONE, **kw)
    t.write(raw)
    t.flush()
    return out.getvalue()


@pytest.mark.parametrize("name", ["nq.dbn", "nq.dbn.zst"])
def test_databento_dbn_files(tmp_path, name):
    raw, _ = _dbn_bytes()
    path = tmp_path / name
    if name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    bars = read_bars(path)
    check(bars, symbols=["NQH4"])
    assert bars.source["read"]["format"] == "databento"


def test_databento_csv_fixed_point_and_pretty(tmp_path):
    raw, dbn = _dbn_bytes()
    fixed = tmp_path / "fixed.csv"  # the batch default: pretty_px=False, integer ns times
    fixed.write_bytes(_transcode(raw, dbn, pretty_px=False, pretty_ts=False, map_symbols=True))
    assert b"16800250000000" in fixed.read_bytes()
    check(read_bars(fixed), symbols=["NQH4"])
    pretty = tmp_path / "pretty.csv"  # pretty_px/pretty_ts, no symbol column: instrument_id keys the series
    pretty.write_bytes(_transcode(raw, dbn, pretty_px=True, pretty_ts=True, map_symbols=False))
    assert b"2024-01-02T14:30:00.000000000Z" in pretty.read_bytes()
    check(read_bars(pretty), symbols=["42"])


def _databento_table(fixed: bool, symbol: bool):
    cols = {"ts_event": pa.array(T0 + np.arange(N) * MIN, type=pa.uint64() if fixed else pa.timestamp("ns", tz="UTC")),
            "rtype": np.full(N, 33, np.uint8), "publisher_id": np.full(N, 1, np.uint16),
            "instrument_id": np.full(N, 42, np.uint32)}
    for k, v in (("open", O), ("high", H), ("low", L), ("close", C)):
        cols[k] = (v * 1e9).astype(np.int64) if fixed else v
    cols["volume"] = np.full(N, 100, np.uint64)
    if symbol:
        cols["symbol"] = ["NQH4"] * N
    return pa.table(cols)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("symbol", [False, True])
def test_databento_parquet(tmp_path, fixed, symbol):
    path = tmp_path / "glbx.parquet"
    pq.write_table(_databento_table(fixed, symbol), path)
    check(read_bars(path), symbols=["NQH4" if symbol else "42"])


# --- Polygon ------------------------------------------------------------------------------------


def test_polygon_flat_file_csv_gz(tmp_path):
    path = tmp_path / "2024-01-02.csv.gz"
    lines = ["ticker,volume,open,close,high,low,window_start,transactions"]
    for sym, shift in (("X:BTCUSD", 0.0), ("AAPL", -16600.0)):
        lines += [f"{sym},100,{O[k] + shift},{C[k] + shift},{H[k] + shift},{L[k] + shift},{T0 + k * MIN},7" for k in range(N)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    bars = read_bars(path)
    assert bars.segment_names == ("AAPL", "X:BTCUSD")
    one = bars.take(N, 2 * N, segment=1)
    check(one)
    assert bars.close[:N].tolist() == (C - 16600.0).tolist()


def test_polygon_rest_aggregates_json_and_csv(tmp_path):
    results = [{"v": 100, "vw": float(C[k]), "o": O[k], "c": C[k], "h": H[k], "l": L[k], "t": (T0 + k * MIN) // 10**6,
                "n": 9} for k in range(N)]
    js = tmp_path / "aggs.json"
    js.write_text(json.dumps({"ticker": "AAPL", "status": "OK", "resultsCount": N, "results": results}))
    check(read_bars(js), symbols=["AAPL"])
    csv = tmp_path / "aggs.csv"
    pcsv.write_csv(pa.Table.from_pylist(results), csv)
    check(read_bars(csv), symbols=["aggs"])


# --- NinjaTrader, Sierra Chart, TradingView, IB, Date+Time ------------------------------------------


def _ninja_lines():  # bar END times, local: 09:31 .. 09:35 New York
    return "".join(f"20240102 0931{0:02d};{O[k]};{H[k]};{L[k]};{C[k]};100\n".replace("093100", f"09{31 + k:02d}00")
                   for k in range(N))


def test_ninjatrader_export(tmp_path):
    path = tmp_path / "NQ 03-24.Last.txt"
    path.write_text(_ninja_lines())
    bars = read_bars(path, timezone="America/New_York")
    check(bars, ts=T0 + (np.arange(N) + 1) * MIN, symbols=["NQ 03-24.Last"])
    assert bars.source["read"] == {"timezone": "America/New_York", "format": "ninjatrader", "bar_time": "end"}
    with pytest.raises(BarsError, match="ninjatrader files hold the local time .* pass --timezone"):
        read_bars(path)


def test_sierrachart_text_export(tmp_path):
    path = tmp_path / "NQH24-CME.txt"
    rows = ["Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume"]
    rows += [f"2024/1/2, {NY_LOCAL[k]}:00.000, {O[k]}, {H[k]}, {L[k]}, {C[k]}, 100, 10, 50, 50" for k in range(N)]
    path.write_text("\n".join(rows) + "\n")
    check(read_bars(path, timezone="America/New_York"), symbols=["NQH24-CME"])
    with pytest.raises(BarsError, match="sierrachart files hold the local time"):
        read_bars(path)


def scid_records():
    """The SCID header and the reference five bars as SCID records (``(head, records)``)."""
    head = np.zeros(1, SCID_HEADER)
    head["magic"], head["header_size"], head["record_size"], head["version"] = b"SCID", 56, 40, 1
    rec = np.zeros(N, SCID_RECORD)
    rec["datetime"] = (T0 + np.arange(N) * MIN) // 1000 + SCID_EPOCH_DAYS * 86_400 * 1_000_000
    for k, v in (("open", O), ("high", H), ("low", L), ("close", C)):
        rec[k] = v  # float32: the .25 grid is exact
    rec["total_volume"] = 100
    return head, rec


def test_sierrachart_scid(tmp_path):
    head, rec = scid_records()
    path = tmp_path / "NQH24.scid"
    path.write_bytes(head.tobytes() + rec.tobytes())
    check(read_bars(path), symbols=["NQH24"])
    old = rec.copy()
    old["datetime"] = np.array([45293.6041666] * N).view(np.int64)  # SCDateTime as double days (old files)
    (tmp_path / "old.scid").write_bytes(head.tobytes() + old.tobytes())
    with pytest.raises(BarsError, match="record 0 has SCDateTime .* not a time between 1980 and 2200"):
        read_bars(tmp_path / "old.scid")
    (tmp_path / "bad.scid").write_bytes(b"XXXX" + bytes(60))
    with pytest.raises(BarsError, match="not a Sierra Chart intraday file"):
        read_bars(tmp_path / "bad.scid")


def test_tradingview_unix_seconds_and_iso_offsets(tmp_path):
    secs = tmp_path / "CME_MINI_NQ1!, 1.csv"
    secs.write_text("time,open,high,low,close,Volume\n" + "".join(
        f"{(T0 + k * MIN) // 10**9},{O[k]},{H[k]},{L[k]},{C[k]},100\n" for k in range(N)))
    check(read_bars(secs))
    iso = tmp_path / "iso.csv"
    iso.write_text("time,open,high,low,close\n" + "".join(
        f"2024-01-02T{NY_LOCAL[k]}:00-05:00,{O[k]},{H[k]},{L[k]},{C[k]}\n" for k in range(N)))
    check(read_bars(iso))


def test_ib_tws_times_with_zone_and_daily(tmp_path):
    path = tmp_path / "ib.csv"
    path.write_text("date,open,high,low,close,volume,average,barCount\n" + "".join(
        f"20240102 {NY_LOCAL[k]}:00 US/Eastern,{O[k]},{H[k]},{L[k]},{C[k]},100,{C[k]},5\n" for k in range(N)))
    bars = read_bars(path)
    check(bars)
    assert bars.source["read"]["format"] == "ib"
    daily = tmp_path / "daily.csv"
    daily.write_text("date,open,high,low,close,volume\n" + "".join(
        f"2024010{2 + k},{O[k]},{H[k]},{L[k]},{C[k]},100\n" for k in range(N)))
    midnight = 1_704_153_600_000_000_000  # 2024-01-02T00:00Z
    check(read_bars(daily), ts=midnight + np.arange(N) * 86_400 * 10**9)


def test_date_and_time_columns_kibot_style(tmp_path):
    path = tmp_path / "NQ.txt"
    path.write_text("Date,Time,Open,High,Low,Close,Volume\n" + "".join(
        f"01/02/2024,{NY_LOCAL[k]},{O[k]},{H[k]},{L[k]},{C[k]},100\n" for k in range(N)))
    bars = read_bars(path, timezone="America/New_York")
    check(bars, symbols=["NQ"])
    assert bars.source["read"] == {"timezone": "America/New_York", "format": "date-time"}
    # Without a zone the naive times are UTC (documented): five hours earlier than New York.
    check(read_bars(path), ts=T0 - 5 * 3600 * 10**9 + np.arange(N) * MIN)


# --- generic options ----------------------------------------------------------------------------


def test_generic_options(tmp_path):
    semi = tmp_path / "semi.csv"  # ';'-separated: sniffed
    semi.write_text("timestamp;open;high;low;close\n" + "".join(
        f"2024-01-02T14:{30 + k}:00Z;{O[k]};{H[k]};{L[k]};{C[k]}\n" for k in range(N)))
    check(read_bars(semi))
    odd = tmp_path / "odd.csv"  # own names, own time format, prices in ticks of 0.25
    odd.write_text("when|px_o|px_h|px_l|px_c|sym\n" + "".join(
        f"02.01.2024 09:{30 + k}|{O[k] * 4:.0f}|{H[k] * 4:.0f}|{L[k] * 4:.0f}|{C[k] * 4:.0f}|NQ\n" for k in range(N)))
    bars = read_bars(odd, time_column="when", time_format="%d.%m.%Y %H:%M", timezone="America/New_York",
                     rename={"px_o": "open", "px_h": "high", "px_l": "low", "px_c": "close"}, symbol_column="sym",
                     delimiter="|", price_scale=0.25)
    check(bars, symbols=["NQ"])
    bare = tmp_path / "bare.csv.zst"  # no header, zstd-compressed
    with pa.CompressedOutputStream(str(bare), "zstd") as f:
        f.write("".join(f"{(T0 + k * MIN) // 10**6},{O[k]},{H[k]},{L[k]},{C[k]},1\n" for k in range(N)).encode())
    check(read_bars(bare, header=False))
    dated = tmp_path / "dated.csv"
    dated.write_text("day,clock,open,high,low,close\n" + "".join(
        f"2024-01-02,14:{30 + k}:00,{O[k]},{H[k]},{L[k]},{C[k]}\n" for k in range(N)))
    check(read_bars(dated, date_column="day", time_column="clock"))


def test_timezone_fall_back_hour_is_resolved_by_the_clock_going_back(tmp_path):
    # 2024-11-03 in New York: 01:00-01:59 happens twice (EDT, then EST).
    local = ["00:59", "01:00", "01:59", "01:00", "01:01", "02:00"]
    path = tmp_path / "dst.csv"
    path.write_text("Date,Time,Open,High,Low,Close\n" + "".join(f"11/03/2024,{t},10,11,9,10\n" for t in local))
    bars = read_bars(path, timezone="America/New_York")
    utc = np.datetime64("2024-11-03T04:59", "ns").astype(np.int64)
    assert (bars.timestamp - utc).tolist() == [x * MIN for x in (0, 1, 60, 61, 62, 121)]
    with pytest.raises(BarsError, match="not a known IANA time zone"):
        read_bars(path, timezone="Mars/Olympus")


def test_ib_times_without_a_zone_need_the_timezone(tmp_path):
    path = tmp_path / "ib_local.csv"
    path.write_text("date,open,high,low,close\n" + "".join(
        f"20240102  {NY_LOCAL[k]}:00,{O[k]},{H[k]},{L[k]},{C[k]}\n" for k in range(N)))
    with pytest.raises(BarsError, match="IB times without a zone .* pass --timezone"):
        read_bars(path, format="ib")
    check(read_bars(path, format="ib", timezone="America/New_York"))


def test_bz2_csv_and_cli_flags_for_a_vendor_file(tmp_path, capsys):
    import bz2

    from gpu_features.cli import main
    from gpu_features.store import open_store
    from gpu_features.verify import verify_store

    path = tmp_path / "bars.csv.bz2"
    path.write_bytes(bz2.compress(("timestamp,open,high,low,close\n" + "".join(
        f"{(T0 + k * MIN) // 10**9},{O[k]},{H[k]},{L[k]},{C[k]}\n" for k in range(N))).encode()))
    check(read_bars(path))
    ninja = tmp_path / "NQ.txt"
    rows = [f"20240102 {9 + (31 + k) // 60:02d}{(31 + k) % 60:02d}00;{O[k % N]};{H[k % N]};{L[k % N]};{C[k % N]};1"
            for k in range(200)]
    ninja.write_text("\n".join(rows) + "\n")
    out = tmp_path / "s"
    assert main(["precompute", "--input", str(ninja), "--output", str(out), "--quiet", "--engine", "reference",
                 "--format", "ninjatrader", "--timezone", "America/New_York"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "200 rows read, 200 bars kept; format ninjatrader, times in America/New_York stored as UTC" in said
    st = open_store(out)
    assert int(st.timestamps()[0]) == T0 + MIN and st.sources[0]["read"]["timezone"] == "America/New_York"
    assert verify_store(out).ok  # re-read with the recorded format and zone
    assert main(["precompute", "--input", str(ninja), "--output", str(tmp_path / "t"), "--quiet"]) == 2
    assert "pass --timezone" in " ".join(capsys.readouterr().err.split())


def test_columns_differing_only_in_case(tmp_path):
    refusal(tmp_path, table().append_column("Close", pa.array(np.ones(5))), "'close' and 'Close' differ only in case")


# --- the one series-key rule and the one --format override -------------------------------------------------


def test_series_key_rule_symbol_column_then_symbol_then_the_vendors_fallback():
    from gpu_features.ingest.presets import PRESETS, column_map, resolve_columns, series_key_column

    def key(names, layout="generic", symbol_column=None, rename=None):
        cols = resolve_columns("f", column_map("f", names), PRESETS[layout], rename, names)
        return series_key_column(cols, PRESETS[layout], symbol_column)

    assert key(["Symbol", "close"]) == "Symbol"
    assert key(["symbol", "sym"], symbol_column="SYM") == "sym"  # the flag wins, any case
    assert key(["symbol"], symbol_column="nope") is None        # the decoder refuses it, naming the columns
    assert key(["ticker", "t"], "polygon") == "ticker"           # Polygon's ticker is its symbol
    assert key(["ticker", "t"]) is None                          # ...only in the Polygon layout
    assert key(["instrument_id", "ts_event"], "databento") == "instrument_id"
    assert key(["instrument_id", "symbol"], "databento") == "symbol"
    assert key(["id", "close"], rename={"id": "symbol"}) == "id"


def test_forced_format_overrides_detection_and_detection_runs_only_without_one():
    from gpu_features.ingest.presets import pick_layout

    def never():
        raise AssertionError("detection ran although --format forced the layout")

    assert pick_layout("ib", never).name == "ib"
    assert pick_layout("auto", lambda: "polygon").name == "polygon"
    with pytest.raises(BarsError, match="unknown format 'metastock'"):
        pick_layout("metastock", never)


def test_series_key_of_a_files_column_names_follows_the_reader(tmp_path):
    from gpu_features.ingest import ReadSpec, series_key_of

    assert series_key_of("f", ["window_start", "ticker", "o"], ReadSpec()) == "ticker"
    assert series_key_of("f", ["timestamp", "ticker"], ReadSpec()) is None
    assert series_key_of("f", ["timestamp", "ticker"], ReadSpec(format="polygon")) == "ticker"
    assert series_key_of("f", ["timestamp", "Contract"], ReadSpec(symbol_column="contract")) == "Contract"


# --- --rename and --format that contradict the file: refused, like two columns differing only in case ----------

RENAMES = [  # (rename, the words of the refusal; None: accepted)
    ({"open": "close"}, "--rename open=close would make a second 'close' column beside the file's own 'close'"),
    ({"Open": "CLOSE"}, "--rename Open=CLOSE would make a second 'CLOSE' column beside the file's own 'close'"),
    ({"open": "x", "high": "x"}, "--rename open=x and --rename high=x would both make a column 'x'"),
    ({"nope": "close"}, "--rename names column 'nope', which is not in the file"),
    ({"open": "close", "close": "open"}, None),  # a swap leaves one column of each name
    ({"close": "Close"}, None),                  # the same column, in another case
]


@pytest.mark.parametrize("rename, words", RENAMES, ids=[" ".join(f"{a}={b}" for a, b in r.items()) for r, _ in RENAMES])
def test_a_rename_that_would_duplicate_a_column_is_refused(tmp_path, rename, words):
    tbl = table(open=np.full(5, 100.25))
    if words is not None:
        refusal(tmp_path, tbl, words, rename=rename)
        return
    bars = read_bars(write(tmp_path, tbl), rename=rename)
    swapped = rename.get("open") == "close"
    assert bars.close.tolist() == [100.25 if swapped else 100.5] * 5
    assert bars.open.tolist() == [100.5 if swapped else 100.25] * 5


FORCED = [  # (file, --format, the words of the refusal; None: read, recorded as the file's layout)
    ("bars.csv", "scid", "--format scid is for Sierra Chart intraday files (.scid), not this file"),
    ("bars.parquet", "scid", "--format scid is for Sierra Chart intraday files (.scid), not this file"),
    ("NQH24.scid", "ninjatrader", "--format ninjatrader does not fit a .scid file, which is always read as scid"),
    ("NQH24.scid", "generic", "--format generic does not fit a .scid file"),
    ("aggs.json", "databento", "--format databento does not fit a .json file, which is always read as polygon"),
    ("NQH24.scid", "scid", None),
    ("bars.csv", "generic", None),
]


@pytest.mark.parametrize("name, forced, words", FORCED, ids=[f"{n}:{f}" for n, f, _ in FORCED])
def test_a_format_that_cannot_describe_the_file_is_refused(tmp_path, name, forced, words):
    if name.endswith(".scid"):
        head, rec = scid_records()
        path = tmp_path / name
        path.write_bytes(head.tobytes() + rec.tobytes())
    elif name.endswith(".json"):
        path = tmp_path / name
        path.write_text(json.dumps({"ticker": "NQ", "results": [
            {"t": (T0 + k * MIN) // 10**6, "o": O[k], "h": H[k], "l": L[k], "c": C[k]} for k in range(N)]}))
    else:
        path = write(tmp_path, table(), name)
    if words is not None:
        with pytest.raises(BarsError) as err:
            read_bars(path, format=forced)
        assert words in str(err.value) and str(err.value).startswith(str(path))
        return
    bars = read_bars(path, format=forced)
    assert bars.n == N and bars.source.get("read", {}).get("format", "generic") == forced
