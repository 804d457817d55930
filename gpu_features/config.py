"""FeatureConfig: the FEATURES.md parameters, frozen and validated.

Saved whole into every store manifest and checkpoint; rebuilding one from a
dict or JSON refuses unknown keys and wrong types instead of ignoring them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from .errors import ConfigError

FEATURE_NAMES = (
    "open_norm",
    "close_norm",
    "body_pct",
    "upper_wick_pct",
    "lower_wick_pct",
    "range_z",
    "dist_to_prev_SH",
    "dist_to_prev_SL",
    "bars_since_SH_norm",
    "bars_since_SL_norm",
)
N_FEATURES = len(FEATURE_NAMES)

# Clip range of each feature (FEATURES.md step 6); the reference and the kernels clip to these.
FEATURE_RANGES = {
    "open_norm": (0, 1), "close_norm": (0, 1), "body_pct": (-1, 1), "upper_wick_pct": (0, 1),
    "lower_wick_pct": (0, 1), "range_z": (0, 3), "dist_to_prev_SH": (-3, 3), "dist_to_prev_SL": (-3, 3),
    "bars_since_SH_norm": (0, 3), "bars_since_SL_norm": (0, 3),
}

# The kernels keep the true-range window in a fixed-size array (registers on
# the GPU); a longer period is refused by the config rather than truncated.
MAX_ATR_PERIOD = 64
# Bars per window: a store's reader refuses more (store/format.py), so the config does too, before a build.
MAX_WINDOW_LENGTH = 1 << 16


class FrozenConfig:
    """Base of the frozen config dataclasses (FeatureConfig, and the trainer's JadeConfig and TrainConfig).

    Checks every field's type on construction (an int is accepted for a float
    field; bool is never an int), and rebuilds from a dict or JSON refusing
    unknown keys. Subclasses set ``_error`` (the exception raised) and check
    ranges in ``__post_init__`` after calling ``super().__post_init__()``.
    """

    _error: type = ConfigError
    _prefix: str = ""  # how messages name a field; default "<ClassName>."

    @classmethod
    def _name(cls, field: str) -> str:
        return (cls._prefix or f"{cls.__name__}.") + field

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            want, optional = field_type(f)
            value = getattr(self, f.name)
            if optional and value is None:
                continue
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    object.__setattr__(self, f.name, float(value))
                except OverflowError:
                    raise self._error(f"{self._name(f.name)} = {value} is too large for a float; "
                                      "give a finite number.") from None
            elif not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                raise self._error(f"{self._name(f.name)} must be {want.__name__}, "
                                  f"got {type(value).__name__} {value!r}.")
            # NaN passes no range check and infinity passes "> 0": neither is a setting.
            if want is float and not math.isfinite(getattr(self, f.name)):
                raise self._error(f"{self._name(f.name)} = {getattr(self, f.name)!r} is not a finite number; "
                                  "give a finite value.")

    def _check(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise self._error(f"{self._name(name)} = {getattr(self, name)!r} is out of range; "
                              f"allowed: {allowed}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a mapping; unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, Mapping):
            raise cls._error(f"{cls.__name__} must be built from a mapping, got {type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise cls._error(f"{cls.__name__} got unknown key(s) {', '.join(unknown)}; "
                             f"allowed keys are {', '.join(names)}.")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise cls._error(f"{cls.__name__} JSON does not parse: {err}.") from None
        return cls.from_dict(data)


_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str}


def field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """``(type, optional)`` of a field annotated ``T`` or ``T | None`` (string annotations included)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    parts = [p.strip() for p in text.split("|")]
    optional = "None" in parts
    return _TYPE_NAMES[next(p for p in parts if p != "None")], optional


@dataclasses.dataclass(frozen=True)
class FeatureConfig(FrozenConfig):
    """Parameters of the relativity-10 features (defaults = FEATURES.md)."""

    eps: float = 1e-6
    ema_period: int = 20
    atr_period: int = 10
    zigzag_k: float = 1.2
    hybrid_lookback: int = 5
    hybrid_min_retrace_atr: float = 0.5
    hybrid: bool = True
    window_length: int = 105
    warmup_bars: int = 60

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(0 < self.eps < 1, "eps", "0 < eps < 1")
        self._check(self.ema_period >= 1, "ema_period", ">= 1")
        self._check(1 <= self.atr_period <= MAX_ATR_PERIOD, "atr_period", f"1 .. {MAX_ATR_PERIOD}")
        self._check(self.zigzag_k > 0, "zigzag_k", "> 0")
        self._check(self.hybrid_lookback >= 0, "hybrid_lookback", ">= 0")
        self._check(self.hybrid_min_retrace_atr >= 0, "hybrid_min_retrace_atr", ">= 0")
        self._check(2 <= self.window_length <= MAX_WINDOW_LENGTH, "window_length", f">= 2 and <= {MAX_WINDOW_LENGTH}")
        self._check(self.warmup_bars >= 0, "warmup_bars", ">= 0")

    @property
    def alpha(self) -> float:
        """EMA smoothing factor, ``2.0 / (ema_period + 1)`` (FEATURES.md)."""
        return 2.0 / (self.ema_period + 1)
