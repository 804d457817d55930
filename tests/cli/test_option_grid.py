"""The option x bad-value grid: every option of every command, taken from the parsers themselves.

Each numeric option is tried at 0, -1, NaN, +inf, -inf, a tiny (subnormal) and a huge value and at
the largest int64; :data:`ACCEPTED` says which of those it takes, and every other cell must be a
clean refusal: exit 2, one line naming the option, no traceback, nothing written. An accepted cell
must run and have the value take effect. Every text option (positionals included) given an empty
value must be refused. A new option fails :func:`test_every_option_has_a_row` until it gets a row
here, so no option is silently missed.
"""
from types import SimpleNamespace

import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import build_parser, main
from tests.harness import STORE_ENGINE, write_parquet

VALUES = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "-inf": "-inf", "tiny": "1e-320",
          "huge": "1e300", "int64max": "9223372036854775807"}

# (command, option) -> the value classes it accepts; every other class must be refused.
ACCEPTED = {
    ("precompute", "--shard-bars"): {"int64max"},             # one shard
    ("precompute", "--synthetic-bars"): set(),                # int64max: refused before allocating
    ("precompute", "--symbols"): set(),
    ("precompute", "--seed"): {"zero"},                       # a store records at most 2**34
    ("precompute", "--price-scale"): set(),                   # 1e-12 .. 1e12
    ("precompute", "--max-drop-fraction"): {"zero", "tiny"},  # 0 .. 1
    ("precompute", "--workers"): set(),                       # 1 .. 1024 processes
    ("precompute", "--symbols-per-task"): {"int64max"},
    ("precompute", "--bars-per-task"): {"zero", "int64max"},  # 0: a task per group
    ("precompute", "--eps"): {"tiny"},
    ("precompute", "--ema-period"): {"int64max"},
    ("precompute", "--atr-period"): set(),
    ("precompute", "--zigzag-k"): {"tiny", "huge", "int64max"},  # huge: no swing ever confirms, warned
    ("precompute", "--hybrid-lookback"): {"zero", "int64max"},
    ("precompute", "--hybrid-min-retrace-atr"): {"zero", "tiny", "huge", "int64max"},
    ("precompute", "--window-length"): set(),                 # 2 .. 65536, what a store's reader takes
    ("precompute", "--warmup-bars"): {"zero", "int64max"},    # int64max: a store without valid bars, warned
    ("verify", "--sample-bars"): {"zero", "int64max"},
    ("verify", "--seed"): {"zero", "int64max"},
    ("export", "--stride"): {"int64max"},
    ("plot", "--last"): set(),
    ("train", "--epochs"): {"int64max"},
    ("train", "--batch-size"): set(),
    ("train", "--lr"): {"tiny"},
    ("train", "--seed"): {"zero", "int64max"},
    ("train", "--max-train-windows"): {"int64max"},
    ("train", "--max-val-windows"): {"int64max"},
    ("train", "--max-final-windows"): {"int64max"},
    ("train", "--stride"): {"int64max"},                      # the first usable window of each run
    ("train", "--min-valid-fraction"): {"zero", "tiny"},
    ("train", "--mask-ratio"): set(),                         # tiny: masks no bar, refused
    ("train", "--patch-length"): set(),
    ("train", "--patience"): {"int64max"},
    ("train", "--hidden-size"): set(),
    ("train", "--num-layers"): set(),
    ("train", "--dropout"): {"zero", "tiny"},
    ("train", "--weight-decay"): {"zero", "tiny"},
    ("train", "--warmup-fraction"): {"zero", "tiny"},
    ("train", "--grad-clip"): {"tiny", "huge", "int64max"},  # huge: no clipping
    ("train", "--window-length"): set(),
    ("train plot", "--dpi"): set(),
    ("train sweep", "--trials"): set(),            # int64max: more than the one-point grid has, refused by the sweep
    ("train sweep", "--jobs"): set(),              # 1 .. 1024 worker processes
    ("train sweep", "--jobs-per-device"): set(),   # 1 .. 1024
    ("train sweep", "--threads-per-job"): set(),   # 1 .. 1024
    ("train embed", "--batch-size"): set(),        # 1 .. 2**20
    ("train embed", "--stride"): {"int64max"},     # the first usable window of each run
    ("train probe", "--batch-size"): set(),
    ("train probe", "--stride"): set(),            # 1 .. 10,000: beyond, no split keeps a sample
    ("train probe", "--max-windows"): set(),       # 100 .. 10**9
    ("train probe", "--embargo"): set(),           # zero: shorter than K + N, refused naming --embargo
    ("train probe", "--resamples"): set(),         # 10 .. 100,000
    ("train probe", "--seed"): {"zero", "int64max"},
    ("train probe", "--finetune-epochs"): set(),   # 1 .. 1,000
}
DISTRIBUTED = ("--workers", "--symbols-per-task", "--bars-per-task")
READ_OPTIONS = ("--price-scale", "--max-drop-fraction")


