"""The feature store: per-bar features as safetensors shards under a checked manifest.

One module per concern, each importing only those listed before it (pyproject's import-linter contract):

- :mod:`.format`   names, sizes, safetensors-header and manifest checks (trust nothing on disk);
- :mod:`.stats`    the manifest's statistics, swing rates, split and window counts;
- :mod:`.recovery` interrupted replaces put back, leftovers of killed writers found and removed;
- :mod:`.reader`   :func:`open_store` and the :class:`Store` reader with typed accessors;
- :mod:`.writer`   shard, state and manifest writers and :func:`precompute`;
- :mod:`.append`   :func:`append_store`, new bars continued from the stored end states;
- :mod:`.dataset`  datasets of part stores (a distributed build) read as one store; the package's
  :func:`open_store` opens either.
"""
from .append import OVERLAP_POLICIES, append_store
from .format import CHECKPOINT_BARS, FORMAT, MANIFEST, SHARD_BARS, STATE_FILE, VERSION, enclosing_artifact
from .dataset import DATASET_MANIFEST, Dataset, append_dataset, is_dataset, open_store
from .reader import Segment, Shard, Store
from .writer import precompute

__all__ = ["CHECKPOINT_BARS", "DATASET_MANIFEST", "FORMAT", "MANIFEST", "OVERLAP_POLICIES", "SHARD_BARS", "STATE_FILE",
           "Dataset", "Segment", "Shard", "Store", "VERSION", "append_dataset", "append_store", "enclosing_artifact",
           "is_dataset", "open_store", "precompute"]
