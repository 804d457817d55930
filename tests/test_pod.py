"""The pod path: `make precompute` and `make train` from a fresh clone, offline, where PYTHON is a venv
holding every dependency of the main job.

On a GPU pod `python3` is itself a virtual environment with numpy, torch and CuPy and
there is no network. The parent venvs built here are the same situation: their packages
are visible only through a .pth in their own site-packages, so `--system-site-packages`
of the base interpreter shows none of them, and pip can reach no index. The Makefile must
let .venv see the parent's packages, install nothing, and run precompute with the engine
`auto` picks here. Three parents:

- one that sees everything this test interpreter sees (new pip and setuptools included);
- `python -m venv` with its bundled pip and setuptools 65.5 (Python 3.11; a 3.12+ venv bundles
  pip only), and only the runtime packages: the editable install this once needed failed here;
- no pip and no setuptools at all, and only the runtime packages. This machine's base
  interpreter has pip and setuptools in its own site-packages, which every venv made from
  it sees through --system-site-packages, so this parent makes them unimportable (a .pth
  that blocks their import), as on a slim pod image where they are absent.
"""
import importlib.metadata
import json
import os
import re
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
RUNTIME = ("numpy", "pyarrow", "safetensors", "rich", "filelock")  # the main job's packages (pyproject.toml)
BUILD_TOOLS = ("pip", "setuptools", "wheel", "pkg_resources", "ensurepip")
# A tiny training run: the point is that `make train` runs, not what it learns.
TRAIN_ARGS = ("TRAIN_ARGS=--epochs 1 --max-train-windows 256 --max-val-windows 128 --max-final-windows 128 "
              "--batch-size 64 --hidden-size 8 --device cpu --quiet")

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


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_site(where: Path, dists) -> Path:
    """A folder of links to the installed distributions ``dists`` and everything they require (as this
    test interpreter has them), and nothing else: no pip, setuptools or wheel."""
    where.mkdir()
    todo, seen = list(dists), set()
    while todo:
        name = todo.pop()
        if _key(name) in seen or _key(name) in BUILD_TOOLS:
            continue
        seen.add(_key(name))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python, not installed here
        todo += [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in dist.requires or [] if "extra ==" not in r]
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != ".."}:
            link, target = where / top, Path(dist.locate_file(top))
            if target.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(target)
    return where


def _bare_parent(where: Path, site_dir: Path, with_pip: bool) -> Path:
    """A venv of this interpreter's base Python that sees ``site_dir`` through a .pth; with its bundled pip
    (and setuptools, on 3.11), or with pip, setuptools and ensurepip made unimportable."""
    cmd = [sys.executable, "-m", "venv", str(where)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(cmd, check=True, env=_offline_env())
    python = where / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "runtime-packages.pth").write_text(f"{site_dir}\n")
    (site / f"{MARKER}.py").write_text("HERE = 'parent venv'\n")
    if not with_pip:
        (site / "no-build-tools.pth").write_text(
            f"import sys; sys.modules.update(dict.fromkeys({BUILD_TOOLS!r}))\n")
    return python


def _clone(where: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "fetch", "-q", str(ROOT), "HEAD"], check=True)
    subprocess.run(["git", "-C", str(where), "checkout", "-q", "FETCH_HEAD"], check=True)
    return where


def _make(clone: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(clone), *args], env=_offline_env(), capture_output=True, text=True,
                          timeout=timeout)


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


