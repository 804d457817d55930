"""The feature store: per-bar features as safetensors shards under a checked manifest.

One module per concern, each importing only those listed after it (pyproject's import-linter contract):

- :mod:`.dataset`  datasets of part stores (a distributed build): written, appended to;
- :mod:`.append`   :func:`append_store`, new bars continued from the stored end states;
- :mod:`.writer`   shard, state and manifest writers and :func:`precompute`;
- :mod:`.reader`   :func:`open_store` (a store or a dataset) and the :class:`Store` / :class:`Dataset` readers;
- :mod:`.recovery` interrupted replaces put back, leftovers of killed writers found and removed;
- :mod:`.stats`    the manifest's statistics, swing rates, split and window counts;
- :mod:`.report`   what a write did (:class:`BuildReport`) and the one phase clock every writer uses;
- :mod:`.format`   names, sizes, safetensors-header and manifest checks (trust nothing on disk), the one
  output check (:func:`~.format.check_output`) and the check before a commit.
"""
from .append import append_store
from .dataset import append_dataset
from .format import (CHECKPOINT_BARS, FORMAT, MANIFEST, SHARD_BARS, STATE_FILE, VERSION, check_outside_artifact,
                     enclosing_artifact)
from .reader import DATASET_MANIFEST, Dataset, Segment, Shard, Store, is_dataset, open_store
from .report import BuildReport
from .writer import precompute

__all__ = ["CHECKPOINT_BARS", "DATASET_MANIFEST", "FORMAT", "MANIFEST", "SHARD_BARS", "STATE_FILE", "BuildReport",
           "Dataset", "Segment", "Shard", "Store", "VERSION", "append_dataset", "append_store", "check_outside_artifact",
           "enclosing_artifact", "is_dataset", "open_store", "precompute"]
