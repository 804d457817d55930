"""A finished run back as a model: ``load_run(run_dir)`` and ``jade_from_file(path)``.

A run's model files carry what is needed to rebuild Jade in their safetensors header
(``jade_config``, ``train_config``, ``feature_config``, ``feature_names``); ``summary.json``
records the SHA-256 of both files, so a file that was damaged or replaced after the run is
refused instead of loaded. The store a run is applied to must have the feature config the
run was trained on: the same windows of other features would give embeddings of nothing.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gpu_features.config import FEATURE_NAMES, FeatureConfig
from gpu_features.errors import GpuFeaturesError
from gpu_features.errors import StoreError
from gpu_features.fileio import MAX_JSON_BYTES, read_json_file, sha256_file
from gpu_features.store import MANIFEST, is_dataset, open_store
from gpu_features.store.format import read_safetensors_header

from .config import TrainConfig, TrainError
from .jade import Jade, JadeConfig

MODEL, ENCODER, SUMMARY = "model.safetensors", "encoder.safetensors", "summary.json"  # written by train.loop
PROBE_JSON, PROBE_PNG = "probe.json", "probe.png"  # written by train.probe
FILE_HASHES = "files_sha256"  # summary.json: {file name: SHA-256} of the model files


@dataclasses.dataclass
class LoadedRun:
    """A trained Jade and what it was trained with.

    Attributes:
        model: the Jade (eval mode) on the device asked for; the decoder is the trained one when
            ``model.safetensors`` was loaded, Xavier-initialised when only the encoder was.
        config: the run's :class:`TrainConfig`.
        feature_config: the feature config of the stores it was trained on.
        window_length: K of its training windows.
        summary: ``summary.json`` as written at the end of the run.
        run_dir: where it was loaded from.
    """

    model: Jade
    config: TrainConfig
    feature_config: FeatureConfig
    window_length: int
    summary: dict
    run_dir: Path

    @property
    def stores(self) -> list[str]:
        """The stores the run was trained on, as recorded."""
        return list(self.summary.get("stores") or [self.summary["store"]])

    def check_store(self, store) -> None:
        """Refuse a store (an opened :class:`gpu_features.store.Store`) built with other feature settings."""
        if store.config != self.feature_config:
            a, b = self.feature_config.to_dict(), store.config.to_dict()
            diff = ", ".join(f"{k} {b[k]!r} (run: {a[k]!r})" for k in a if a[k] != b[k])
            want = ", ".join(f"{k} = {a[k]!r}" for k in a if a[k] != b[k])
            raise TrainError(f"{store.path}: built with other feature settings than the stores {self.run_dir} was "
                             f"trained on ({diff}); embed or probe a store built with the run's settings "
                             f"(gpu-features precompute with {want}).")


def open_training_store(path):
    """Open a store (or dataset) to train on or apply a run to, or refuse in one sentence how the trainer does."""
    path = Path(path)
    if not ((path / MANIFEST).is_file() or is_dataset(path)):  # a dataset of part stores is one store
        raise TrainError(f"{path}: no feature store there; build the demo store with `make precompute` "
                         f"(or `gpu-features precompute --output {path}`).")
    try:
        return open_store(path)
    except StoreError as err:
        raise TrainError(f"cannot train on {path}: {err}") from None


def _header(path: Path) -> dict:
    """The safetensors metadata of ``path`` (header checked by the store's own reader), or a refusal naming it."""
    try:
        return read_safetensors_header(path, str(path)).get("__metadata__") or {}
    except (StoreError, OSError) as err:
        why = str(err).split("; ")[0].removeprefix(f"{path}: ")
        raise TrainError(f"{path}: not a readable safetensors file ({why}); the run is damaged, train it "
                         "again.") from None


def _json_field(meta: dict, key: str, path: Path):
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError):
        raise TrainError(f"{path}: its header holds no valid {key!r} (not a Jade model file of this version); "
                         "give a run's model.safetensors or encoder.safetensors.") from None


def jade_from_file(path, device="cpu") -> Jade:
    """Jade rebuilt from ``model.safetensors`` (everything) or ``encoder.safetensors`` (mask vector and LSTM).

    Raises:
        TrainError: not a Jade file, or tensors that do not fit the architecture its header names.
    """
    return _read_model(Path(path), device)[0]


