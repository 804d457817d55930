"""ReadSpec: the read settings as one frozen value, recorded in the manifest and turned back into the same spec."""
import dataclasses

import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from gpu_features.ingest import ReadSpec, reread
from tests.ingest.samples import table, write


def test_frozen_and_refuses_bad_rule_values_in_one_sentence():
    spec = ReadSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.timezone = "UTC"
    with pytest.raises(BarsError, match=r"^on_overlap must be one of error, skip, got 'merge'\.$"):
        ReadSpec(on_overlap="merge")
    with pytest.raises(BarsError, match=r"^max_drop_fraction must lie in \[0, 1\], got 2\.$"):
        ReadSpec(max_drop_fraction=2)
    with pytest.raises(BarsError, match=r"unknown read setting\(s\) 'bogus'; see gpu_features.ingest.ReadSpec"):
        spec.replace(bogus=1)
    assert spec.replace() is spec and spec.replace(timezone="UTC").timezone == "UTC"


def test_record_holds_what_differs_in_the_manifests_order():
    spec = ReadSpec(on_overlap="skip", timezone="America/New_York", columns=("time", "open"), allow_nonpositive=True,
                    max_drop_fraction=0.5)
    rec = spec.record("ninjatrader", "end")
    # layout fields first (in field order), then the layout that decoded, the bar edge, then the rules
    assert list(rec.items()) == [("timezone", "America/New_York"), ("columns", ["time", "open"]),
                                 ("format", "ninjatrader"), ("bar_time", "end"), ("allow_nonpositive", True),
                                 ("max_drop_fraction", 0.5), ("on_overlap", "skip")]
    assert ReadSpec().record("generic", "start") == {}
    assert ReadSpec(format="generic").record("generic", "start") == {"format": "generic"}


def test_from_record_reads_a_source_again_the_same_way():
    spec = ReadSpec(timezone="America/New_York", rename={"Last": "close"}, columns=("a", "b"), on_overlap="skip")
    back = ReadSpec.from_record(spec.record("sierrachart", "end"))
    assert back == dataclasses.replace(spec, format="sierrachart")  # bar_time is the layout's, not a setting
    assert ReadSpec.from_record(None) == ReadSpec() and ReadSpec.from_record({"bar_time": "end"}) == ReadSpec()


def test_layout_is_default_ignores_the_rule_fields():
    assert ReadSpec(on_overlap="skip", max_drop_fraction=0.5, allow_nonpositive=True).layout_is_default()
    assert not ReadSpec(timezone="UTC").layout_is_default() and not ReadSpec(header=False).layout_is_default()


def test_read_bars_takes_a_spec_and_settings_on_top(tmp_path):
    path = write(tmp_path, table(5))
    by_spec = read_bars(path, spec=ReadSpec(max_drop_fraction=0.5))
    by_words = read_bars(path, max_drop_fraction=0.5)
    assert by_spec.source == by_words.source and by_spec.source["read"] == {"max_drop_fraction": 0.5}
    assert read_bars(path, spec=ReadSpec(max_drop_fraction=0.5), max_drop_fraction=0.25).source["read"] == {
        "max_drop_fraction": 0.25}


def test_reread_uses_the_recorded_settings_and_policy(tmp_path):
    import numpy as np

    bad = write(tmp_path, table(5, low=np.array([99.0, 100.75, 99.0, 99.0, 99.0])))
    bars = read_bars(bad, on_bad_bars="drop", max_drop_fraction=0.5)
    record = dict(bars.source, ingest=bars.ingest)
    again = reread(record, [bad])
    assert again.n == bars.n == 4 and again.ingest["dropped"] == bars.ingest["dropped"]
    with pytest.raises(BarsError, match="low above min"):
        reread(dict(record, ingest=dict(bars.ingest, policy="error")), [bad])


SETTINGS = [  # (a read setting no file can be read with, the words of the refusal naming it)
    ({"price_scale": 0.0}, "price_scale must be a finite number > 0"),
    ({"price_scale": float("nan")}, "price_scale must be a finite number > 0"),
    ({"price_scale": -1e-9}, "price_scale must be a finite number > 0"),
    ({"delimiter": "::"}, "delimiter must be one character"),
    ({"delimiter": ""}, "delimiter must be one character"),
    ({"rename": {"open": ""}}, "rename holds '', not a column name"),
    ({"rename": {" ": "close"}}, "rename holds ' ', not a column name"),
    ({"columns": ("time", "", "close")}, "columns holds '', not a column name"),
    ({"time_column": ""}, "time_column holds '', not a column name"),
    ({"timezone": "  "}, "timezone holds '  ', not a column name or value"),
]


@pytest.mark.parametrize("settings, words", SETTINGS, ids=[str(s) for s, _ in SETTINGS])
def test_settings_no_file_can_be_read_with_are_refused_naming_the_setting(settings, words):
    with pytest.raises(BarsError) as err:
        ReadSpec(**settings)
    assert words in str(err.value)
