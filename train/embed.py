"""Embeddings: one vector per window from a trained Jade, computed in device batches.

Pooling: the mean, over the window's valid bars, of the last BiLSTM layer's states of both directions
(``[2 * hidden_size]``). The forward state at bar t summarises bars ``0..t`` and the backward one bars
``t..K-1``, so every bar's state already sees the whole window from one side; averaging over bars uses
all of them (the last forward state alone would ignore what the backward pass learned, and the first
backward state alone the forward one), and leaving invalid bars out keeps a padded or gappy window's
embedding from being pulled towards whatever the encoder makes of missing values. Nothing is masked
when embedding: the encoder sees every bar it was trained to see. This is the one pooling of the
project: :mod:`train.live` and :mod:`train.probe` call :func:`encode_windows`.

::

    run = train.load_run("runs/demo")
    emb = embed_run(run, split="test", stride=5)   # Embeddings: [w, 2H] tensor on the run's device
    write_embeddings(emb, "test.parquet")           # or .safetensors

Windows come from the same :class:`gpu_features.windows.WindowSource` as training, with the run's
window length and ``min_valid_fraction``, so the windows embedded are windows the model was trained on.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gpu_features.fileio import (absolute, check_parents, check_replaceable, check_writable, fsync_file,
                                 temp_sibling)
from gpu_features.splits import SPLIT_NAMES
from gpu_features.store import check_outside_artifact

from .config import TrainError
from .jade import Jade
from .load import LoadedRun, open_training_store

EMBED_FORMAT = "jade-embeddings"   # the mark in a file's metadata: only such a file is ever replaced
EMBED_BATCH = 512
OUTPUT_KINDS = (".parquet", ".safetensors")
SPLIT_CHOICES = SPLIT_NAMES + ("all",)


def pool(states, valid):
    """``[B, 2H]`` mean of ``states [B, K, 2H]`` over the bars where ``valid [B, K]`` (zeros where none is)."""
    w = valid.unsqueeze(-1).to(states.dtype)
    return (states * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def encode_windows(model: Jade, X, valid):
    """``(embedding [B, 2H], states [B, K, 2H])`` of windows ``X [B, K, n_features]``, nothing masked.

    The position channel is appended here for a model trained with it, as the loader does. Call under
    ``torch.no_grad()`` with the model in eval mode (the callers do).
    """
    import torch

    B, K, _ = X.shape
    if model.config.position_channel:
        t = torch.arange(K, device=X.device, dtype=X.dtype) / (K - 1)
        X = torch.cat([X, t.view(1, K, 1).expand(B, K, 1)], dim=-1)
    mask = torch.zeros((B, K), dtype=torch.bool, device=X.device)
    states = model.encode(X, mask)
    return pool(states, valid), states


class Embeddings(NamedTuple):
    """One row per window.

    Attributes:
        embedding: ``[w, 2H] float32`` torch tensor (on the device it was computed on).
        start: ``[w] int64`` first bar of each window in the (concatenated) stores.
        end_time: ``[w] int64`` UTC nanoseconds of each window's last bar.
        symbol: ``[w]`` index into ``symbols``.
        symbols: series names.
        split: ``[w] int8`` (0 train, 1 val, 2 test).
        window_length: K.
    """

    embedding: object
    start: np.ndarray
    end_time: np.ndarray
    symbol: np.ndarray
    symbols: tuple
    split: np.ndarray
    window_length: int


def embed_starts(model: Jade, src, starts: np.ndarray, batch_size: int = EMBED_BATCH):
    """``[w, 2H] float32`` embeddings of the windows at ``starts`` of ``src`` (a WindowSource on the model's device).

    Batches are gathered on the device from the resident features (:meth:`WindowSource.gather`), encoded
    in eval mode without gradients, and kept there.
    """
    import torch

    starts = torch.as_tensor(np.asarray(starts, dtype=np.int64)).to(src.device)
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for a in range(0, len(starts), batch_size):
                X, valid = src.gather(starts[a:a + batch_size])
                out.append(encode_windows(model, X, valid)[0].float())
    finally:
        model.train(was)
    if not out:
        return torch.zeros((0, 2 * model.config.hidden_size), dtype=torch.float32, device=src.device)
    return torch.cat(out)


class BarIndex(NamedTuple):
    """Where each bar of a dataset's concatenated stores comes from: ``time [n] int64``, ``seg_start [G] int64``,
    ``seg_symbol [G]`` (index into ``symbols``), ``symbols``."""

    time: np.ndarray
    seg_start: np.ndarray
    seg_symbol: np.ndarray
    symbols: tuple

    def symbol_of(self, bars: np.ndarray) -> np.ndarray:
        return self.seg_symbol[np.searchsorted(self.seg_start, bars, side="right") - 1]


def bar_index(stores) -> BarIndex:
    """The :class:`BarIndex` of opened stores, concatenated in order (as WindowSource.from_stores lays them out)."""
    times, starts, names, at = [], [], [], 0
    for st in stores:
        times.append(st.timestamps())
        starts.append(st.segment_bounds()[:-1] + at)
        names += [g.name for g in st.segments]
        at += st.n_bars
    symbols = tuple(dict.fromkeys(names))
    seg_symbol = np.array([symbols.index(n) for n in names], dtype=np.int64)
    return BarIndex(np.concatenate(times), np.concatenate(starts), seg_symbol, symbols)


def run_source(run: LoadedRun, stores=None, src=None):
    """``(WindowSource, opened stores)`` of ``stores`` (paths; default the run's own) for ``run``, each store
    checked against the run's feature config; the source sits on the model's device.

    ``src``: the WindowSource of those stores already on the device (a training run's own, probed at its end):
    used as it is, and the stores are opened without hashing their shards again (the run checked them).
    """
    from gpu_features.errors import GpuFeaturesError
    from gpu_features.store import open_store
    from gpu_features.windows import WindowSource

    paths = stores or run.stores
    opened = [open_store(p, checksums=False) for p in paths] if src is not None else \
        [open_training_store(p) for p in paths]
    for st in opened:
        run.check_store(st)
    if src is not None:
        if src.n_bars != sum(st.n_bars for st in opened):
            raise TrainError(f"{', '.join(map(str, paths))} changed while the run trained on them; probe the run again "
                             "with `python -m train probe`.")
        return src, opened
    try:
        return WindowSource.from_stores(opened, next(run.model.parameters()).device, run.window_length), opened
    except GpuFeaturesError as err:
        raise TrainError(str(err)) from None


def split_starts(run: LoadedRun, src, split: str = "all", stride: int = 1, max_windows: int | None = None) -> np.ndarray:
    """``[w] int64`` usable window starts of ``split`` (``all``: every split), by the run's own window rule."""
    if split not in SPLIT_CHOICES:
        raise TrainError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}.")
    return src.starts(None if split == "all" else split, stride, run.config.min_valid_fraction, max_windows)


def embed_run(run: LoadedRun, stores=None, split: str = "all", stride: int = 1, batch_size: int = EMBED_BATCH,
              max_windows: int | None = None) -> Embeddings:
    """Embeddings of the usable windows of ``split`` of ``stores`` (default: the run's stores)."""
    src, opened = run_source(run, stores)
    starts = split_starts(run, src, split, stride, max_windows)
    emb = embed_starts(run.model, src, starts, batch_size)
    index = bar_index(opened)
    K = src.window_length
    return Embeddings(emb, starts, index.time[starts + K - 1], index.symbol_of(starts), index.symbols,
                      src.split_ids[starts].astype(np.int8), K)


# --- files ------------------------------------------------------------------------------------------------


def check_embeddings_output(path, overwrite: bool) -> Path:
    """The ``--output`` of ``embed``, refused before anything is computed: an unknown extension, a folder, a
    file that is not an embeddings file of ours (never replaced), one of ours without ``overwrite``, a path
    inside a feature store or dataset."""
    given, out = path, absolute(path)
    if out.suffix.lower() not in OUTPUT_KINDS:
        raise TrainError(f"--output {given}: the extension says the format; use .parquet or .safetensors.")
    if out.is_dir():
        raise TrainError(f"--output {given} is a folder; give a file name ending in .parquet or .safetensors.")
    check_parents(out, "--output", TrainError)
    check_outside_artifact(out, f"--output {given}", "write the embeddings elsewhere", TrainError)
    check_replaceable(out, given, is_embeddings_file, "an embeddings file of `python -m train embed`", overwrite,
                      TrainError)
    return out


def is_embeddings_file(path) -> bool:
    """True when ``path`` is a regular file whose metadata marks it as written by :func:`write_embeddings`."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
            return json.loads(meta.get(b"jade", b"{}")).get("format") == EMBED_FORMAT
        from gpu_features.store.format import read_safetensors_header

        return (read_safetensors_header(path, str(path)).get("__metadata__") or {}).get("format") == EMBED_FORMAT
    except Exception:  # any unreadable file is not ours
        return False


def write_embeddings(emb: Embeddings, path, overwrite: bool = False, about: dict | None = None) -> Path:
    """Write ``emb`` as parquet (``embedding`` a fixed-size list of float32, ``end_time`` a UTC timestamp,
    ``symbol``, ``split``, ``start``) or safetensors (``embedding``, ``end_time``, ``symbol``, ``split``,
    ``start``; the symbol names in the metadata), by the extension; through a temporary sibling and a rename.

    ``about``: what made them (run directory, stores), recorded in the file's metadata.
    """
    out = check_embeddings_output(path, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out.parent, "--output", TrainError)
    vectors = emb.embedding.detach().to("cpu").numpy().astype(np.float32, copy=False)  # the one host copy
    mark = {"format": EMBED_FORMAT, "window_length": emb.window_length, "dim": int(vectors.shape[1]),
            "pooling": "mean of last-layer BiLSTM states over valid bars", **(about or {})}
    tmp = temp_sibling(out, "tmp")
    try:
        if out.suffix.lower() == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            dim = vectors.shape[1]
            flat = pa.array(np.ascontiguousarray(vectors).reshape(-1), type=pa.float32())
            table = pa.table({
                "end_time": pa.array(emb.end_time, type=pa.timestamp("ns", tz="UTC")),
                "symbol": pa.DictionaryArray.from_arrays(pa.array(emb.symbol.astype(np.int32)),
                                                         pa.array(list(emb.symbols), type=pa.string())),
                "split": pa.DictionaryArray.from_arrays(pa.array(emb.split.astype(np.int32)),
                                                        pa.array(list(SPLIT_NAMES), type=pa.string())),
                "start": pa.array(emb.start, type=pa.int64()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            })
            table = table.replace_schema_metadata({b"jade": json.dumps(mark).encode()})
            pq.write_table(table, tmp)
        else:
            from safetensors.numpy import save_file

            save_file({"embedding": np.ascontiguousarray(vectors), "end_time": emb.end_time.astype(np.int64),
                       "symbol": emb.symbol.astype(np.int32), "split": emb.split.astype(np.int8),
                       "start": emb.start.astype(np.int64)}, str(tmp),
                      metadata={"format": EMBED_FORMAT, "symbols": json.dumps(list(emb.symbols)),
                                "splits": json.dumps(list(SPLIT_NAMES)), "about": json.dumps(mark)})
        fsync_file(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


__all__ = ["EMBED_FORMAT", "BarIndex", "Embeddings", "bar_index", "check_embeddings_output", "embed_run",
           "embed_starts", "encode_windows", "is_embeddings_file", "pool", "run_source", "split_starts",
           "write_embeddings"]