def parsers() -> dict:
    from train.cli import (build_parser as train_parser, embed_parser, plot_parser, probe_parser, sweep_parser,
                           sweep_report_parser)

    sub = build_parser()._subparsers._group_actions[0].choices
    return {**sub, "train": train_parser(), "train plot": plot_parser(), "train sweep": sweep_parser(),
            "train sweep-report": sweep_report_parser(), "train embed": embed_parser(), "train probe": probe_parser()}


def value_actions():
    """``(command, action)`` of every option or positional that takes a value (switches and --help excluded)."""
    return [(prog, a) for prog, p in parsers().items() for a in p._actions
            if a.nargs != 0 and a.dest != "help" and a.choices is None]


def action_type(prog: str, option: str) -> str:
    """``count`` or ``number``: the hook that parses ``option``."""
    return next(a.type.__name__ for a in parsers()[prog]._actions if option in a.option_strings)


def numeric(action) -> bool:
    return getattr(action.type, "__name__", None) in ("count", "number")


def test_every_option_has_a_row():
    got = {(prog, a.option_strings[0]) for prog, a in value_actions() if numeric(a)}
    assert got == set(ACCEPTED), f"options without a row: {sorted(got - set(ACCEPTED))}; rows without an option: " \
                                 f"{sorted(set(ACCEPTED) - got)}"
    plain = [(prog, a.option_strings) for prog, a in value_actions() if a.type in (int, float)]
    assert not plain, f"use gpu_features.options.count/number, not int/float: {plain}"


@pytest.fixture(scope="module")
def grid_store(make_store, tmp_path_factory):
    return make_store(synthetic.generate(3000, 1, 4), tmp_path_factory.mktemp("grid") / "s").path


@pytest.fixture(scope="module")
def bar_file(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("grid-in") / "bars.parquet", synthetic.generate(600, 2, 9))


@pytest.fixture(scope="module")
def grid_run(make_store, tmp_path_factory):
    """A finished tiny run on a 3,000-bar store split 60/20/20 (a probe needs val and test longer than K + N)."""
    pytest.importorskip("torch", reason="the trainer needs torch (make test installs it)")
    from tests.train.runs import tiny
    from train.loop import train

    d = tmp_path_factory.mktemp("grid-run")
    store = make_store(synthetic.generate(3000, 1, 4), d / "store", splits={"fractions": [0.6, 0.2, 0.2]})
    run_dir = d / "run"
    train(store.path, run_dir, tiny(epochs=1, hidden_size=8, max_train_windows=64, max_val_windows=32,
                                    max_final_windows=32))
    return run_dir


def _argv(prog, store, bar_file, out, run=None):
    return {
        "precompute": ["precompute", "--output", out, "--synthetic-bars", "300", "--quiet", "--engine", STORE_ENGINE],
        "verify": ["verify", store, "--quiet"],
        "inspect": ["inspect", store],
        "export": ["export", store, "--output", out, "--quiet"],
        "plot": ["plot", store, "--out", out],
        "train": ["--store", store, "--run-dir", out, "--device", "cpu", "--quiet"],
        "train plot": ["plot", out],
        # the sweep's own options; its training flags are the trainer's (rows above)
        "train sweep": ["sweep", "--study-dir", out, "--store", store, "--grid", "lr=1e-3", "--device", "cpu",
                        "--quiet"],
        "train sweep-report": ["sweep-report", out],
        "stream": ["stream", "--store", store],
        "train embed": ["embed", "--run", run, "--output", f"{out}.parquet", "--quiet"],
        "train probe": ["probe", "--run", run, "--target", "return-sign:2", "--resamples", "10", "--no-chart",
                        "--quiet"],
    }[prog]


def run_cli(capsys, prog, argv):
    from train import cli as train_cli

    try:
        code = (train_cli.main if prog.startswith("train") else main)([str(a) for a in argv])
    except SystemExit as e:  # argparse's refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


CELLS = [(prog, opt, kind) for (prog, opt) in ACCEPTED for kind in VALUES]


@pytest.mark.parametrize("prog, option, kind", CELLS, ids=[f"{p}{o}={k}" for p, o, k in CELLS])
def test_option_value_grid(prog, option, kind, grid_store, bar_file, tmp_path, capsys, monkeypatch, request):
    out = tmp_path / ("chart.png" if prog == "plot" else "out")
    run = request.getfixturevalue("grid_run") if prog in ("train embed", "train probe") else None
    argv = _argv(prog, grid_store, bar_file, out, run)
    if prog == "train probe":  # probe.json goes into the run directory: a copy per cell
        import shutil

        shutil.copytree(run, tmp_path / "run")
        argv[2] = tmp_path / "run"
    if prog == "precompute" and option in READ_OPTIONS:
        argv += ["--input", bar_file]
    seen = {}
    if prog == "precompute" and option in DISTRIBUTED:  # what reaches the Dask driver (no cluster is started)
        import gpu_features.cli.build as cli_build
        import gpu_features.distributed as dist_mod

        argv += ["--distributed", "--input", bar_file]
        monkeypatch.setattr(dist_mod, "build_dataset",
                            lambda *a, **kw: seen.update(kw) or SimpleNamespace(path=out, report=None))
        monkeypatch.setattr(cli_build, "print_report", lambda *a, **kw: None)
    if prog == "train":  # accepted means the run was prepared with the value; the epochs themselves are not run
        from train import loop, report

        monkeypatch.setattr(loop.Run, "fit", lambda self, on_batch=None: seen.update(cfg=self.cfg))
        monkeypatch.setattr(loop.Run, "finish", lambda self: {})
        monkeypatch.setattr(report, "print_report", lambda *a, **kw: None)
    code, stdout, err = run_cli(capsys, prog, argv + [option, VALUES[kind]])
    assert "Traceback" not in err and "internal error" not in err, err
    if kind not in ACCEPTED[(prog, option)]:
        assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
        words = (option, option[2:].replace("-", "_"), option[2:].replace("-", " "))
        assert any(w in err for w in words), f"the refusal does not name {option}: {err}"
        assert not out.exists() and not (tmp_path / "out.parquet").exists(), "a refused command wrote its output"
        assert not (tmp_path / "run" / "probe.json").exists(), "a refused probe wrote its record"
        return
    assert code == 0, (code, err)
    field = option[2:].replace("-", "_")
    value = float(VALUES[kind]) if action_type(prog, option) == "number" else int(VALUES[kind])
    if prog == "precompute" and option in DISTRIBUTED:
        assert seen[field] == value
    elif prog == "precompute" and option not in READ_OPTIONS and field in gf.FeatureConfig.__dataclass_fields__:
        assert gf.open_store(out).config.to_dict()[field] == value
    elif prog == "precompute":
        st = gf.open_store(out)
        assert st.n_bars > 0 and (field != "seed" or st.sources[0]["seed"] == value)
        assert field != "shard_bars" or len(st.shards) == 1
    elif prog == "verify":
        assert "verified" in stdout
    elif prog == "export":
        assert (out / "features_10d.npy").is_file()
    elif prog == "train":
        assert seen["cfg"].to_dict()[field] == value
    elif prog == "train embed":
        import pyarrow.parquet as pq

        assert pq.read_metadata(f"{out}.parquet").num_rows == 3  # int64max: the first window of each split
    elif prog == "train probe":
        import json

        assert json.loads((tmp_path / "run" / "probe.json").read_text())["settings"][field] == value


