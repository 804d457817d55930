"""Sweep files: the base run, the search space and the study, checked and resolved into one record.

A sweep file (TOML, JSON, or YAML with PyYAML; parsed as data, never executed)
has three tables::

    [run]                       # the base run: any key of a run file (python -m train --config)
    store = "data/features/demo"
    epochs = 4

    [search]                    # one entry per searched TrainConfig field
    lr = [1e-3, 3e-3]                           # values: a grid axis (choices for random/tpe)
    dropout = { low = 0.0, high = 0.3, step = 0.1 }   # a range; a grid takes every step
    weight_decay = { low = 1e-4, high = 1e-1, log = true }   # random/tpe only
    mask = { choices = ["random", "patch"] }

    [study]
    sampler = "grid"            # grid (default) | random | tpe
    trials = 4                  # grid: at most its size (default all); random/tpe: required
    objective = "val_mae"       # or "probe:TARGET:ARM:METRIC", e.g. "probe:return-sign:5:pretrained:auc"
    direction = "minimize"      # default: the objective's own
    pruner = "median"           # none (default) | median | hyperband, or a table (see PRUNER_KEYS)
    seed = 0                    # the random/tpe sampler's seed
    name = "lr-dropout"         # study name in the storage [the study folder's name]

Everything is refused in one sentence when unknown, of the wrong type, out of
range, or impossible (an empty list, a range with low >= high, a log range
reaching 0, a grid with an unbounded range, more trials than grid points, a
value the trainer would refuse, a field both fixed in [run] and searched).
:meth:`SweepSpec.record` is the resolved sweep as JSON (``DIR/sweep.json``):
re-running a sweep must resolve to the same record.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

from gpu_features.config import field_type
from gpu_features.errors import GpuFeaturesError

from .config import PROFILES, TrainConfig, TrainError, auto_profile, make_config
from .config_file import DEFAULT_STORE, allowed_keys, check_run_table, read_table

FORMAT, VERSION = "gpu-features-sweep", 1
TABLES = ("run", "search", "study")
STUDY_KEYS = ("sampler", "trials", "objective", "direction", "pruner", "seed", "name")
SAMPLERS = ("grid", "random", "tpe")
PRUNER_KEYS = {"none": (), "median": ("startup_trials", "warmup_epochs"),
               "hyperband": ("min_epochs", "reduction_factor")}
PRUNER_DEFAULTS = {"startup_trials": 5, "warmup_epochs": 0, "min_epochs": 1, "reduction_factor": 3}
RANGE_KEYS = ("low", "high", "log", "step")
NOT_SEARCHED = ("device", "profile")  # the sweep places trials on devices; the profile picks defaults
MAX_GRID = 10_000  # every grid point is a queued trial in the study; beyond this, sample instead

# Downstream probe (train.probe): summary["probe"][TARGET][SPLIT][ARM][METRIC] = {"value", "low", "high"}, SPLIT
# "validation" or "test". A sweep ranks by the validation numbers: choosing settings by test scores would make
# the test split part of the training, so its numbers are shown beside them, never used to rank.
PROBE_ARMS = ("baseline", "raw", "random", "pretrained", "finetuned")
PROBE_METRICS = {"auc": "maximize", "accuracy": "maximize", "r2": "maximize", "log_loss": "minimize",
                 "qlike": "minimize"}
DIRECTIONS = ("minimize", "maximize")


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a trial is ranked by: ``val_mae`` (final validation masked MAE of the best weights, from
    ``summary.json``) or a probe metric ``probe:TARGET:ARM:METRIC``."""

    name: str
    direction: str
    target: str | None = None
    arm: str | None = None
    metric: str | None = None

    @property
    def is_probe(self) -> bool:
        return self.target is not None

    def entry(self, summary: dict, where) -> Any:
        """The summary's entry for this objective (a number for val_mae; {value, low, high} for a probe)."""
        if not self.is_probe:
            try:
                return float(summary["val"]["mae"]["model"])
            except (KeyError, TypeError, ValueError):
                raise TrainError(f"{where}: no val.mae.model in the run's summary; the run did not finish.") from None
        return self.probe_entry(summary, where, "validation")

    def probe_entry(self, summary: dict, where, split: str) -> dict:
        """``{"value", "low", "high"}`` of this probe objective on ``split`` (``validation`` or ``test``)."""
        try:
            entry = summary["probe"][self.target][split][self.arm][self.metric]
            float(entry["value"])
        except (KeyError, TypeError, ValueError):
            raise TrainError(f"{where}: the run's summary has no probe result {self.target} / {split} / {self.arm} / "
                             f"{self.metric} (summary['probe'][target][split][arm][metric]['value']); the trial must "
                             f"run with probe = [{self.target!r}].") from None
        return entry

    def test_value(self, summary: dict, where="summary.json") -> float | None:
        """The probe metric on the test split (shown beside the validation value a sweep ranks by)."""
        return float(self.probe_entry(summary, where, "test")["value"]) if self.is_probe else None

    def value(self, summary: dict, where="summary.json") -> float:
        entry = self.entry(summary, where)
        return float(entry["value"]) if self.is_probe else entry

    def interval(self, summary: dict, where="summary.json") -> tuple[float | None, float | None]:
        """The probe's (low, high) interval; (None, None) for val_mae."""
        if not self.is_probe:
            return None, None
        entry = self.entry(summary, where)
        return tuple(float(entry[k]) if entry.get(k) is not None else None for k in ("low", "high"))


