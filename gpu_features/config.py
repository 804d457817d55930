"""FeatureConfig: the FEATURES.md parameters, frozen and validated.

Saved whole into every store manifest and checkpoint; rebuilding one from a
dict or JSON refuses unknown keys and wrong types instead of ignoring them.
"""
from __future__ import annotations

import dataclasses
import json
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

# The kernels keep the true-range window in a fixed-size array (registers on
# the GPU); a longer period is refused by the config rather than truncated.
MAX_ATR_PERIOD = 64


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
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
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            want = _FIELD_TYPES[f.name]
            ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                ok = True
            if not ok:
                raise ConfigError(
                    f"FeatureConfig.{f.name} must be {want.__name__}, got {type(value).__name__} {value!r}."
                )
        _check(self.eps > 0 and self.eps < 1, "eps", self.eps, "0 < eps < 1")
        _check(self.ema_period >= 1, "ema_period", self.ema_period, ">= 1")
        _check(1 <= self.atr_period <= MAX_ATR_PERIOD, "atr_period", self.atr_period,
               f"1 .. {MAX_ATR_PERIOD}")
        _check(self.zigzag_k > 0, "zigzag_k", self.zigzag_k, "> 0")
        _check(self.hybrid_lookback >= 0, "hybrid_lookback", self.hybrid_lookback, ">= 0")
        _check(self.hybrid_min_retrace_atr >= 0, "hybrid_min_retrace_atr",
               self.hybrid_min_retrace_atr, ">= 0")
        _check(self.window_length >= 2, "window_length", self.window_length, ">= 2")
        _check(self.warmup_bars >= 0, "warmup_bars", self.warmup_bars, ">= 0")

    @property
    def alpha(self) -> float:
        """EMA smoothing factor, ``2.0 / (ema_period + 1)`` (FEATURES.md)."""
        return 2.0 / (self.ema_period + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        """Build from a mapping; unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"FeatureConfig must be built from a mapping, got {type(data).__name__}.")
        unknown = sorted(set(data) - set(_FIELD_TYPES))
        if unknown:
            raise ConfigError(
                f"FeatureConfig got unknown key(s) {', '.join(unknown)}; "
                f"allowed keys are {', '.join(_FIELD_TYPES)}."
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"FeatureConfig JSON does not parse: {err}.") from None
        return cls.from_dict(data)


_FIELD_TYPES = {
    "eps": float,
    "ema_period": int,
    "atr_period": int,
    "zigzag_k": float,
    "hybrid_lookback": int,
    "hybrid_min_retrace_atr": float,
    "hybrid": bool,
    "window_length": int,
    "warmup_bars": int,
}


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"FeatureConfig.{name} = {value!r} is out of range; allowed: {allowed}.")
