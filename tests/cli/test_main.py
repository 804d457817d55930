"""The CLI: --help everywhere, exit codes, one-line refusals."""
import json
import subprocess
import sys

import pytest

from gpu_features.cli import main

COMMANDS = ["precompute", "verify", "inspect"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_of_the_program_and_every_command():
    out = subprocess.run([sys.executable, "-m", "gpu_features.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    for cmd in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "gpu_features.cli", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: gpu-features " + cmd in r.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "demo"
    code = main(["precompute", "--output", str(path), "--synthetic-bars", "20000", "--symbols", "2",
                 "--engine", "host", "--quiet", "--shard-bars", "15000"])
    assert code == 0
    return path


def test_precompute_writes_a_store(demo):
    m = json.loads((demo / "manifest.json").read_text())
    assert m["n_bars"] == 40_000 and len(m["shards"]) == 3 and m["engine"]["name"] == "host"


def test_existing_output_is_refused_in_one_line(capsys, demo):
    code, out, err = run(capsys, "precompute", "--output", str(demo), "--synthetic-bars", "100", "--quiet")
    assert code == 2
    assert err.strip().count("\n") == 0 and "already exists; pass --overwrite" in err


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


def test_config_flags_reach_the_manifest(capsys, tmp_path):
    code, _, _ = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--synthetic-bars", "3000", "--quiet",
                     "--engine", "reference", "--no-hybrid", "--zigzag-k", "2.5", "--window-length", "50")
    assert code == 0
    cfg = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert cfg["hybrid"] is False and cfg["zigzag_k"] == 2.5 and cfg["window_length"] == 50


def test_config_file_and_bad_values(capsys, tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"atr_period": 14, "colour": "red"}))
    code, _, err = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--config", str(tmp_path / "cfg.json"))
    assert code == 2 and "unknown key(s) colour" in err
    code, _, err = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--atr-period", "0")
    assert code == 2 and "FeatureConfig.atr_period = 0 is out of range" in err
    assert not (tmp_path / "s").exists()


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


def test_missing_store(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope"))
    assert code == 2 and "no such store directory" in err


def test_reader_flag(capsys, tmp_path, demo):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_features import bars as bars_mod

    n = 300
    c = 100.0 + np.arange(n) * 0.25
    pq.write_table(pa.table({"timestamp": pa.array(1_704_067_200 + np.arange(n) * 60, pa.int64()),
                             "open": c, "high": c + 1, "low": c - 1, "close": c}), tmp_path / "nq.parquet")
    code, out, _ = run(capsys, "precompute", "--input", str(tmp_path / "nq.parquet"), "--output",
                       str(tmp_path / "s"), "--reader", "pyarrow", "--engine", "host", "--quiet")
    assert code == 0 and "read with pyarrow" in out
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["sources"][0]["ingest"]["reader"] == "pyarrow"
    if bars_mod._cudf() is None:
        code, _, err = run(capsys, "precompute", "--input", str(tmp_path / "nq.parquet"), "--output",
                           str(tmp_path / "s2"), "--reader", "cudf", "--quiet")
        assert code == 2 and "the cudf reader needs cudf and a CUDA GPU" in err and not (tmp_path / "s2").exists()
    code, _, err = run(capsys, "precompute", "--output", str(demo), "--append", str(tmp_path / "nq.parquet"),
                       "--reader", "pyarrow")
    assert code == 2 and "--reader cannot be used with it" in err
