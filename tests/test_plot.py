"""plot: the PNG decodes at the expected size; swing markers checked through the returned data."""
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import gpu_features as gf
from gpu_features import reference, synthetic
from gpu_features.cli import main
from gpu_features.errors import GpuFeaturesError
from gpu_features.ingest import ReadSpec
from gpu_features.plot import chart_data, render
from gpu_features.store import append_store, precompute
from tests.harness import STORE_ENGINE
from tests.ingest.samples import tbl, walk

N = 6000


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "s"
    make_store(synthetic.generate(N, 2, seed=4), path, checkpoint_every=500)
    return path


def swings_from_scratch(bars, cfg):
    """Every confirmed swing of one whole series, straight from the reference engine: (confirm, kind, extreme, price)."""
    events = []
    n = len(bars.close)
    reference.run_series(bars.open.tolist(), bars.high.tolist(), bars.low.tolist(), bars.close.tolist(), cfg,
                         np.zeros(26), np.zeros((n, 10), np.float32), np.zeros(n, bool), np.zeros(n, np.int8),
                         events=events)
    return [(j, "high" if code == 1 else "low", ext_i, p) for j, code, ext_i, p in events]


def test_png_size_and_decodes(store, tmp_path):
    import matplotlib.image as mpimg

    data = chart_data(store, symbol="SYN1", last=150, features=["range_z", "valid" if False else "body_pct"])
    out = render(data, tmp_path / "c.png")
    img = mpimg.imread(out)
    assert img.shape[:2] == (data.size_px[1], data.size_px[0]) == (660, 1200)


def test_swings_match_a_run_from_the_series_start(store):
    bars = synthetic.generate(N, 2, seed=4)
    second = bars.take(N, 2 * N, 1)
    data = chart_data(store, symbol="SYN1", start="2019-01-08T00:00", end="2019-01-08T03:00")
    assert len(data.bars) == 180 and data.bars[0] >= N  # SYN1 lives at store positions N..2N
    want = [(N + j, kind, N + e, p) for j, kind, e, p in swings_from_scratch(second, gf.FeatureConfig())
            if data.bars[0] <= N + j <= data.bars[-1]]
    got = [(s.confirm_bar, s.kind, s.extreme_bar, s.extreme_price) for s in data.swings]
    assert got == want and len(got) > 50
    for s in data.swings:  # each marker sits on its bar: a swing high at the bar's high (or the leg's first close)
        k = s.extreme_bar - N
        assert s.extreme_price in ((second.high[k], second.close[k]) if s.kind == "high" else (second.low[k], second.close[k]))


def test_invalid_bars_and_feature_values(store):
    data = chart_data(store, last=None, start="2019-01-06T00:00", end="2019-01-06T23:30",
                      features=["dist_to_prev_SL"])
    assert len(data.bars) == 30 and not data.valid.any()  # the warm-up
    np.testing.assert_array_equal(data.features["dist_to_prev_SL"], gf.open_store(store).array("features")[:30, 7])


def test_swings_across_an_append_seam(make_store, tmp_path):
    bars = synthetic.generate(4000, seed=6)
    path = tmp_path / "s"
    make_store(bars.take(0, 2500), path, checkpoint_every=300)
    append_store(path, bars.take(2500, 4000), engine=STORE_ENGINE)
    data = chart_data(path, last=1000)
    want = [(j, kind, e, p) for j, kind, e, p in swings_from_scratch(bars, gf.FeatureConfig()) if j >= 3000]
    assert [(s.confirm_bar, s.kind, s.extreme_bar, s.extreme_price) for s in data.swings] == want


def test_refusals(store, monkeypatch):
    with pytest.raises(GpuFeaturesError, match="unknown feature\\(s\\) rsi"):
        chart_data(store, features=["rsi"])
    with pytest.raises(GpuFeaturesError, match="no symbol 'ES'"):
        chart_data(store, symbol="ES")
    with pytest.raises(GpuFeaturesError, match="no bars of SYN0 in the chosen range"):
        chart_data(store, start="2030-01-01")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(GpuFeaturesError, match="plotting needs matplotlib; install it with"):
        render(chart_data(store, last=20), "x.png")


def test_cli_plot(store, tmp_path, capsys):
    code = main(["plot", str(store), "--symbol", "SYN0", "--last", "120", "--out", str(tmp_path / "p.png"),
                 "--features", "range_z,body_pct"])
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 10_000
    assert "120 bars" in capsys.readouterr().out


def test_plot_swings_restart_at_a_roll(tmp_path):
    from gpu_features import reference
    from gpu_features.plot import chart_data

    w = walk(1000, seed=3)
    contract = np.where(np.arange(1000) < 600, "ESH4", "ESM4")
    path = tmp_path / "es.parquet"
    pq.write_table(tbl(w, contract=contract), path)
    st = precompute(path, tmp_path / "s", engine="reference", spec=ReadSpec(roll_column="contract"))
    want = []
    for g in st.segments:
        a, b = g.first, g.stop
        events = []
        n = b - a
        reference.run_series(w["open"][a:b].tolist(), w["high"][a:b].tolist(), w["low"][a:b].tolist(),
                             w["close"][a:b].tolist(), st.config, np.zeros(16 + st.config.atr_period),
                             np.zeros((n, 10), np.float32), np.zeros(n, bool), np.zeros(n, np.int8), events=events)
        want += [("high" if code == 1 else "low", int(ext_i) + a, float(p), a + j) for j, code, ext_i, p in events]
    got = chart_data(tmp_path / "s", last=1000).swings
    assert [(s.kind, s.extreme_bar, s.extreme_price, s.confirm_bar) for s in got] == want and len(want) > 4
