"""gpu-features: OHLC bars in, verified relativity-10 feature stores out.

Public API (the modules behind it: docs/ARCHITECTURE.md)::

    import gpu_features as gf
    cfg = gf.FeatureConfig()
    feats, valid = gf.compute_features(o, h, l, c, config=cfg, engine="auto", offsets=None)
    bars = gf.read_bars("nq.parquet")                     # or read_bars(path, spec=gf.ReadSpec(timezone=...))
    store = gf.precompute(bars, "data/features/nq", config=cfg, engine="auto")
    store = gf.open_store("data/features/nq")
    store.features(device="cpu")
    stream = gf.FeatureStream.from_store("data/features/nq")   # live bars, bit-identical to the store
    out = stream.update(table_of_closed_bars)                  # out.features [n, 10], out.valid [n]
"""
from .config import FEATURE_NAMES, N_FEATURES, FeatureConfig
from .engines import compute_features
from .errors import BarsError, ConfigError, EngineError, GpuFeaturesError, StoreError, StreamError
from .ingest import Bars, ReadSpec, read_bars

__version__ = "0.1.0"


def __getattr__(name):
    # The store pulls in safetensors; import it on first use so `compute_features` stays light.
    if name in ("precompute", "open_store", "Store"):
        from . import store

        return getattr(store, name)
    if name == "FeatureStream":
        from .stream import FeatureStream

        return FeatureStream
    raise AttributeError(f"module 'gpu_features' has no attribute {name!r}")


__all__ = [
    "Bars", "BarsError", "ConfigError", "EngineError", "FEATURE_NAMES", "FeatureConfig", "FeatureStream",
    "GpuFeaturesError", "N_FEATURES", "ReadSpec", "Store", "StoreError", "StreamError", "compute_features",
    "open_store", "precompute", "read_bars",
]
