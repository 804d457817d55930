"""The wheel: every module of the source tree and every kernel source ships in it."""
import shutil
import subprocess
import sys

import pytest

from gpu_features.engines import abi


def test_kernel_sources_ship_in_the_wheel(tmp_path):
    """A non-editable install finds the kernels as package data (gpu_features/kernels/)."""
    import importlib.metadata
    import zipfile
    from pathlib import Path

    pytest.importorskip("wheel", reason="building a wheel needs the 'wheel' package (make test installs it)")
    pytest.importorskip("pip", reason="building a wheel needs pip (make test runs without it where nothing is missing)")
    try:  # the version from its metadata: importing setuptools here would fight the distutils already imported
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is None or tuple(int(x) for x in version.split(".")[:2]) < (68, 0):
        pytest.skip(f"building a wheel needs setuptools >= 68 (pyproject.toml), this Python has {version or 'none'}; "
                    "make test installs a newer one where it can")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "gpu_features", "kernels", "train"):
        (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("gpu_features-*.whl"))).namelist()
    for source in abi.KERNEL_SOURCES:
        assert f"gpu_features/kernels/{source}" in names
    # every module of the source tree ships too (a sub-package missing from pyproject's list would not)
    modules = sorted(str(p.relative_to(root)) for pkg in ("gpu_features", "train") for p in (root / pkg).rglob("*.py"))
    assert modules and [m for m in modules if m not in names] == []
