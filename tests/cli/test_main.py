"""gpu-features: --help of the program and of every command, never broken inside a word; `python -m gpu_features`,
the command line without an installed console script, and what its precompute of a parquet file imports (nothing it
does not need: no pandas, no pyarrow.dataset)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu_features import synthetic
from gpu_features.engines import host

COMMANDS = ["precompute", "verify", "inspect"]
ROOT = Path(__file__).resolve().parents[2]


def test_help_of_the_program_and_every_command():
    out = subprocess.run([sys.executable, "-m", "gpu_features.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    for cmd in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "gpu_features.cli", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: gpu-features " + cmd in r.stdout


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


def test_python_dash_m_gpu_features_is_the_command():
    r = subprocess.run([sys.executable, "-m", "gpu_features", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: gpu-features" in r.stdout and all(c in r.stdout for c in COMMANDS)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")


def test_python_m_gpu_features_is_the_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gpu_features", "--help"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: gpu-features "), r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "gpu_features", "inspect", str(tmp_path / "nothing")], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "nothing" in r.stderr  # the CLI's own exit codes come through


@pytest.mark.skipif(not host.available(), reason="no C++ compiler: the run uses the host engine")
@pytest.mark.skipif(importlib.util.find_spec("pandas") is None,
                    reason="pandas is not installed here, so nothing could import it")
@pytest.mark.parametrize("symbols", [1, 2])
def test_precompute_of_a_parquet_file_imports_only_what_it_needs(tmp_path, symbols):
    """pyarrow imports pandas where it is installed on some paths (read_table's dataset module, to_numpy):
    0.2-1 s of a CLI run that reads numbers and needs none of it; a file of doubles and ns timestamps
    without a symbol column needs no pyarrow.compute either (50 ms to import)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bars = synthetic.generate(3000, symbols, seed=1)
    columns = {"timestamp": pa.array(bars.timestamp, pa.timestamp("ns", tz="UTC")), "open": bars.open,
               "high": bars.high, "low": bars.low, "close": bars.close}
    if symbols > 1:
        columns["symbol"] = pa.array(np.repeat(np.array(bars.segment_names), np.diff(bars.segment_bounds())))
    src = tmp_path / "bars.parquet"
    pq.write_table(pa.table(columns), src)
    code = ("import json, runpy, sys\n"
            "sys.argv = ['gpu-features'] + sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_module('gpu_features', run_name='__main__')\n"
            "except SystemExit as done:\n"
            "    code = done.code\n"
            "print(json.dumps([code, sorted(m for m in ('pandas', 'pyarrow.dataset', 'pyarrow.compute') "
            "if m in sys.modules)]))\n")
    r = subprocess.run([sys.executable, "-c", code, "precompute", "--input", str(src), "--output",
                        str(tmp_path / "store"), "--engine", "host", "--quiet"], env=_env(), capture_output=True,
                       text=True)
    code, imported = json.loads(r.stdout.strip().splitlines()[-1])
    assert code == 0, r.stdout + r.stderr
    # A symbol column is dictionary-decoded with pyarrow.compute; pandas and pyarrow.dataset are never needed.
    assert imported == ([] if symbols == 1 else ["pyarrow.compute"]), imported
