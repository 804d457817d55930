"""Incremental append equals a full recompute bit for bit, for every engine; failures leave the store intact."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.errors import StoreError
from gpu_features.ingest import Bars
from gpu_features.store import append_store
from gpu_features.store import writer as writer_mod
from gpu_features.verify import verify_store
from tests.harness import STORE_ENGINE, fail_on_call, write_parquet

N = 9_000


def per_symbol(store, name, key):
    parts = [store.array(key)[g.first: g.stop] for g in store.segments if g.name == name]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def bars():
    return synthetic.generate(N, 2, seed=21)


def test_append_equals_full_recompute(make_store, engine, bars, tmp_path):
    old = write_parquet(tmp_path / "old.parquet", bars, 0, 6000)
    new = write_parquet(tmp_path / "new.parquet", bars, 6000, None)
    path = tmp_path / "s"
    make_store(old, path, shard_bars=2500)
    st = append_store(path, new, engine=engine, shard_bars=2500)
    full = gf.precompute(write_parquet(tmp_path / "all.parquet", bars), tmp_path / "full", engine="reference")
    for name in ("SYN0", "SYN1"):
        np.testing.assert_array_equal(per_symbol(st, name, "features").view(np.uint32),
                                      per_symbol(full, name, "features").view(np.uint32))
        np.testing.assert_array_equal(per_symbol(st, name, "valid"), per_symbol(full, name, "valid"))
        np.testing.assert_array_equal(per_symbol(st, name, "timestamp"), per_symbol(full, name, "timestamp"))
    np.testing.assert_array_equal(st.states()["end_state"], full.states()["end_state"])
    m = st.manifest
    assert m["n_bars"] == 2 * N and len(m["sources"]) == 2 and m["appends"][0]["engine"]["name"] == engine
    assert [g["start_index"] for g in m["series"]] == [0, 0, 6000, 6000]
    # shard files are numbered in bar order, the appended ones continuing the numbering
    assert [s["file"] for s in m["shards"]] == [f"bars-{k:05d}.safetensors" for k in range(len(m["shards"]))]
    assert m["stats"]["per_symbol"]["SYN0"]["swings"] == full.manifest["stats"]["per_symbol"]["SYN0"]["swings"]
    assert sorted(p.name for p in path.glob("state*")) == ["state-append001.safetensors"]
    assert verify_store(path).ok


def test_new_symbols_start_fresh_and_splits_keep_their_boundaries(make_store, bars, tmp_path):
    path = tmp_path / "s"
    make_store(bars.take(0, 5000, 0), path)
    before = json.loads((path / "manifest.json").read_text())["splits"]["boundaries"]
    more = synthetic.generate(3000, 1, seed=99)
    more = Bars(more.open, more.high, more.low, more.close, more.timestamp, more.offsets, ("ES",),
                more.source, dict(more.ingest, symbol_column=True))
    st = append_store(path, more, engine=STORE_ENGINE)
    assert st.symbols == ["SYN0", "ES"] and st.manifest["splits"]["boundaries"] == before
    alone = gf.compute_features(more.open, more.high, more.low, more.close, engine="reference")[0]
    np.testing.assert_array_equal(per_symbol(st, "ES", "features").view(np.uint32), alone.view(np.uint32))
    assert st.manifest["appends"][0]["new_symbols"] == ["ES"]


def test_file_without_symbol_column_continues_a_one_symbol_store(make_store, bars, tmp_path):
    one = bars.take(0, N, 0)
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "nq.parquet", one, 0, 4000, symbols=False), path)
    st = append_store(path, write_parquet(tmp_path / "nq_more.parquet", one, 4000, None, symbols=False), engine=STORE_ENGINE)
    assert st.symbols == ["nq"] and st.n_bars == N
    full = gf.compute_features(one.open, one.high, one.low, one.close, engine="reference")[0]
    np.testing.assert_array_equal(st.array("features").view(np.uint32), full.view(np.uint32))
    assert verify_store(path).ok


def test_overlap_is_refused_or_skipped_after_checking(make_store, bars, tmp_path):
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    overlapping = write_parquet(tmp_path / "new.parquet", bars, 5990, None)
    with pytest.raises(StoreError, match="10 bar\\(s\\) of SYN0 are at or before its last stored bar .*--on-overlap skip"):
        append_store(path, overlapping, engine=STORE_ENGINE)
    st = append_store(path, overlapping, engine=STORE_ENGINE, on_overlap="skip")
    assert st.n_bars == 2 * N and st.manifest["appends"][0]["skipped_overlap"] == 20
    assert [g.source_first for g in st.segments[2:]] == [10, 10]
    assert verify_store(path).ok


def test_overlap_that_differs_from_the_stored_bars_is_refused(make_store, bars, tmp_path):
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    tbl = pq.read_table(write_parquet(tmp_path / "new.parquet", bars, 5995, None))
    close = tbl.column("close").to_numpy().copy()
    close[2] += 0.25
    high = np.maximum(tbl.column("high").to_numpy(), close)
    tbl = tbl.set_column(tbl.column_names.index("close"), "close", pa.array(close))
    tbl = tbl.set_column(tbl.column_names.index("high"), "high", pa.array(high))
    pq.write_table(tbl, tmp_path / "new.parquet")
    with pytest.raises(StoreError, match="1 overlapping bar\\(s\\) of SYN0 differ from the stored bars"):
        append_store(path, tmp_path / "new.parquet", engine=STORE_ENGINE, on_overlap="skip")


def test_a_failed_append_leaves_the_old_store_intact(make_store, bars, tmp_path, monkeypatch):
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    monkeypatch.setattr(writer_mod, "write_bytes", fail_on_call(writer_mod.write_bytes, 2, OSError("disk full (injected)")))
    with pytest.raises(OSError, match="injected"):
        append_store(path, write_parquet(tmp_path / "new.parquet", bars, 6000, None), engine=STORE_ENGINE, shard_bars=1000)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert verify_store(path).ok


def test_nothing_new_and_ambiguous_symbols(make_store, bars, tmp_path):
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    with pytest.raises(StoreError, match="no new bars to append"):
        append_store(path, tmp_path / "old.parquet", engine=STORE_ENGINE, on_overlap="skip")
    with pytest.raises(StoreError, match="has no symbol column but the store holds 2 symbols"):
        append_store(path, write_parquet(tmp_path / "x.parquet", bars.take(0, 7000, 0), 6500, None, symbols=False),
                     engine=STORE_ENGINE)


def test_cli_append(make_store, bars, tmp_path, capsys):
    from gpu_features.cli import main

    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    code = main(["precompute", "--append", str(write_parquet(tmp_path / "new.parquet", bars, 6000, None)),
                 "--output", str(path), "--engine", "host", "--quiet"])
    assert code == 0 and "appended to" in capsys.readouterr().out
    code = main(["precompute", "--append", str(tmp_path / "new.parquet"), "--output", str(path), "--quiet"])
    assert code == 2 and "--on-overlap skip" in capsys.readouterr().err


def test_cli_append_refuses_flags_that_do_not_apply(tmp_path, capsys):
    from gpu_features.cli import main

    code = main(["precompute", "--append", "x.parquet", "--output", str(tmp_path), "--zigzag-k", "2", "--overwrite"])
    assert code == 2 and "--zigzag-k, --overwrite cannot be used with it" in capsys.readouterr().err


def test_append_argument_refusal(built):
    from gpu_features.store import append_store

    with pytest.raises(StoreError, match="on_overlap must be one of error, skip, got 'merge'"):
        append_store(built, built, on_overlap="merge")


def test_overlap_that_cannot_be_checked_is_refused(make_store, bars, tmp_path):
    """A store built from bars in memory has no source to check overlapping new bars against."""
    import dataclasses

    from gpu_features.store import append_store

    path = make_store(dataclasses.replace(bars.take(0, 6000), source={}), tmp_path / "mem").path
    with pytest.raises(StoreError, match="cannot check the overlapping bars of SYN0 against the store"):
        append_store(path, bars.take(5000, 7000), on_overlap="skip")


# --- only our own files ---


def test_an_append_input_inside_the_store_is_refused(fresh_store, tmp_path):
    bars = synthetic.generate(2500, 1, 2)
    new = write_parquet(fresh_store.path / "new.parquet", bars, 2000, None, symbols=False)
    with pytest.raises(StoreError, match="lies inside the store"):
        append_store(fresh_store.path, new)
    assert gf.open_store(fresh_store.path).n_bars == 2000


# --- files without a symbol column: each the series named after its file, for precompute and --append alike ----


def test_files_without_a_symbol_column_continue_the_symbols_named_after_them(make_store, bars, tmp_path):
    es, nq = bars.take(0, N, 0), bars.take(N, 2 * N, 1)
    (tmp_path / "new").mkdir()
    old = [write_parquet(tmp_path / f"{name}.parquet", b, 0, 6000, symbols=False) for name, b in (("ES", es), ("NQ", nq))]
    path = tmp_path / "s"
    st = make_store(old, path)
    assert st.symbols == ["ES", "NQ"] and st.manifest["sources"][0]["ingest"]["symbol_column"] is False
    new = [write_parquet(tmp_path / "new" / f"{name}.parquet", b, 6000, None, symbols=False)
           for name, b in (("ES", es), ("NQ", nq))]
    st = append_store(path, new, engine=STORE_ENGINE)
    assert st.symbols == ["ES", "NQ"] and st.manifest["appends"][0]["new_symbols"] == []
    for name, b in (("ES", es), ("NQ", nq)):  # each continued, equal to its series computed whole
        whole = gf.compute_features(b.open, b.high, b.low, b.close, engine="reference")[0]
        np.testing.assert_array_equal(per_symbol(st, name, "features").view(np.uint32), whole.view(np.uint32))
    assert verify_store(path).ok


def test_an_append_glob_mixing_files_with_and_without_a_symbol_column_is_refused(make_store, bars, tmp_path):
    """Not a continuation of NQ and a cold-started new symbol named after the file: refused, nothing written."""
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "old.parquet", bars, 0, 6000), path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    (tmp_path / "new").mkdir()
    write_parquet(tmp_path / "new" / "a.parquet", bars, 6000, 7000)
    write_parquet(tmp_path / "new" / "b.parquet", bars.take(7000, N, 0), symbols=False)
    with pytest.raises(gf.BarsError, match=r"b.parquet has no series column but .*a.parquet has one, so the first "
                                           r"would be a series of its own named 'b'"):
        append_store(path, str(tmp_path / "new" / "*.parquet"), engine=STORE_ENGINE)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_several_files_without_a_symbol_column_do_not_continue_one_symbol_silently(make_store, bars, tmp_path):
    one = bars.take(0, N, 0)
    path = tmp_path / "s"
    make_store(write_parquet(tmp_path / "nq.parquet", one, 0, 4000, symbols=False), path)
    jan = write_parquet(tmp_path / "jan.parquet", one, 4000, 6000, symbols=False)
    feb = write_parquet(tmp_path / "feb.parquet", one, 6000, None, symbols=False)
    with pytest.raises(StoreError, match=r"files without a symbol column are each a series named after the file "
                                         r"\(feb, jan\), and the store holds one symbol \(nq\); append them one at a "
                                         r"time \(each continues it\)"):
        append_store(path, [jan, feb], engine=STORE_ENGINE)
    for f in (jan, feb):  # the way out it names gives the whole series
        st = append_store(path, f, engine=STORE_ENGINE)
    full = gf.compute_features(one.open, one.high, one.low, one.close, engine="reference")[0]
    np.testing.assert_array_equal(st.array("features").view(np.uint32), full.view(np.uint32))
