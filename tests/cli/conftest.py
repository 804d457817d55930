"""Fixtures of the command-line tests: stores built once per module."""
import pytest

from gpu_features import synthetic
from gpu_features.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A two-symbol store of 40,000 bars in three shards, built by `gpu-features precompute`."""
    path = tmp_path_factory.mktemp("cli") / "demo"
    code = main(["precompute", "--output", str(path), "--synthetic-bars", "20000", "--symbols", "2",
                 "--engine", "host", "--quiet", "--shard-bars", "15000"])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def small_demo(make_store, tmp_path_factory):
    """A one-symbol store of 3,000 bars in three shards."""
    path = tmp_path_factory.mktemp("msg") / "demo"
    make_store(synthetic.generate(3000, 1, 0), path, shard_bars=1000)
    return path
