import os
from pathlib import Path

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.engines import gpu, host
from tests.harness import STORE_ENGINE

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "nq_synth_20k.npz"
GOLDEN_IN_REPO = Path(__file__).resolve().parent / "data" / "nq_synth_20k.npz"


@pytest.fixture(scope="session")
def golden():
    """The 20,000 golden bars and the old pipeline's features for them."""
    for path in (GOLDEN_IN_REPO, GOLDEN):
        if path.is_file():
            return dict(np.load(path))
    pytest.fail(f"golden file missing: looked in {GOLDEN_IN_REPO} and {GOLDEN}")


def _engine_param(name):
    if name == "gpu":
        return pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
            not gpu.available(), reason=f"GPU engine: {gpu.unavailable_reason()}")])
    return pytest.param(name, marks=pytest.mark.skipif(not host.available(), reason="no C++ compiler for the host engine"))


FAST = [_engine_param("host"), _engine_param("gpu")]
ALL = ["reference"] + FAST


@pytest.fixture(params=FAST)
def fast_engine(request):
    """Each fast engine in turn: host (CI) and gpu (skipped with the reason where absent)."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Build the host library into a per-session cache unless the caller chose one."""
    if "GPU_FEATURES_CACHE" not in os.environ:
        os.environ["GPU_FEATURES_CACHE"] = str(tmp_path_factory.mktemp("kernel-cache"))
    yield


@pytest.fixture(params=ALL)
def engine(request):
    """Every engine in turn: reference, host, gpu (skipped with the reason where absent)."""
    return request.param


@pytest.fixture(scope="session")
def make_store():
    """The one store factory: ``make_store(bars_or_path, path, engine=None, **precompute_kwargs) -> Store``.

    ``engine=None`` takes :data:`tests.harness.STORE_ENGINE` (host where a compiler exists, else the
    reference engine, which is exact and fast enough for test-sized stores); an engine asked for by
    name that cannot run here skips the test with the reason.
    """
    def build(bars_or_path, path, engine=None, **kwargs):
        engine = engine or STORE_ENGINE
        if engine == "host" and not host.available():
            pytest.skip("no C++ compiler for the host engine")
        if engine == "gpu" and not gpu.available():
            pytest.skip(f"GPU engine: {gpu.unavailable_reason()}")
        return gf.precompute(bars_or_path, path, engine=engine, **kwargs)

    return build


@pytest.fixture
def fresh_store(make_store, tmp_path):
    """A new one-symbol store of 2,000 synthetic bars at ``tmp_path / "s"``, for a test that may change it."""
    return make_store(synthetic.generate(2000, 1, 2), tmp_path / "s")