@pytest.mark.parametrize("parent_kind", ["old-setuptools", "no-pip"])
def test_main_jobs_offline_without_build_tools(tmp_path, parent_kind):
    """`make precompute` and `make train` from a fresh clone, offline, with a parent that has the runtime
    packages and torch but an old setuptools, or no pip and no setuptools at all (where a short training
    run goes through `make train`; with the old setuptools its environment stage)."""
    pytest.importorskip("torch", reason="make train needs torch in the parent")
    site_dir = _runtime_site(tmp_path / "site", RUNTIME + ("torch",))
    parent = _bare_parent(tmp_path / "parent", site_dir, with_pip=parent_kind == "old-setuptools")
    probe = "import setuptools; print(setuptools.__version__)"
    got = subprocess.run([str(parent), "-c", probe], capture_output=True, text=True, env=_offline_env())
    if parent_kind == "old-setuptools":
        assert subprocess.run([str(parent), "-m", "pip", "--version"], capture_output=True,
                              env=_offline_env()).returncode == 0
        # 3.11 bundles setuptools 65.5; 3.12+ bundles none: either way below the 68 the editable install needed.
        assert got.returncode != 0 or tuple(map(int, got.stdout.split(".")[:2])) < (68, 0), got.stdout
    else:
        assert got.returncode != 0, got.stdout

    clone = _clone(tmp_path / "clone")
    store, run = tmp_path / "store", tmp_path / "run"
    r = _make(clone, "precompute", f"PYTHON={parent}", f"STORE={store}", "PRECOMPUTE_ARGS=--synthetic-bars 5000 --quiet")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (store / "manifest.json").is_file() and "5,000 bars" in out, out
    assert f"engine {engines.resolve('auto')} (" in out, out
    venv_python = clone / ".venv" / "bin" / "python"
    # The clone's own gpu_features, through the checkout .pth: nothing was built or installed.
    probe = ("import gpu_features, json, os, sysconfig\n"
             f"import {MARKER}\n"
             "print(json.dumps([gpu_features.__file__, os.listdir(sysconfig.get_path('purelib'))]))\n")
    r = subprocess.run([str(venv_python), "-c", probe], env=_offline_env(), capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    origin, listing = json.loads(r.stdout)
    assert Path(origin).resolve() == clone / "gpu_features" / "__init__.py"
    assert not [f for f in listing if re.match(r"(gpu_features|pip|setuptools|__editable__)", f)], listing
    if parent_kind == "no-pip":
        for module in ("pip", "setuptools", "ensurepip"):
            assert subprocess.run([str(venv_python), "-m", module, "--version"], env=_offline_env(),
                                  capture_output=True).returncode != 0, module
    r = subprocess.run([str(clone / ".venv" / "bin" / "gpu-features"), "inspect", str(store)], env=_offline_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and "5,000" in r.stdout, r.stdout + r.stderr

    if parent_kind == "old-setuptools":
        # The train recipe is the same for every parent (it runs in the no-pip case below, the stricter one);
        # here: its environment stage finds the parent's torch and installs nothing.
        r = _make(clone, f"PYTHON={parent}", ".venv/.torch")
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run([str(venv_python), "-c", "import torch, sys; print(torch.__file__)"], env=_offline_env(),
                           capture_output=True, text=True)
        assert r.returncode == 0 and not r.stdout.startswith(str(clone)), r.stdout + r.stderr
        return
    r = _make(clone, "train", f"PYTHON={parent}", f"STORE={store}", f"RUN={run}", TRAIN_ARGS, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (run / "summary.json").is_file() and (run / "model.safetensors").is_file()


def test_a_missing_package_without_pip_is_named(tmp_path):
    """No pip and a runtime package missing: make stops at once and names what to install, and where."""
    site_dir = _runtime_site(tmp_path / "site", [d for d in RUNTIME if d != "filelock"])
    (site_dir / "filelock").unlink(missing_ok=True)
    parent = _bare_parent(tmp_path / "parent", site_dir, with_pip=False)
    if subprocess.run([str(parent), "-c", "import filelock"], capture_output=True).returncode == 0:
        pytest.skip("filelock is importable from this Python's base installation, so it cannot be missing here")
    clone = _clone(tmp_path / "clone")
    r = _make(clone, "precompute", f"PYTHON={parent}", f"STORE={tmp_path / 'store'}")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and not (tmp_path / "store").exists(), out
    assert f"error: gpu-features needs filelock, which {parent} lacks" in out, out
    assert "install them into" in out and "pip install --no-index --find-links DIR" in out, out