def _read_model(path: Path, device) -> tuple[Jade, dict]:
    """:func:`jade_from_file` and the file's header metadata."""
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        raise TrainError(f"{path}: no such file; give a run's model.safetensors or encoder.safetensors.")
    meta = _header(path)
    if meta.get("format") != "jade":
        raise TrainError(f"{path}: not a Jade model file (its header says format {meta.get('format')!r}); give a "
                         "run's model.safetensors or encoder.safetensors.")
    try:
        cfg = JadeConfig.from_dict(_json_field(meta, "jade_config", path))
    except GpuFeaturesError as err:
        raise TrainError(f"{path}: its jade_config is not valid ({err}); the file is damaged.") from None
    tensors = load_file(str(path), device="cpu")
    model = Jade(cfg)
    if "mask_vector" in tensors and any(k.startswith("lstm.") for k in tensors):  # encoder.safetensors
        state = {"mask_vector": tensors.pop("mask_vector")}
        state.update({f"encoder.{k[5:]}": v for k, v in tensors.items() if k.startswith("lstm.")})
        strict = False
    else:
        state, strict = tensors, True
    want = model.state_dict()
    wrong = [k for k, v in state.items() if k not in want or tuple(want[k].shape) != tuple(v.shape)]
    missing = [k for k in want if k not in state and (strict or k.startswith(("encoder.", "mask_vector")))]
    if wrong or missing:
        raise TrainError(f"{path}: its tensors do not fit the Jade its header describes ("
                         + ", ".join([f"unexpected or misshapen {k}" for k in wrong[:3]]
                                     + [f"missing {k}" for k in missing[:3]]) + "); the file is damaged.")
    with torch.no_grad():
        model.load_state_dict(state, strict=strict)
    return model.to(device).eval(), meta


def load_run(run_dir, device="cpu", encoder_only: bool = False) -> LoadedRun:
    """Load a finished run: its model (``model.safetensors``, or the encoder alone) and its settings.

    Args:
        run_dir: a run directory written by ``python -m train``.
        device: where the model goes (``"cpu"``, ``"cuda"``, a torch.device; ``"auto"``: CUDA if present).
        encoder_only: load ``encoder.safetensors`` (the decoder then stays initialised).

    Raises:
        TrainError: no finished run there, a missing model file, or one whose SHA-256 differs from the
            one the run recorded (damaged or replaced).
    """
    from gpu_features.windows import resolve_device

    run_dir = Path(run_dir)
    spath = run_dir / SUMMARY
    if not run_dir.is_dir():
        raise TrainError(f"{run_dir}: no such run directory; train one with `python -m train --run-dir {run_dir}`.")
    if not spath.is_file():
        raise TrainError(f"{run_dir}: holds no {SUMMARY}, so it is not a finished run (still training, stopped, or "
                         f"not a run); finish it with `python -m train --resume --run-dir {run_dir}`.")
    summary = read_json_file(spath, "a run summary", "the run is damaged; train it again.", TrainError, MAX_JSON_BYTES)
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise TrainError(f"{spath}: not a run summary (no config); the run is damaged, train it again.")
    name = ENCODER if encoder_only else MODEL
    path = run_dir / name
    if not path.is_file():
        raise TrainError(f"{run_dir}: {name} is missing; the run is damaged or incomplete, train it again.")
    want = (summary.get(FILE_HASHES) or {}).get(name)
    if want is not None and sha256_file(path) != want:
        raise TrainError(f"{path}: SHA-256 differs from the one {SUMMARY} records (damaged or replaced after the "
                         "run); train the run again.")
    model, meta = _read_model(path, resolve_device(device))
    try:
        config = TrainConfig.from_dict(summary["config"])
        features = FeatureConfig.from_dict(_json_field(meta, "feature_config", path))
    except GpuFeaturesError as err:
        raise TrainError(f"{run_dir}: its recorded settings are not valid ({err}); the run is damaged.") from None
    names = _json_field(meta, "feature_names", path)
    if list(names) != list(FEATURE_NAMES) or model.config.n_features != len(FEATURE_NAMES):
        raise TrainError(f"{path}: trained on features {names}, this version computes {list(FEATURE_NAMES)}; "
                         "train the run again on a store of this version.")
    K = int(summary.get("window_length") or config.window_length or features.window_length)
    return LoadedRun(model, config, features, K, summary, run_dir)


__all__ = ["ENCODER", "FILE_HASHES", "LoadedRun", "MODEL", "PROBE_JSON", "PROBE_PNG", "SUMMARY", "jade_from_file", "load_run", "open_training_store"]
