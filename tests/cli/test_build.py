"""gpu-features precompute: what its flags reach (the reader, the manifest), and its refusals."""
import json
import os
import shutil

import pyarrow.csv as pcsv
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import main
from gpu_features.store import open_store
from gpu_features.verify import verify_store
from tests.cli.console import run
from tests.harness import write_parquet
from tests.ingest.samples import sl, tbl, walk


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


def test_precompute_writes_a_store(demo):
    m = json.loads((demo / "manifest.json").read_text())
    assert m["n_bars"] == 40_000 and len(m["shards"]) == 3 and m["engine"]["name"] == "host"


def test_existing_output_is_refused_in_one_line(capsys, demo):
    code, out, err = run(capsys, "precompute", "--output", str(demo), "--synthetic-bars", "100", "--quiet")
    assert code == 2
    assert err.strip().count("\n") == 0 and "already exists; pass --overwrite" in err


def test_config_flags_reach_the_manifest(capsys, tmp_path):
    code, _, _ = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--synthetic-bars", "3000", "--quiet",
                     "--engine", "reference", "--no-hybrid", "--zigzag-k", "2.5", "--window-length", "50")
    assert code == 0
    cfg = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert cfg["hybrid"] is False and cfg["zigzag_k"] == 2.5 and cfg["window_length"] == 50


def test_bad_input_file(capsys, tmp_path):
    (tmp_path / "bars.csv").write_text("open,high,low,close\n1,2,0.5,1\n")
    code, _, err = run(capsys, "precompute", "--input", str(tmp_path / "bars.csv"), "--output", str(tmp_path / "s"))
    assert code == 2 and "no time column" in err and not (tmp_path / "s").exists()


def test_splits_flags(capsys, tmp_path):
    code, _, err = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--split-fractions", "0.5,0.6,0.1")
    assert code == 2 and "sum to 1" in err
    code, _, _ = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--synthetic-bars", "5000", "--quiet",
                     "--engine", "host", "--split-fractions", "0.6,0.2,0.2")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert code == 0 and m["splits"]["counts"]["train"]["bars"] == 3000


def test_reader_flag(capsys, tmp_path, demo):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_features.ingest.cudf_reader import cudf_module

    n = 300
    c = 100.0 + np.arange(n) * 0.25
    pq.write_table(pa.table({"timestamp": pa.array(1_704_067_200 + np.arange(n) * 60, pa.int64()),
                             "open": c, "high": c + 1, "low": c - 1, "close": c}), tmp_path / "nq.parquet")
    code, out, _ = run(capsys, "precompute", "--input", str(tmp_path / "nq.parquet"), "--output",
                       str(tmp_path / "s"), "--reader", "pyarrow", "--engine", "host", "--quiet")
    assert code == 0 and "read with pyarrow" in out
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["sources"][0]["ingest"]["reader"] == "pyarrow"
    if cudf_module() is None:
        code, _, err = run(capsys, "precompute", "--input", str(tmp_path / "nq.parquet"), "--output",
                           str(tmp_path / "s2"), "--reader", "cudf", "--quiet")
        assert code == 2 and "the cudf reader needs cudf and a CUDA GPU" in err and not (tmp_path / "s2").exists()
    code, _, err = run(capsys, "precompute", "--output", str(demo), "--append", str(tmp_path / "nq.parquet"),
                       "--reader", "pyarrow")
    assert code == 2 and "--reader cannot be used with it" in err


def test_output_below_an_existing_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "precompute", "--output", tmp_path / "f" / "store", "--synthetic-bars", 2000, "--quiet")
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1


def test_existing_file_as_output_is_refused_without_suggesting_overwrite(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "precompute", "--output", tmp_path / "f", "--synthetic-bars", 2000, "--quiet", *extra)
        assert code == 2 and "is a file; refusing to replace it (even with --overwrite)" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the mapping is tested above")
def test_read_only_output_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    code, _, err = run(capsys, "precompute", "--output", ro / "store", "--synthetic-bars", 2000, "--quiet")
    assert code == 2 and "permission denied" in err


# --- options refused up front; --output . ---


@pytest.mark.parametrize("argv, words", [
    (["--split-dates", "2300-01-01,2301-01-01"], "split date '2300-01-01' is outside 1677-09-22 .. 2262-04-11"),
    (["--split-dates", "1600-01-01,2000-01-01"], "split date '1600-01-01' is outside"),
    (["--window-length", "100000"], "--window-length 100000: FeatureConfig.window_length = 100000 is out of range"),
])
def test_options_that_would_make_an_unopenable_store_are_refused_up_front(fresh_store, capsys, argv, words):
    before = (fresh_store.path / "manifest.json").read_bytes()
    code = main(["precompute", "--output", str(fresh_store.path), "--overwrite", "--synthetic-bars", "2000",
                        "--quiet", *argv])
    assert code == 2 and words in capsys.readouterr().err
    assert (fresh_store.path / "manifest.json").read_bytes() == before


def test_output_dot_is_a_sentence_not_a_traceback(fresh_store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(fresh_store.path)
    code = main(["precompute", "--output", ".", "--synthetic-bars", "2000", "--quiet"])
    assert code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    new = write_parquet(tmp_path / "new.parquet", synthetic.generate(2500, 1, 2), 2000, None, symbols=False)
    code = main(["precompute", "--output", ".", "--append", str(new), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and "(500 new bars" in out, err
    assert (fresh_store.path.parent / ".s.lock").exists() and gf.open_store(fresh_store.path).n_bars == 2500
    monkeypatch.chdir(tmp_path)
    shutil.copy(new, tmp_path / "new2.parquet")
    code = main(["precompute", "--output", ".", "--overwrite", "--synthetic-bars", "2000", "--quiet"])
    assert code == 2 and "is a folder that is not a gpu-features store" in capsys.readouterr().err
