import json
import math

import pytest

from gpu_features import FeatureConfig
from gpu_features.config import MAX_ATR_PERIOD
from gpu_features.errors import ConfigError


def test_defaults_are_the_contract():
    cfg = FeatureConfig()
    assert (cfg.eps, cfg.ema_period, cfg.atr_period, cfg.zigzag_k) == (1e-6, 20, 10, 1.2)
    assert (cfg.hybrid_lookback, cfg.hybrid_min_retrace_atr, cfg.hybrid) == (5, 0.5, True)
    assert (cfg.window_length, cfg.warmup_bars) == (105, 60)
    assert cfg.alpha == 2.0 / 21


def test_frozen():
    with pytest.raises(AttributeError):
        FeatureConfig().atr_period = 3


@pytest.mark.parametrize("field, value, allowed", [
    ("ema_period", 0, ">= 1"),
    ("atr_period", 0, f"1 .. {MAX_ATR_PERIOD}"),
    ("atr_period", MAX_ATR_PERIOD + 1, f"1 .. {MAX_ATR_PERIOD}"),
    ("window_length", 1, ">= 2"),
    ("zigzag_k", -1.0, "> 0"),
    ("hybrid_min_retrace_atr", -0.5, ">= 0"),
    ("hybrid_lookback", -1, ">= 0"),
    ("warmup_bars", -1, ">= 0"),
    ("eps", 0.0, "0 < eps < 1"),
])
def test_out_of_range_names_field_and_range(field, value, allowed):
    with pytest.raises(ConfigError) as err:
        FeatureConfig(**{field: value})
    assert f"FeatureConfig.{field}" in str(err.value) and allowed in str(err.value)


def test_wrong_types_refused():
    with pytest.raises(ConfigError, match="atr_period must be int, got float"):
        FeatureConfig(atr_period=10.0)
    with pytest.raises(ConfigError, match="hybrid must be bool, got int"):
        FeatureConfig(hybrid=1)
    with pytest.raises(ConfigError, match="ema_period must be int, got bool"):
        FeatureConfig(ema_period=True)


def test_int_accepted_for_float_fields():
    assert FeatureConfig(zigzag_k=2).zigzag_k == 2.0


def test_dict_and_json_round_trip_and_unknown_keys():
    cfg = FeatureConfig(zigzag_k=2.0, hybrid=False)
    assert FeatureConfig.from_json(cfg.to_json()) == cfg
    assert FeatureConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="unknown key\\(s\\) zigzag; allowed keys are eps"):
        FeatureConfig.from_dict({"zigzag": 1.0})
    with pytest.raises(ConfigError, match="does not parse"):
        FeatureConfig.from_json("{not json")


@pytest.mark.parametrize("field", ["eps", "zigzag_k", "hybrid_min_retrace_atr"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_config_values_are_refused_like_nan(field, value):
    with pytest.raises(ConfigError, match=f"FeatureConfig.{field} = .* is not a finite number"):
        FeatureConfig(**{field: value})
    with pytest.raises(ConfigError, match="too large for a float"):
        FeatureConfig(zigzag_k=10 ** 400)
