"""The pod path: `make precompute` from a fresh clone, offline, where PYTHON is a venv holding every dependency.

On a GPU pod `python3` is itself a virtual environment with numpy, torch and CuPy and
there is no network. The parent venv built here is the same situation: its packages
are visible only through a .pth in its own site-packages (pointing at what this test
interpreter sees), so `--system-site-packages` of the base interpreter shows none of
them, and pip can reach no index. The Makefile must let .venv see the parent's
packages, install nothing, and run precompute with the engine `auto` picks here.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gpu_features import engines
from gpu_features.engines import host

ROOT = Path(__file__).resolve().parents[1]
MARKER = "pod_parent_marker"

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="the pod test clones the repository and needs git"),
    pytest.mark.skipif(shutil.which("make") is None, reason="the pod test runs make and needs it"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason=f"{ROOT} is not a git checkout, nothing to clone"),
    pytest.mark.skipif(host.compiler() is None, reason="no C++ compiler: the pod test runs the host engine"),
]


def _offline_env() -> dict:
    """This process's environment with pip cut off from every index, config file and wheel folder."""
    drop = ("PIP_", "VIRTUAL_ENV", "CONDA_", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_RETRIES="0", PIP_TIMEOUT="2", COLUMNS="200")
    return env


def _parent_venv(where: Path) -> Path:
    """A venv whose packages (all of this interpreter's) come through a .pth in its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    stdlib = {os.path.realpath(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}
    # Every folder this interpreter imports from except the checkout itself (pytest puts the
    # repository and tests/ on sys.path): the clone's .venv must run the clone's gpu_features.
    paths = [p for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) not in stdlib
             and not (Path(p) / "gpu_features").exists()]
    (Path(site) / "test-interpreter.pth").write_text("\n".join(paths) + "\n")
    (Path(site) / f"{MARKER}.py").write_text("HERE = 'parent venv'\n")
    return python


def test_make_precompute_offline_with_a_venv_as_python(tmp_path):
    parent = _parent_venv(tmp_path / "parent")
    env = _offline_env()
    # The situation being reproduced: the base interpreter cannot see the parent's packages.
    base = subprocess.run([str(parent), "-c", "import sys; print(sys._base_executable)"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert subprocess.run([base, "-c", f"import {MARKER}"], env=env, capture_output=True).returncode != 0

    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "fetch", "-q", str(ROOT), "HEAD"], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "FETCH_HEAD"], check=True)

    store = tmp_path / "store"
    r = subprocess.run(["make", "-C", str(clone), "precompute", f"PYTHON={parent}", f"STORE={store}",
                        "PRECOMPUTE_ARGS=--synthetic-bars 5000 --quiet"],
                       env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (store / "manifest.json").is_file()
    assert f"engine {engines.resolve('auto')} (" in out, out
    assert "5,000 bars" in out, out
    # Nothing was installed: every package came from the parent, none into .venv.
    venv_python = clone / ".venv" / "bin" / "python"
    probe = ("import importlib, os, sys\n"
             f"import {MARKER}\n"
             "for m in ('numpy', 'pyarrow', 'safetensors', 'rich'):\n"
             "    f = os.path.realpath(importlib.import_module(m).__file__)\n"
             "    assert not f.startswith(os.path.realpath(sys.prefix) + os.sep), f\n"
             "import gpu_features; print(gpu_features.__file__)\n")
    r = subprocess.run([str(venv_python), "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve() == clone / "gpu_features" / "__init__.py"

    # A second make finds everything in place: the stamp is not rebuilt, nothing is installed.
    stamp = clone / ".venv" / ".core"
    before = stamp.stat().st_mtime_ns
    r = subprocess.run(["make", "-C", str(clone), f"PYTHON={parent}", ".venv/.core"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and stamp.stat().st_mtime_ns == before, r.stdout + r.stderr


def test_a_venv_from_an_older_makefile_gets_the_parent_pth(tmp_path):
    """.venv/.core from before the .pth existed is newer than pyproject.toml; make must still add the .pth."""
    parent = _parent_venv(tmp_path / "parent")
    env = _offline_env()
    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "fetch", "-q", str(ROOT), "HEAD"], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "FETCH_HEAD"], check=True)
    # What the old Makefile left: a --system-site-packages venv and its stamp, newer than pyproject.toml.
    subprocess.run([str(parent), "-m", "venv", "--system-site-packages", "--without-pip", str(clone / ".venv")],
                   check=True, env=env)
    (clone / ".venv" / ".core").touch()
    venv_python = clone / ".venv" / "bin" / "python"
    assert subprocess.run([str(venv_python), "-c", f"import {MARKER}"], env=env).returncode != 0
    r = subprocess.run(["make", "-C", str(clone), f"PYTHON={parent}", ".venv/.core"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(venv_python), "-c", f"import {MARKER}, numpy, pyarrow, safetensors, rich"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