def parse_objective(text, direction=None, where: str = "") -> Objective:
    """``val_mae`` or ``probe:TARGET:ARM:METRIC`` (TARGET may hold colons, e.g. ``return-sign:5``).

    ``where`` (e.g. the sweep file) begins every message.

    Raises:
        TrainError: an unknown objective, arm or metric, or a direction that contradicts the metric.
    """
    at = f"{where}: " if where else ""
    if not isinstance(text, str):
        raise TrainError(f"{at}study.objective must be a string (val_mae or probe:TARGET:ARM:METRIC), got {text!r}.")
    said = f"{at}study.objective = {text!r}"
    if text == "val_mae":
        natural, parts = "minimize", None
    elif text.startswith("probe:") and text.count(":") >= 3:
        target, arm, metric = text[len("probe:"):].rsplit(":", 2)
        if not target or any(c.isspace() for c in target):
            raise TrainError(f"{said}: the probe target is empty or holds spaces; write probe:TARGET:ARM:METRIC, "
                             "e.g. probe:return-sign:5:pretrained:auc.")
        if arm not in PROBE_ARMS:
            raise TrainError(f"{said}: unknown probe arm {arm!r}; choose one of {', '.join(PROBE_ARMS)}.")
        if metric not in PROBE_METRICS:
            raise TrainError(f"{said}: unknown probe metric {metric!r}; choose one of {', '.join(PROBE_METRICS)}.")
        natural, parts = PROBE_METRICS[metric], (target, arm, metric)
    else:
        raise TrainError(f"{said} is not an objective; use val_mae or probe:TARGET:ARM:METRIC "
                         "(e.g. probe:return-sign:5:pretrained:auc).")
    if direction is None:
        direction = natural
    if direction not in DIRECTIONS:
        raise TrainError(f"{at}study.direction must be minimize or maximize, got {direction!r}.")
    if direction != natural:
        better = "lower" if natural == "minimize" else "higher"
        raise TrainError(f"{at}study.direction {direction} contradicts objective {text} ({better} is better); drop "
                         f"direction or set it to {natural}.")
    if parts is not None:
        from .heads import CLASSIFICATION
        from .targets import parse_target

        try:
            target = parse_target(parts[0])
        except TrainError as err:
            raise TrainError(f"{said}: {err}") from None
        if (parts[2] in CLASSIFICATION) != target.is_classification:
            fits = "auc, log_loss or accuracy" if target.is_classification else "r2 or qlike"
            raise TrainError(f"{said}: {target.kind} is measured by {fits}, not {parts[2]}.")
    return Objective(text, direction, *(parts or ()))


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched TrainConfig field: listed values, or a range (low, high, log scale, step)."""

    name: str
    kind: type                      # the field's type: int, float, bool or str
    values: tuple | None = None
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None

    @property
    def is_range(self) -> bool:
        return self.values is None

    def grid_values(self) -> list:
        """Every value a grid visits (values as listed; a stepped linear range from low to high)."""
        if not self.is_range:
            return list(self.values)
        n = int(round((self.high - self.low) / self.step))
        return [self.kind(self.low + i * self.step) if self.kind is int else round(self.low + i * self.step, 12)
                for i in range(n + 1)]

    def distribution(self):
        """The Optuna distribution of this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if not self.is_range:
            return CategoricalDistribution(list(self.values))
        if self.kind is int:
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def record(self) -> Any:
        if not self.is_range:
            return list(self.values)
        out = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A resolved sweep. ``run``: the base run file (profile resolved, stores absolute)."""

    run: dict
    search: tuple[Param, ...]
    sampler: str
    trials: int
    objective: Objective
    pruner: dict | None
    seed: int
    name: str | None

    def trial_run(self, params: dict) -> dict:
        """The run file of one trial: the base run with the trial's parameters (and its probe)."""
        run = {**self.run, **params}
        if self.objective.is_probe:
            run["probe"] = sorted(set(run.get("probe", [])) | {self.objective.target})
        return run

    def trial_config(self, params: dict) -> TrainConfig:
        """The TrainConfig of one trial, resolved as ``python -m train --config`` resolves a run file."""
        fields = {k: v for k, v in self.trial_run(params).items() if k in _config_fields() and k != "profile"}
        return make_config(self.run["profile"], **fields)

    def grid(self) -> list[dict]:
        """The grid's points in file order (the last parameter varies fastest), at most ``trials`` of them."""
        names = [p.name for p in self.search]
        points = [dict(zip(names, combo)) for combo in itertools.product(*(p.grid_values() for p in self.search))]
        return points[:self.trials]

    def distributions(self) -> dict:
        return {p.name: p.distribution() for p in self.search}

    def max_epochs(self) -> int:
        """The most epochs a trial can run (the Hyperband pruner's largest budget)."""
        for p in self.search:
            if p.name == "epochs":
                return max(p.grid_values()) if not p.is_range or p.step is not None else p.high
        return self.trial_config({}).epochs

    @property
    def stores(self) -> list[str]:
        return list(self.run["store"])

    def record(self) -> dict:
        """The sweep as JSON (``DIR/sweep.json``); two commands that resolve to the same record run one sweep."""
        return {"format": FORMAT, "version": VERSION, "name": self.name, "run": self.run,
                "search": {p.name: p.record() for p in self.search}, "sampler": self.sampler, "trials": self.trials,
                "objective": self.objective.name, "direction": self.objective.direction, "pruner": self.pruner,
                "seed": self.seed}

    @classmethod
    def from_record(cls, record: dict, where) -> "SweepSpec":
        """Rebuild (and re-check) a sweep from its record."""
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
            raise TrainError(f"{where}: not a {FORMAT} version {VERSION} record; this folder holds something else.")
        study = {k: record.get(k) for k in STUDY_KEYS}
        study["pruner"] = study["pruner"] or "none"
        return from_tables(record.get("run") or {}, record.get("search") or {}, study, where, resolved=True)


