"""Fixtures of the trainer tests: stores to train on, built once per module (no torch needed to build them)."""
import pytest

from gpu_features import synthetic

DATES = ["2019-01-10", "2019-01-10T15:00"]  # split dates of the `stores` fixture


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    """A one-symbol store of 24,000 synthetic bars."""
    return make_store(synthetic.generate(24_000, 1, 5), tmp_path_factory.mktemp("t") / "s")


@pytest.fixture(scope="module")
def stores(make_store, tmp_path_factory):
    """Two stores of one feature config split at the same dates, and one split by fractions."""
    d = tmp_path_factory.mktemp("ddp")
    a = make_store(synthetic.generate(6000, 1, 5), d / "a", splits={"dates": DATES})
    b = make_store(synthetic.generate(6000, 1, 6), d / "b", splits={"dates": DATES})
    f = make_store(synthetic.generate(6000, 1, 7), d / "f")
    return a, b, f


@pytest.fixture(scope="module")
def trained_run(store, tmp_path_factory):
    """A finished tiny run (1 epoch, hidden 8) on the ``store`` fixture: ``(run_dir, store)``."""
    pytest.importorskip("torch", reason="training needs torch (make test installs it)")
    from tests.train.runs import tiny
    from train.loop import train

    run_dir = tmp_path_factory.mktemp("run") / "r"
    train(store.path, run_dir, tiny(epochs=1, hidden_size=8, max_train_windows=128, max_val_windows=64,
                                    max_final_windows=64))
    return run_dir, store
