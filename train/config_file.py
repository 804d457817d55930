"""Run files for ``python -m train --config FILE``: TOML, JSON, or YAML when PyYAML is installed.

A file holds any :class:`~train.config.TrainConfig` field plus the run keys
``store`` (a path or a list of paths), ``run_dir`` and ``tensorboard``; flags on
the command line override it, and an unknown key is refused (one sentence
naming it and the allowed keys). Files are parsed as data, never executed.
The run directory receives ``config.json``, the resolved run in this format,
so ``--config RUN_DIR/config.json`` starts the same run again.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from gpu_features.fileio import MAX_CONFIG_BYTES, read_json_file

from .config import TrainConfig, TrainError

RUN_KEYS = ("store", "run_dir", "tensorboard", "probe")
RESOLVED = "config.json"
DEFAULT_STORE = "data/features/demo"  # the store a run file or the command line that names none trains on


def allowed_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)] + list(RUN_KEYS)


def _parse(path: Path, what: str) -> object:
    """The file's data: JSON through the one guarded reader (size, UTF-8, nesting), TOML and YAML with the
    same limits, every failure one sentence naming the file (``what`` it should be: a run file, a sweep file)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json_file(path, what, "fix the file.", TrainError, MAX_CONFIG_BYTES,
                              label=f"--config {path}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise TrainError(f"--config {path}: {size:,} bytes is far too large for {what} (at most "
                         f"{MAX_CONFIG_BYTES:,}); fix the file.")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise TrainError(f"--config {path}: not UTF-8 text (byte {err.start}), so it is not {what}; fix the "
                         "file.") from None
    except OSError as err:
        raise TrainError(f"--config {path}: cannot be read ({err.strerror or err}); fix the file.") from None
    try:
        return _parse_text(path, text, suffix, what)
    except RecursionError:
        raise TrainError(f"--config {path}: nested too deeply to be {what} (corrupt or crafted); fix the "
                         "file.") from None


def _parse_text(path: Path, text: str, suffix: str, what: str) -> object:
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise TrainError(f"{path}: reading TOML on Python 3.10 needs tomli (pip install tomli); "
                                 "or write the file as JSON.") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise TrainError(f"{path}: not valid TOML ({err}); fix the file.") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise TrainError(f"{path}: YAML {what.removeprefix('a ')}s need PyYAML, which is not installed (pip "
                             "install pyyaml); or write the file as TOML or JSON.") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise TrainError(f"{path}: not valid YAML ({err}); fix the file.") from None
    raise TrainError(f"{path}: unknown {what.removeprefix('a ')} type {suffix or '(none)'!r}; use .toml, .json, .yaml "
                     "or .yml.")


def read_table(path, what: str = "a run file") -> dict:
    """The top-level table of a TOML, JSON or YAML file (run files, sweep files), parsed as data.

    Raises:
        TrainError: missing or unparsable file, or not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"--config {path}: " + (f"not a regular file; give {what} (.toml, .json, .yaml)."
                                                 if path.exists() else "no such file."))
    data = _parse(path, what)
    if not isinstance(data, dict):
        raise TrainError(f"{path}: {what} holds a table of settings (key = value), got {type(data).__name__}.")
    return data


def load_run_file(path) -> dict:
    """The keys of a run file, checked: a table of known keys; ``store`` becomes a list of paths.

    Raises:
        TrainError: missing or unparsable file, not a table, unknown keys, a bad ``store``.
    """
    return check_run_table(read_table(path), path)


def check_run_table(data: dict, where) -> dict:
    """A run file's table checked (the keys of :func:`load_run_file`); ``where`` names it in messages."""
    unknown = sorted(set(data) - set(allowed_keys()))
    if unknown:
        raise TrainError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(allowed_keys())}.")
    out = dict(data)
    if "store" in out:
        stores = out["store"] if isinstance(out["store"], list) else [out["store"]]
        if not stores or not all(isinstance(s, str) and s for s in stores):
            raise TrainError(f"{where}: store must be a path or a list of paths, got {out['store']!r}.")
        out["store"] = stores
    if "probe" in out:  # downstream probe targets (train.targets), checked where the run starts
        targets = out["probe"] if isinstance(out["probe"], list) else [out["probe"]]
        if not all(isinstance(t, str) and t for t in targets):
            raise TrainError(f"{where}: probe must be a target or a list of them (e.g. ['return-sign:5']), got "
                             f"{out['probe']!r}.")
        out["probe"] = targets
    for key, kind in (("run_dir", str), ("tensorboard", bool)):
        if key in out and not isinstance(out[key], kind):
            raise TrainError(f"{where}: {key} must be {kind.__name__}, got {out[key]!r}.")
    return out


def resolved(cfg: TrainConfig, stores, tensorboard: bool = False, probe=()) -> dict:
    """The run as a run file: every TrainConfig field plus the stores and the probe targets (``config.json``)."""
    return {**cfg.to_dict(), "store": [str(s) for s in stores], "tensorboard": bool(tensorboard),
            "probe": list(probe)}


__all__ = ["DEFAULT_STORE", "RESOLVED", "RUN_KEYS", "allowed_keys", "check_run_table", "load_run_file", "read_table",
           "resolved"]