TEXT = [(prog, a) for prog, a in value_actions() if not numeric(a)]


@pytest.mark.parametrize("prog, action", TEXT, ids=[f"{p}:{(a.option_strings or [a.dest])[0]}" for p, a in TEXT])
@pytest.mark.parametrize("empty", ["", "  "])
def test_every_text_option_refuses_an_empty_value(prog, action, empty, grid_store, tmp_path, capsys):
    argv = _argv(prog, grid_store, None, tmp_path / "out", tmp_path / "run")
    if action.option_strings:
        argv = argv + [action.option_strings[0], empty]
    else:  # a positional (the store or run directory, right after the command): the empty value in its place
        argv = argv[:1] + [empty] + argv[2:]
    code, _, err = run_cli(capsys, prog, argv)
    name = (action.option_strings or [action.dest])[0]
    assert code == 2 and len(err.strip().splitlines()) == 1 and "an empty value is not allowed" in err, (code, err)
    assert name in err and not (tmp_path / "out").exists()


# --- read options and inputs that contradict the files: refused by gpu_features/ingest ------------------------
# One row per case: the files written (by _FILES), the options, and what the one line must name. The option (or the
# file and row) is named; nothing is written. Ingest's own tables (tests/ingest/) try each rule in more ways.


def _csv(path, t0="2024-01-02T00:00:00", price=100.0, n=400, symbol=None):
    import numpy as np

    times = np.datetime64(t0) + np.arange(n) * np.timedelta64(60, "s")
    rows = ["timestamp,open,high,low,close" + (",symbol" if symbol else "")]
    rows += [f"{t},{price + k * 0.25},{price + k * 0.25 + 1},{price + k * 0.25 - 1},{price + k * 0.25 + 0.25}"
             + (f",{symbol}" if symbol else "") for k, t in enumerate(times)]
    path.write_text("\n".join(rows) + "\n")
    return path


_FILES = {
    "bars.csv": {},
    "ES.csv": {"price": 4000.0},
    "NQ.csv": {"t0": "2024-01-03T00:00:00", "price": 15000.0},
    "keyed.csv": {"t0": "2024-01-03T00:00:00", "symbol": "bars"},
    "late.csv": {"t0": "2300-01-02T00:00:00"},
}

