"""``gpu-features stream``: bars on stdin, one JSON line of features per bar, equal to the offline build."""
import io
import json

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import cli, synthetic
from gpu_features.ingest import Bars
from gpu_features.config import FEATURE_NAMES
from gpu_features.splits import iso_time
from tests.harness import STORE_ENGINE
from tests.store.test_append import per_symbol
from tests.test_stream import assert_bits, prefix

N_BARS = 260


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two synthetic symbols and their offline store."""
    bars = synthetic.generate(N_BARS, 2, seed=21)
    return bars, gf.precompute(bars, tmp_path_factory.mktemp("cmd") / "full", engine=STORE_ENGINE)


def rows_after(bars: Bars, start: int) -> np.ndarray:
    """Bars from local index ``start`` on, the symbols interleaved bar by bar (as a live feed sends them)."""
    b = bars.segment_bounds()
    per = [np.arange(b[s] + start, b[s + 1]) for s in range(bars.n_segments)]
    return np.stack(per, axis=1).ravel()


def csv_lines(bars: Bars, rows, header: bool = True) -> list[str]:
    names = np.array(bars.segment_names)[bars.segment_of()[rows]]
    out = ["time,symbol,open,high,low,close"] if header else []
    out += [",".join([iso_time(int(bars.timestamp[r])), str(n)] + [repr(float(getattr(bars, k)[r]))
                                                                    for k in ("open", "high", "low", "close")])
            for r, n in zip(rows, names)]
    return out


def json_lines(bars: Bars, rows) -> list[str]:
    names = np.array(bars.segment_names)[bars.segment_of()[rows]]
    return [json.dumps({"time": int(bars.timestamp[r]), "symbol": str(n), "open": float(bars.open[r]),
                        "high": float(bars.high[r]), "low": float(bars.low[r]), "close": float(bars.close[r])})
            for r, n in zip(rows, names)]


def run(argv, lines, monkeypatch, capsys):
    """``gpu-features stream ...`` in this process: ``(exit code, output JSON objects, stderr lines)``."""
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = cli.main(["stream", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, [json.loads(x) for x in out.splitlines()], err.splitlines()


def features_of(objs) -> np.ndarray:
    """The float32 features of output lines (each value reads back to its float32 exactly)."""
    return np.array([[o["features"][name] for name in FEATURE_NAMES] for o in objs], dtype=np.float32)


def test_csv_on_stdin_gives_the_offline_features_and_refuses_bad_lines(two, make_store, tmp_path, monkeypatch,
                                                                          capsys):
    bars, full = two
    make_store(prefix(bars, 150), tmp_path / "s")
    rows = rows_after(bars, 150)
    lines = csv_lines(bars, rows)
    good = lines[1:]
    r0 = good[0].split(",")
    bad = {3: "not,a,bar",                                                      # wrong field count
           5: ",".join(r0[:2] + ["1.0", "0.5", "0.9", "1.0"]),                 # high below max(open, close)
           8: good[1],                                                          # a repeated bar: time not after
           9: ",".join([r0[0], r0[1], "abc", r0[3], r0[4], r0[5]])}           # not a number
    feed = list(lines)
    for at in sorted(bad):
        feed.insert(at, bad[at])
    code, objs, err = run(["--store", tmp_path / "s", "--engine", "host"], feed, monkeypatch, capsys)
    assert code == 0
    assert len(objs) == len(rows)
    assert_bits(features_of(objs), full.array("features")[rows], "streamed features")
    assert [o["valid"] for o in objs] == full.array("valid")[rows].tolist()
    assert [o["symbol"] for o in objs] == list(np.array(bars.segment_names)[bars.segment_of()[rows]])
    refused = [e for e in err if e.startswith("refused:")]
    assert len(refused) == 4
    assert refused[0].startswith("refused: line 4: has 3 field(s) but the header has 6")
    assert "line 6: " in refused[1] and "high below max(open, close)" in refused[1] and "SYN0" in refused[1]
    assert "line 9: " in refused[2] and "not after" in refused[2]
    assert "line 10: " in refused[3] and "not a number" in refused[3]
    assert err[-1] == f"done: {len(rows)} bar(s) taken, 4 refused."


def test_json_lines_fresh_then_save_and_resume_continue_bit_for_bit(two, tmp_path, monkeypatch, capsys):
    bars, full = two
    (tmp_path / "cfg.json").write_text("{}")
    rows = rows_after(bars, 0)
    half = len(rows) // 2
    state = tmp_path / "live.stream"
    code, first, err = run(["--config", tmp_path / "cfg.json", "--engine", "reference", "--save", state],
                           json_lines(bars, rows[:half]), monkeypatch, capsys)
    assert code == 0 and f"state saved to {state}" in err[-1]
    code, second, _ = run(["--resume", state, "--engine", "host", "--save", state], json_lines(bars, rows[half:]),
                          monkeypatch, capsys)
    assert code == 0
    assert_bits(features_of(first + second), full.array("features")[rows], "features")
    resumed = gf.FeatureStream.load(state)
    assert_bits(resumed.states(list(bars.segment_names)), full.states()["end_state"], "end states")


def test_commit_equals_precompute_append_of_the_same_bars(two, make_store, tmp_path, monkeypatch, capsys):
    bars, _ = two
    make_store(prefix(bars, 200), tmp_path / "a")
    make_store(prefix(bars, 200), tmp_path / "b")
    lines = csv_lines(bars, rows_after(bars, 200))
    (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")
    code, objs, err = run(["--store", tmp_path / "a", "--commit", "--engine", "host"], lines, monkeypatch, capsys)
    assert code == 0 and "committed to" in err[-1]
    assert cli.main(["precompute", "--output", str(tmp_path / "b"), "--append", str(tmp_path / "new.csv"),
                     "--quiet"]) == 0
    a, b = gf.open_store(tmp_path / "a"), gf.open_store(tmp_path / "b")
    for name in ("features", "valid", "timestamp"):
        assert_bits(a.array(name), b.array(name), name)
    for name, arr in a.states().items():
        assert_bits(arr, b.states()[name], name)
    assert a.stats == b.stats and a.manifest["series"] == b.manifest["series"]
    for name in bars.segment_names:   # what the stream printed is what the store committed
        mine = [o for o in objs if o["symbol"] == name]
        assert_bits(features_of(mine), per_symbol(a, name, "features")[-len(mine):], f"{name} streamed = committed")


@pytest.mark.parametrize("argv, message", [
    ([], "give one of --store, --config or --resume"),
    (["--config", "c.json", "--resume", "s"], "give one of --store, --config or --resume"),
    (["--config", "c.json", "--commit"], "--commit appends the accepted bars to a store: add --store DIR"),
])
def test_flag_combinations_that_cannot_work_are_refused(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text("{}")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["stream", *argv]) == 2
    assert message in capsys.readouterr().err


def test_resume_with_a_store_of_another_config_is_refused(two, make_store, tmp_path, monkeypatch, capsys):
    bars, _ = two
    make_store(prefix(bars, 100), tmp_path / "s", config=gf.FeatureConfig(warmup_bars=30))
    state = gf.FeatureStream(engine="reference").save(tmp_path / "x.stream")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["stream", "--resume", str(state), "--store", str(tmp_path / "s")]) == 2
    assert "saved with feature config" in capsys.readouterr().err


def test_stream_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stream", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--store", "--config", "--resume", "--save", "--commit", "--engine", "--timezone"):
        assert flag in out
