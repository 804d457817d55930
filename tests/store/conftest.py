"""Fixtures of the store tests: a two-symbol store built once per module, and a fresh copy of it per test."""
import shutil

import pytest

from gpu_features import synthetic

N, SYMBOLS = 15_000, 2


@pytest.fixture(scope="module")
def bars():
    return synthetic.generate(N, SYMBOLS, seed=11)


@pytest.fixture(scope="module")
def built(make_store, bars, tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "s"
    make_store(bars, path, shard_bars=7000, checkpoint_every=1000)
    return path


@pytest.fixture
def store_copy(built, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst
