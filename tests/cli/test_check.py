"""gpu-features verify and inspect: exit codes, one symbol, a tampered store, a missing store, an unreadable source."""
import json
import re

import pyarrow as pa

from tests.cli.console import T0, run


def test_verify_and_inspect_succeed(capsys, demo):
    code, out, _ = run(capsys, "verify", str(demo), "--quiet")
    assert code == 0 and "verified" in out
    code, out, _ = run(capsys, "inspect", str(demo))
    assert code == 0 and "features over valid bars" in out and "warnings" in out and "--no-hybrid" in out


def test_inspect_one_symbol_and_unknown_symbol(capsys, demo):
    code, out, _ = run(capsys, "inspect", str(demo), "--symbol", "SYN1")
    assert code == 0 and "SYN1" in out and "SYN0" not in out
    code, _, err = run(capsys, "inspect", str(demo), "--symbol", "ES")
    assert code == 2 and "no symbol 'ES'; the store holds SYN0, SYN1" in err


def test_verify_fails_with_exit_1_on_a_tampered_store(capsys, demo, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(demo, bad)
    shard = bad / json.loads((bad / "manifest.json").read_text())["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", str(bad), "--quiet")
    assert code == 1 and "FAILED" in out


def test_missing_store(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope"))
    assert code == 2 and "no such store directory" in err


def test_verify_with_an_unreadable_source_runs_the_other_checks(small_demo, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"timestamp": pa.array([T0, T0 + 60 * 10**9], pa.timestamp("ns", tz="UTC")),
                             "open": [1.0, 1.0], "high": [0.5, 2.0], "low": [0.9, 0.5], "close": [1.0, 1.0]}), bad)
    code, out, err = run(capsys, "verify", small_demo, "--source", bad, "--quiet")
    text = " ".join((out + err).split())
    assert code == 1 and "--on-bad-bars" not in text and "Traceback" not in text
    assert "cannot be read with the ingest policy the store was built with ('error')" in text
    assert re.search(r"structure\s*│\s*ok", out) and re.search(r"checksums\s*│\s*ok", out)
