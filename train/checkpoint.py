"""Resumable checkpoints: safetensors for tensors, JSON for everything else, no pickle.

A run directory holds ``checkpoint-eNNNN.safetensors`` (model weights
``model.*``, best-so-far weights ``best.*``, AdamW moments ``optim.<param>.<key>``)
and ``checkpoint.json``, the commit point: it names the tensor file and its
SHA-256 and holds the run state (epoch, step = schedule position, early-stopping
counters, metric history, configs, optimizer hyper-parameters). The tensor file
is written under a temporary name and renamed, then the JSON likewise, and
only then is the previous tensor file removed, so an interruption at any
moment leaves the last complete checkpoint readable.

Randomness needs no saved generator state: shuffling, masks and dropout are
re-seeded from ``(seed, epoch)`` at every epoch, and a run resumes at an epoch
boundary.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from gpu_features.fileio import (MAX_JSON_BYTES, fsync_file, read_json_file, sha256_file, temp_sibling,
                                 write_json_atomic)

from .config import TrainError

CHECKPOINT_JSON = "checkpoint.json"
FORMAT, VERSION = "jade-checkpoint", 1


def save_tensors_atomic(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """safetensors file through a temporary sibling and a rename; tensors are copied to contiguous CPU memory."""
    from safetensors.torch import save_file

    tmp = temp_sibling(path, "tmp")
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer's state into tensors (``optim.<param>.<key>``) and JSON (hyper-parameters, scalars)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{i}.{k}"] = v
            else:
                scalars.setdefault(str(i), {})[k] = v
    # A learning rate held as a device tensor (CUDA graphs, train.step) is saved as its number.
    groups = [{k: (float(v) if torch.is_tensor(v) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    for i, d in meta["scalars"].items():
        state.setdefault(int(i), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run_dir: Path, state: dict, tensors: dict) -> Path:
    """Commit one checkpoint; returns the tensor file. ``state`` must be JSON-serializable and hold ``epoch``."""
    run_dir = Path(run_dir)
    name = f"checkpoint-e{int(state['epoch']):04d}.safetensors"
    path = run_dir / name
    save_tensors_atomic(path, tensors, {"format": FORMAT, "version": str(VERSION)})
    # The state of a resumed run still holds the record keys it was read with: the new ones must win.
    record = {**state, "format": FORMAT, "version": VERSION, "tensors_file": name, "sha256": sha256_file(path)}
    write_json_atomic(run_dir / CHECKPOINT_JSON, record)
    for old in run_dir.glob("checkpoint-e*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def read_checkpoint_record(run_dir: Path) -> dict:
    """The run state of ``run_dir/checkpoint.json``, checked for format and version (tensors not loaded).

    Raises:
        TrainError: no checkpoint, or a foreign or damaged record.
    """
    from .rundir import check_resume

    run_dir = Path(run_dir)
    jpath = run_dir / CHECKPOINT_JSON
    check_resume(run_dir)  # no checkpoint: says why (a run stopped in its first epoch, no run) and what to do
    state = read_json_file(jpath, "a checkpoint record", "the checkpoint is damaged, start a new run (--overwrite).",
                           TrainError, MAX_JSON_BYTES)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise TrainError(f"{jpath}: not a {FORMAT} version {VERSION} checkpoint; start a new run.")
    tensors_file = state.get("tensors_file")
    if not isinstance(tensors_file, str) or Path(tensors_file).name != tensors_file or tensors_file in ("", ".", ".."):
        raise TrainError(f"{jpath}: its tensor file must be a file name inside the run directory, got "
                         f"{tensors_file!r}; the checkpoint is damaged, start a new run (--overwrite).")
    return state


def load_checkpoint(run_dir: Path, device="cpu") -> tuple[dict, dict]:
    """Read and check a run's checkpoint; returns ``(state, tensors)``.

    Raises:
        TrainError: no checkpoint, a foreign or damaged one, or a tensor file that does not match its record.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    state = read_checkpoint_record(run_dir)
    jpath = run_dir / CHECKPOINT_JSON
    path = run_dir / state["tensors_file"]
    if not path.is_file():
        raise TrainError(f"{jpath} names {path.name}, which is missing; the checkpoint is damaged, start a new run.")
    if sha256_file(path) != state["sha256"]:
        raise TrainError(f"{path}: SHA-256 differs from {CHECKPOINT_JSON} (damaged or replaced); start a new run.")
    return state, load_file(str(path), device=str(device))