def _config_fields() -> dict:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _resolve_profile(run: dict, where) -> str:
    """The profile whose defaults fill the trials: the run's, else by device, as ``python -m train`` picks it
    (:func:`train.config.auto_profile`)."""
    profile = run.get("profile")
    if profile is not None:
        if profile not in PROFILES:
            raise TrainError(f"{where}: profile must be one of {', '.join(PROFILES)}, got {profile!r}.")
        return profile
    try:
        return auto_profile(run.get("device", "auto"))
    except TrainError as err:
        raise TrainError(f"{where}: {err}") from None


def _number(value, kind: type, what: str):
    """``value`` as a number of the field's kind (an int is taken for a float; bool never is a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TrainError(f"{what} must be {'an integer' if kind is int else 'a number'}, got {value!r}.")
    if not math.isfinite(value):
        raise TrainError(f"{what} must be finite, got {value!r}.")
    return kind(value)


def _param(name: str, spec, run: dict, where) -> Param:
    fields = _config_fields()
    what = f"{where}: search.{name}"
    if name not in fields or name in NOT_SEARCHED:
        searchable = [f for f in fields if f not in NOT_SEARCHED]
        raise TrainError(f"{what} is not a searchable setting; search any of {', '.join(searchable)}.")
    if name in run:
        raise TrainError(f"{what} is also fixed in [run] ({name} = {run[name]!r}); keep it in one place.")
    kind, _ = field_type(fields[name])
    if isinstance(spec, dict) and set(spec) == {"choices"}:
        spec = spec["choices"]
    if isinstance(spec, list):
        if not spec:
            raise TrainError(f"{what} is an empty list; give at least one value.")
        values = []
        for v in spec:
            v = _number(v, kind, f"{what} value {v!r}") if kind in (int, float) else v
            if kind in (bool, str) and not isinstance(v, kind):
                raise TrainError(f"{what} values must be {kind.__name__}, got {v!r}.")
            if v in values:
                raise TrainError(f"{what} lists {v!r} twice; a grid point would run twice.")
            values.append(v)
        return Param(name, kind, values=tuple(values))
    if not isinstance(spec, dict):
        raise TrainError(f"{what} must be a list of values, {{choices = [...]}} or a range {{low, high, log, step}}, "
                         f"got {spec!r}.")
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown:
        raise TrainError(f"{what}: unknown range key(s) {', '.join(unknown)}; a range has low, high and optionally "
                         "log and step (or write choices = [...]).")
    if kind not in (int, float):
        raise TrainError(f"{what}: {name} is a {kind.__name__} setting, so it takes a list of values, not a range.")
    if "low" not in spec or "high" not in spec:
        raise TrainError(f"{what}: a range needs both low and high.")
    low, high = (_number(spec[k], kind, f"{what}.{k}") for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise TrainError(f"{what}.log must be true or false, got {log!r}.")
    step = None if spec.get("step") is None else _number(spec["step"], kind, f"{what}.step")
    if not low < high:
        raise TrainError(f"{what}: low {low!r} must be below high {high!r}.")
    if log and low <= 0:
        raise TrainError(f"{what}: a log range needs low > 0, got {low!r}.")
    if step is not None:
        if log:
            raise TrainError(f"{what}: a range is either log or stepped, not both; drop log or step.")
        if step <= 0:
            raise TrainError(f"{what}.step must be > 0, got {step!r}.")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9:
            raise TrainError(f"{what}: high - low = {high - low!r} is not a multiple of step {step!r}; adjust high.")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def _check_values(spec_run: dict, profile: str, params: tuple[Param, ...], where) -> None:
    """Refuse values the trainer would refuse: each listed value and each range end, on the base run."""
    base = {k: v for k, v in spec_run.items() if k in _config_fields() and k != "profile"}
    try:
        make_config(profile, **base)
    except GpuFeaturesError as err:  # TrainConfig's and JadeConfig's refusals
        raise TrainError(f"{where}: [run] is not a valid run ({err})") from None
    for p in params:
        for v in (p.grid_values() if not p.is_range or p.step is not None else (p.low, p.high)):
            try:
                make_config(profile, **{**base, p.name: v})
            except GpuFeaturesError as err:  # TrainConfig's and JadeConfig's refusals
                raise TrainError(f"{where}: search.{p.name} value {v!r} is not a valid run ({err})") from None


def _pruner(spec, objective: Objective, where) -> dict | None:
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict) or spec.get("kind") not in PRUNER_KEYS:
        raise TrainError(f"{where}: study.pruner must be one of {', '.join(PRUNER_KEYS)} or a table with kind = one "
                         f"of them, got {spec!r}.")
    kind = spec["kind"]
    if kind == "none":
        return None
    allowed = PRUNER_KEYS[kind]
    unknown = sorted(set(spec) - {"kind", *allowed})
    if unknown:
        raise TrainError(f"{where}: study.pruner: unknown key(s) {', '.join(unknown)}; the {kind} pruner takes "
                         f"{', '.join(allowed)}.")
    if objective.is_probe:
        raise TrainError(f"{where}: study.pruner compares each epoch's val_mae, so it needs objective = val_mae "
                         f"(not {objective.name}); drop the pruner.")
    out = {"kind": kind}
    for key in allowed:
        value = spec.get(key, PRUNER_DEFAULTS[key])
        least = 2 if key == "reduction_factor" else (1 if key == "min_epochs" else 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise TrainError(f"{where}: study.pruner.{key} must be an integer >= {least}, got {value!r}.")
        out[key] = value
    return out


def from_tables(run: dict, search: dict, study: dict, where, resolved: bool = False) -> SweepSpec:
    """A checked :class:`SweepSpec` from the three tables (``resolved``: read back from ``sweep.json``)."""
    for table, value in (("run", run), ("search", search), ("study", study)):
        if not isinstance(value, dict):
            raise TrainError(f"{where}: [{table}] must be a table, got {value!r}.")
    unknown = sorted(set(study) - set(STUDY_KEYS))
    if unknown:
        raise TrainError(f"{where}: unknown key(s) in [study]: {', '.join(unknown)}; allowed keys are "
                         f"{', '.join(STUDY_KEYS)}.")
    if "run_dir" in run:
        raise TrainError(f"{where}: [run] sets run_dir, but every trial runs in the study folder's trial-NNNN; "
                         "drop it.")
    run = check_run_table(run, f"{where} [run]")
    run["store"] = [str(Path(s).resolve()) for s in run.get("store", [DEFAULT_STORE])]
    run["profile"] = _resolve_profile(run, where)
    if not search:
        raise TrainError(f"{where}: [search] is empty; name at least one setting to search, e.g. lr = [1e-3, 3e-3].")
    params = tuple(_param(name, spec, run, where) for name, spec in search.items())
    objective = parse_objective(study.get("objective", "val_mae"), study.get("direction"), str(where))
    sampler = study.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise TrainError(f"{where}: study.sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}.")
    trials = study.get("trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise TrainError(f"{where}: study.trials must be an integer >= 1, got {trials!r}.")
    if sampler == "grid":
        unbounded = [p.name for p in params if p.is_range and (p.step is None or p.log)]
        if unbounded:
            raise TrainError(f"{where}: a grid needs finite values, but search.{unbounded[0]} is a range without a "
                             "step; list its values, give it a step, or use sampler = \"random\" or \"tpe\".")
        size = math.prod(len(p.grid_values()) for p in params)
        if size > MAX_GRID:
            raise TrainError(f"{where}: the grid has {size:,} points, more than the {MAX_GRID:,} a study queues; "
                             "search fewer values or use sampler = \"random\" or \"tpe\" with a number of trials.")
        if trials is not None and trials > size:
            raise TrainError(f"{where}: study.trials = {trials} but the grid has {size} point(s) and none is run "
                             "twice; lower trials or widen the grid.")
        trials = trials or size
    elif trials is None:
        raise TrainError(f"{where}: study.trials is needed with sampler = {sampler!r} (how many trials to draw).")
    seed = study.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TrainError(f"{where}: study.seed must be an integer >= 0, got {seed!r}.")
    name = study.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise TrainError(f"{where}: study.name must be a non-empty string, got {name!r}.")
    pruner = _pruner(study.get("pruner", "none"), objective, where)
    spec = SweepSpec(run, params, sampler, trials, objective, pruner, seed, name)
    if not resolved:
        _check_values(run, run["profile"], params, where)
        if sampler == "grid":
            for point in spec.grid():
                try:
                    spec.trial_config(point)
                except GpuFeaturesError as err:  # TrainConfig's and JadeConfig's refusals
                    raise TrainError(f"{where}: the grid point {point} is not a valid run ({err})") from None
    return spec


def load_sweep_file(path, overrides: dict | None = None, study_overrides: dict | None = None) -> SweepSpec:
    """Read and check a sweep file; ``overrides`` (training flags) replace [run] keys, ``study_overrides`` [study] keys.

    Raises:
        TrainError: anything unknown, mistyped, out of range or impossible (one sentence).
    """
    data = read_table(path, "a sweep file")
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise TrainError(f"{path}: unknown table(s) or key(s) {', '.join(unknown)}; a sweep file has the tables "
                         "[run], [search] and [study].")
    tables = {name: data.get(name, {}) for name in TABLES}
    for name, value in tables.items():
        if not isinstance(value, dict):
            raise TrainError(f"{path}: [{name}] must be a table, got {value!r}.")
    return from_tables({**tables["run"], **(overrides or {})}, tables["search"],
                       {**tables["study"], **(study_overrides or {})}, path)


def parse_grid_flag(text: str) -> tuple[str, list]:
    """``NAME=V1,V2,...`` (a ``--grid`` flag) as the name and its values typed by the TrainConfig field."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = _config_fields()
    if not sep or not values.strip():
        raise TrainError(f"--grid {text!r}: write NAME=V1,V2,... (e.g. --grid lr=1e-3,3e-3).")
    if name not in fields:
        raise TrainError(f"--grid {text!r}: {name!r} is not a training setting; search any of "
                         f"{', '.join(f for f in fields if f not in NOT_SEARCHED)}.")
    kind, _ = field_type(fields[name])
    out = []
    for raw in values.split(","):
        raw = raw.strip()
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                out.append(raw.lower() == "true")
            else:
                out.append(kind(raw))
        except ValueError:
            raise TrainError(f"--grid {text!r}: {raw!r} is not a {kind.__name__} value for {name}.") from None
    return name, out


def quick_grid(grid_flags: list[str], overrides: dict | None = None, study_overrides: dict | None = None,
               ) -> SweepSpec:
    """A grid sweep from ``--grid NAME=V1,V2`` flags (no file); ``overrides``: the training flags."""
    search: dict = {}
    for text in grid_flags:
        name, values = parse_grid_flag(text)
        if name in search:
            raise TrainError(f"--grid {name} is given twice; list all its values in one --grid {name}=....")
        search[name] = values
    return from_tables(dict(overrides or {}), search, {"sampler": "grid", **(study_overrides or {})}, "--grid")


__all__ = ["Objective", "Param", "SweepSpec", "from_tables", "load_sweep_file", "parse_grid_flag", "parse_objective",
           "quick_grid"]