READ_REFUSALS = [  # (id, input files, options, words the one line holds)
    ("symbol-column-names-a-price-column", ["bars.csv"], ["--symbol-column", "close"],
     ["--symbol-column close names the close price column"]),
    ("symbol-column-names-the-time-column", ["bars.csv"], ["--symbol-column", "timestamp"],
     ["--symbol-column timestamp names the time column"]),
    ("roll-column-names-a-price-column", ["bars.csv"], ["--roll-column", "close"],
     ["--roll-column close names the close price column"]),
    ("format-scid-on-a-csv", ["bars.csv"], ["--format", "scid"], ["--format scid is for Sierra Chart intraday files"]),
    ("format-that-lays-out-other-columns", ["bars.csv"], ["--format", "ninjatrader", "--timezone", "UTC"],
     ["as --format ninjatrader lays the file out"]),
    ("rename-creates-a-duplicate-column", ["bars.csv"], ["--rename", "open=close"],
     ["--rename open=close would make a second 'close' column"]),
    ("two-renames-make-one-column", ["bars.csv"], ["--rename", "open=x", "--rename", "high=x"],
     ["--rename open=x and --rename high=x would both make a column 'x'"]),
    ("rename-without-a-new-name", ["bars.csv"], ["--rename", "open="], ["--rename 'open='"]),
    ("rename-without-a-file-column", ["bars.csv"], ["--rename", "=close"], ["--rename '=close'"]),
    ("delimiter-not-in-the-file", ["bars.csv"], ["--delimiter", ";"], ["--delimiter ';' does not occur"]),
    ("columns-of-a-file-with-a-header", ["bars.csv"], ["--columns", "time,open,high,low,close"],
     ["--columns names the columns of a CSV without a header line"]),
    ("no-header-on-a-header-line", ["bars.csv"], ["--no-header"], ["--no-header reads the first line as a bar"]),
    ("time-past-2262", ["late.csv"], [], ["row 0", "2262"]),
    ("time-past-2262-with-a-time-format", ["late.csv"], ["--time-format", "%Y-%m-%dT%H:%M:%S"], ["row 0", "2262"]),
    ("files-with-and-without-a-series-column", ["bars.csv", "keyed.csv"], [],
     ["bars.csv has no series column but", "keyed.csv has one"]),
]


@pytest.mark.parametrize("files, argv, words", [r[1:] for r in READ_REFUSALS], ids=[r[0] for r in READ_REFUSALS])
def test_read_options_and_inputs_that_contradict_the_files_are_refused(tmp_path, capsys, files, argv, words):
    paths = [_csv(tmp_path / name, **_FILES[name]) for name in files]
    code, _, err = run_cli(capsys, "precompute", ["precompute", "--input", *paths, "--output", tmp_path / "s",
                                                  "--quiet", *argv])
    line = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert all(w in line for w in words), line
    assert not (tmp_path / "s").exists()


def test_files_without_a_series_column_are_separate_series(tmp_path, capsys):
    """Named after their files, each from a cold start: no window spans the seam between ES and NQ."""
    import numpy as np

    es, nq = (_csv(tmp_path / name, **_FILES[name]) for name in ("ES.csv", "NQ.csv"))
    code, _, err = run_cli(capsys, "precompute", ["precompute", "--input", es, nq, "--output", tmp_path / "s",
                                                  "--quiet", "--engine", STORE_ENGINE])
    assert code == 0, err
    st = gf.open_store(tmp_path / "s")
    assert st.symbols == ["ES", "NQ"] and [g.name for g in st.segments] == ["ES", "NQ"]
    alone = gf.read_bars(nq)
    want = gf.compute_features(alone.open, alone.high, alone.low, alone.close, engine="reference")[0]
    nq_rows = st.array("features")[st.segments[1].first: st.segments[1].stop]
    np.testing.assert_array_equal(nq_rows.view(np.uint32), want.view(np.uint32))
    # the same, appended to: each file continues the symbol named after it
    (tmp_path / "more").mkdir()
    later = _csv(tmp_path / "more" / "NQ.csv", t0="2024-01-03T06:40:00", price=15100.0)
    code, out, err = run_cli(capsys, "precompute", ["precompute", "--output", tmp_path / "s", "--append", later,
                                                    "--quiet", "--engine", STORE_ENGINE])
    assert code == 0 and gf.open_store(tmp_path / "s").symbols == ["ES", "NQ"], err


def test_a_rename_that_swaps_two_columns_is_no_duplicate(tmp_path, capsys):
    src = _csv(tmp_path / "bars.csv")
    code, _, err = run_cli(capsys, "precompute", ["precompute", "--input", src, "--output", tmp_path / "s", "--quiet",
                                                  "--engine", STORE_ENGINE, "--rename", "open=close",
                                                  "--rename", "close=open"])
    assert code == 0, err
    assert gf.open_store(tmp_path / "s").sources[0]["read"]["rename"] == {"open": "close", "close": "open"}
