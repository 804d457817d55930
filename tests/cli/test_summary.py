"""What a write printed: one unbroken line whose phases add up, the append's own numbers, dropped and repaired bars, split warnings."""
import re

import numpy as np
import pyarrow as pa

import gpu_features as gf
from gpu_features import synthetic
from tests.cli.console import T0, run
from tests.harness import STORE_ENGINE, write_parquet


def _summary_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("engine "))


def _phases_add_up(line: str):
    total = float(re.search(r"total ([\d.]+) s", line).group(1))
    parts = [float(x) for x in re.findall(r"(?:read|compute|stats|write) ([\d.]+)", line)]
    assert len(parts) == 4 and abs(sum(parts) - total) <= 0.03, line


def test_summary_is_one_unbroken_line_whose_phases_add_up(tmp_path, capsys):
    code, out, _ = run(capsys, "precompute", "--output", tmp_path / ("a-long-folder-name-" * 3), "--synthetic-bars",
                       2000, "--quiet", "--engine", STORE_ENGINE)
    assert code == 0
    _phases_add_up(_summary_line(out))
    assert re.search(r"wrote \S+: 2,000 bars, 1 symbol\(s\), 1 shard\(s\), [\d.]+ MB\n", out)


def test_append_summary_is_the_appends_own(tmp_path, capsys):
    bars = synthetic.generate(4000, 1, 21)
    gf.precompute(bars.take(0, 3000, 0), tmp_path / "s", engine="reference")
    new = write_parquet(tmp_path / "new.parquet", bars, 3000, None)
    code, out, _ = run(capsys, "precompute", "--output", tmp_path / "s", "--append", new, "--quiet",
                       "--engine", STORE_ENGINE)
    st = gf.open_store(tmp_path / "s")
    line = _summary_line(out)
    assert code == 0 and "(1,000 new bars, 0 overlapping skipped)" in out
    assert line.startswith(f"engine {STORE_ENGINE} ") and st.engine["name"] == "reference"
    assert f"total {st.appends[-1]['timings']['total_s']:.2f} s" in line
    _phases_add_up(line)


def test_dropped_and_repaired_bars_are_on_screen(tmp_path, capsys):
    n = 400
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.choice([-0.25, 0, 0.25], n))
    high, low = close + 0.5, close - 0.5
    low[[5, 9, 13]] = close[[5, 9, 13]] + 1  # low above min(open, close): dropped
    tbl = pa.table({"timestamp": pa.array(T0 + np.arange(n) * 60 * 10**9, pa.timestamp("ns", tz="UTC")),
                    "open": close, "high": high, "low": low, "close": close})
    import pyarrow.parquet as pq

    pq.write_table(tbl, tmp_path / "b.parquet")
    code, out, _ = run(capsys, "precompute", "--input", tmp_path / "b.parquet", "--output", tmp_path / "s",
                       "--on-bad-bars", "drop", "--quiet")
    assert code == 0 and "400 rows read, 397 bars kept; dropped 3 (low above min(open, close); first rows 5, 9, 13)" in " ".join(out.split())
    assert "397 bars" in out


def test_empty_splits_and_no_valid_bars_are_warned(tmp_path, capsys):
    code, out, _ = run(capsys, "precompute", "--output", tmp_path / "s", "--synthetic-bars", 2000, "--quiet",
                       "--split-fractions", "1,0,0")
    assert code == 0 and "warning: split val has no bars" in out and "warning: split test has no bars" in out
    code, out, _ = run(capsys, "verify", tmp_path / "s", "--quiet")
    assert code == 0 and "warning: split val has no bars" in out
    code, out, _ = run(capsys, "precompute", "--output", tmp_path / "w", "--synthetic-bars", 2000, "--quiet",
                       "--warmup-bars", 1_000_000)
    assert code == 0 and "warning: the store has no valid bars" in out
