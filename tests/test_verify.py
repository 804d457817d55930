"""verify recomputes values from the source: it passes an honest store and fails altered ones."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import main
from gpu_features.fileio import sha256_file
from gpu_features.ingest import Bars
from gpu_features.store.stats import feature_stats
from gpu_features.verify import verify_store
from tests.cli.console import run

N = 12_000


@pytest.fixture
def synth_store(make_store, tmp_path):
    return make_store(synthetic.generate(N, 2, seed=5), tmp_path / "s", shard_bars=5000,
                         checkpoint_every=1000).path


@pytest.fixture
def file_store(make_store, tmp_path):
    b = synthetic.generate(N, seed=8)
    src = tmp_path / "nq.parquet"
    pq.write_table(pa.table({"ts_event": b.timestamp, "Open": b.open, "High": b.high, "Low": b.low,
                             "Close": b.close}), src)
    return make_store(src, tmp_path / "f", shard_bars=5000).path, src


def checks(report):
    return {c.name: c for c in report.checks}


def test_an_honest_store_verifies(synth_store):
    r = verify_store(synth_store)
    assert r.ok and r.verdict == "verified", [(c.name, c.ok, c.detail) for c in r.checks]
    assert r.bars_recomputed >= 10_000
    assert "bit-identical" in checks(r)["values"].detail


def test_file_source_found_by_path_and_checksum(file_store):
    path, src = file_store
    assert verify_store(path).ok


def test_missing_source_is_not_verified_but_other_checks_run(file_store, tmp_path):
    path, src = file_store
    moved = tmp_path / "elsewhere.parquet"
    src.rename(moved)
    r = verify_store(path)
    c = checks(r)
    assert not r.ok and r.verdict == "not verified"
    assert c["source"].ok is None and "is missing; pass it with --source" in c["source"].detail
    assert c["values"].ok is None and c["checksums"].ok and c["content"].ok
    assert verify_store(path, sources=[moved]).ok


def test_changed_source_is_not_verified(file_store):
    path, src = file_store
    tbl = pq.read_table(src)
    pq.write_table(tbl.set_column(4, "Close", pa.array(tbl.column("Close").to_numpy() + 0.25)), src)
    r = verify_store(path)
    assert r.verdict == "not verified" and "changed since the store was built" in checks(r)["source"].detail


def rewrite_shard(path, k, fn, fix_stats=True):
    """Alter shard k's tensors with fn, then make checksums and statistics agree (a careful forger)."""
    m = json.loads((path / "manifest.json").read_text())
    rec = m["shards"][k]
    tensors = load_file(str(path / rec["file"]))
    fn(tensors)
    save_file(tensors, str(path / rec["file"]), metadata={"format": "gpu-features-store", "version": "1",
                                                        "first_bar": str(rec["first"])})
    rec["bytes"] = (path / rec["file"]).stat().st_size
    rec["sha256"] = sha256_file(path / rec["file"])
    (path / "manifest.json").write_text(json.dumps(m))
    if fix_stats:
        st = gf.open_store(path)
        m["stats"]["features"] = feature_stats(st.array("features"), st.array("valid"))
        (path / "manifest.json").write_text(json.dumps(m))


def test_altered_features_are_caught_by_recomputation(synth_store):
    def nudge(t):
        t["features"][2500, 6] = np.nextafter(t["features"][2500, 6], np.float32(10))
    rewrite_shard(synth_store, 1, nudge)
    r_all = verify_store(synth_store, sample_bars=10**9)
    c = checks(r_all)
    assert c["checksums"].ok and c["manifest numbers"].ok  # the forger fixed those
    assert c["values"].ok is False and "first bar 7500 (dist_to_prev_SH" in c["values"].detail
    assert r_all.verdict == "FAILED"


def test_altered_shard_edges_are_always_sampled(synth_store):
    def nudge(t):
        t["features"][-1, 0] += np.float32(0.125)
    rewrite_shard(synth_store, 0, nudge)
    r = verify_store(synth_store)  # default sample
    assert checks(r)["values"].ok is False and "first bar 4999" in checks(r)["values"].detail


def test_flipped_byte_fails_the_checksum(synth_store):
    m = json.loads((synth_store / "manifest.json").read_text())
    p = synth_store / m["shards"][2]["file"]
    data = bytearray(p.read_bytes())
    data[-3] ^= 0x40
    p.write_bytes(bytes(data))
    c = checks(verify_store(synth_store))
    assert c["checksums"].ok is False and "fails its SHA-256" in c["checksums"].detail


def test_a_99_percent_zero_store_is_degenerate(synth_store):
    n_shards = len(json.loads((synth_store / "manifest.json").read_text())["shards"])
    for k in range(n_shards):
        rewrite_shard(synth_store, k, lambda t: t["features"].__setitem__((slice(None), 8), 0.0))
    c = checks(verify_store(synth_store))
    assert c["content"].ok is False and "bars_since_SH_norm (100.0%)" in c["content"].detail
    assert c["values"].ok is False


def test_stale_manifest_numbers_fail(synth_store):
    rewrite_shard(synth_store, 0, lambda t: t["valid"].__setitem__(slice(3000, 3100), False), fix_stats=False)
    c = checks(verify_store(synth_store))
    assert c["manifest numbers"].ok is False


def test_no_valid_bars_is_degenerate(make_store, tmp_path):
    flat = np.full(500, 100.0)
    bars = Bars(flat, flat, flat, flat, np.arange(500, dtype=np.int64) * 60_000_000_000, np.zeros(1, np.int64),
                ("FLAT",), {"kind": "memory"})
    path = make_store(bars, tmp_path / "flat").path
    r = verify_store(path)
    assert checks(r)["content"].ok is False and "no valid bars" in checks(r)["content"].detail


def test_a_broken_store_reports_structure(tmp_path):
    r = verify_store(tmp_path / "none")
    assert r.verdict == "FAILED" and r.checks[0].name == "structure"


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


def test_verify_says_which_checks_failed_not_bit_for_bit(make_store, tmp_path, capsys):
    import json

    path = make_store(synthetic.generate(3000, 1, 5), tmp_path / "s").path
    code, out, _ = run(capsys, "verify", path, "--quiet")
    assert code == 0 and "verified: 3,000 bars recomputed bit for bit" in out
    shard = path / json.loads((path / "manifest.json").read_text())["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", path, "--quiet")
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("FAILED: checksums") and "bit for bit" not in last
