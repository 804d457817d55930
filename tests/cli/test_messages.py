"""Honest words: every refusal one sentence with the right exit code, summaries that tell the whole story."""
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import EXIT_INTERNAL, guarded, main
from gpu_features.errors import GpuFeaturesError
from tests.harness import STORE_ENGINE
from tests.test_append import write_parquet

T0 = 1_704_067_200 * 10**9


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo(make_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("msg") / "demo"
    make_store(synthetic.generate(3000, 1, 0), path, shard_bars=1000)
    return path


# --- exit codes and one-line refusals --------------------------------------------------------


def test_install_hints_keep_their_extras(capsys):
    code = guarded(lambda: (_ for _ in ()).throw(GpuFeaturesError("install it with `pip install 'gpu-features[plot]'`.")),
                   sys.modules["gpu_features.cli"].err_console, "interrupted")
    assert code == 2 and "gpu-features[plot]" in capsys.readouterr().err


def test_internal_error_has_its_own_code_and_a_traceback_file(capsys):
    def bug():
        return {}["missing"]

    code = guarded(bug, sys.modules["gpu_features.cli"].err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL == 3 and err.count("\n") == 1 and "internal error: KeyError" in err
    path = re.search(r"traceback in (\S+)\.", err).group(1)
    assert "Traceback" in Path(path).read_text() and "bug" in Path(path).read_text()
    os.unlink(path)


@pytest.mark.parametrize("exc, words", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"), "permission denied (/data/out)"),
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), "permission denied (/mnt/ro)"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x"), "a file is in the way"),
])
def test_os_errors_are_one_sentence_exit_2(capsys, exc, words):
    def fail():
        raise exc

    code = guarded(fail, sys.modules["gpu_features.cli"].err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1


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


def test_export_below_a_file(demo, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "export", demo, "--output", tmp_path / "f" / "e")
    assert code == 2 and "a file is in the way" in err


# --- plot arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["--out", "c.txt"], "the name must end in .png"),
    (["--last", "-5"], "--last -5 is out of range; a chart shows 1 .. 20,000 bars"),
    (["--last", "0"], "--last 0 is out of range"),
    (["--last", "1000000"], "--last 1000000 is out of range"),
    (["--start", "garbage"], "--start 'garbage' is not an ISO 8601 time"),
    (["--end", "31/12/2024"], "--end '31/12/2024' is not an ISO 8601 time"),
])
def test_plot_refuses_bad_arguments(demo, tmp_path, capsys, argv, words):
    argv = [a if a != "c.txt" else str(tmp_path / "c.txt") for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "c.png")]
    code, _, err = run(capsys, "plot", demo, *argv)
    assert code == 2 and words in err and "split date" not in err, err
    assert not (tmp_path / "c.txt").exists()


def test_plot_bounds_its_memory(tmp_path, capsys):
    path = tmp_path / "big"
    gf.precompute(synthetic.generate(25_000, 1, 0), path, engine=STORE_ENGINE)
    code, _, err = run(capsys, "plot", path, "--start", "2000-01-01", "--out", tmp_path / "c.png")
    assert code == 2 and "more than a chart holds (20,000); narrow the range" in err


# --- help and switches ---------------------------------------------------------------------------


def test_help_never_breaks_words():
    env = dict(os.environ, COLUMNS="70")
    for cmd in ("precompute", "plot", "export", "verify", "inspect"):
        r = subprocess.run([sys.executable, "-m", "gpu_features.cli", cmd, "--help"], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0
        words = set(re.findall(r"[A-Za-z_]+", " ".join(r.stdout.split())))
        for w in ("dist_to_prev_SH", "bars_since_SH_norm", "reference"):
            if w in r.stdout.replace("\n", " "):
                assert w in words
        assert not re.search(r"[a-z]-\n", r.stdout)
    r = subprocess.run([sys.executable, "-m", "gpu_features.cli", "plot", "--help"], capture_output=True, text=True,
                       env=env)
    assert "[range_z,dist_to_prev_SH,dist_to_prev_SL,bars_since_SH_norm]" in " ".join(r.stdout.split()).replace(", ", ",")


def test_bool_switches_are_honest(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["precompute", "--hybrid", "True", "--output", str(tmp_path / "s")])
    assert e.value.code == 2  # a switch takes no value: argparse says so
    code, _, _ = run(capsys, "precompute", "--output", tmp_path / "s", "--synthetic-bars", 2000, "--quiet",
                     "--no-hybrid")
    assert code == 0 and gf.open_store(tmp_path / "s").config.hybrid is False
    r = subprocess.run([sys.executable, "-m", "gpu_features.cli", "precompute", "--help"], capture_output=True,
                       text=True)
    assert "--hybrid, --no-hybrid" in r.stdout and "turn hybrid on or off [on]" in " ".join(r.stdout.split())


# --- summaries -----------------------------------------------------------------------------------


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


def test_verify_with_an_unreadable_source_runs_the_other_checks(demo, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"timestamp": pa.array([T0, T0 + 60 * 10**9], pa.timestamp("ns", tz="UTC")),
                             "open": [1.0, 1.0], "high": [0.5, 2.0], "low": [0.9, 0.5], "close": [1.0, 1.0]}), bad)
    code, out, err = run(capsys, "verify", demo, "--source", bad, "--quiet")
    text = " ".join((out + err).split())
    assert code == 1 and "--on-bad-bars" not in text and "Traceback" not in text
    assert "cannot be read with the ingest policy the store was built with ('error')" in text
    assert re.search(r"structure\s*│\s*ok", out) and re.search(r"checksums\s*│\s*ok", out)
