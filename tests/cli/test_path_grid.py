"""The path x kind grid: every path option of every command given every kind of path.

Kinds: ``.`` (a folder of the user's), ``/``, an existing file of the user's, the store itself, a
file of the store, a folder of user files, a path inside the store, an empty folder, a new path, a
run directory (with a user file in it), an existing export, a sweep's study folder (its ``sweep.json``,
journal and queued grid). :data:`CASES` says which kinds each option accepts; every other cell must be
a clean refusal (exit 2, or exit 1 for ``verify``, one line, no traceback), and in every cell the user's
files, the store and the study (unless the command may write them) and the filesystem root are exactly
as they were.
"""
import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from gpu_features import synthetic
from gpu_features.cli import main
from tests.harness import STORE_ENGINE, write_parquet

KINDS = {"dot": ".", "root": "/", "file": "notes{sfx}", "store": "store", "store_file": "store/manifest.json",
         "user_dir": "user", "in_store": "store/x{sfx}", "empty": "empty", "missing": "missing{sfx}", "run": "run",
         "export": "export{sfx}", "study": "study"}

PROBE = ["--target", "return-sign:2", "--resamples", "10", "--no-chart"]  # a quick probe
# name -> (argv with {P} for the path, suffix of file-like kinds, the kinds accepted, what it may change)
CASES = {
    "precompute --output": (["precompute", "--output", "{P}", "--synthetic-bars", "300", "--quiet"], "",
                            {"empty", "missing"}, None),
    "precompute --output --overwrite": (["precompute", "--output", "{P}", "--synthetic-bars", "300", "--quiet",
                                         "--overwrite"], "", {"empty", "missing", "store"}, "store"),
    "precompute --output --append": (["precompute", "--output", "{P}", "--append", "new.parquet", "--quiet"], "",
                                     {"store"}, "store"),
    "precompute --input": (["precompute", "--input", "{P}", "--output", "out", "--quiet"], ".parquet", set(), None),
    "precompute --append FILE": (["precompute", "--output", "store", "--append", "{P}", "--quiet"], ".parquet",
                                 set(), None),
    "precompute --config": (["precompute", "--config", "{P}", "--output", "out", "--synthetic-bars", "300",
                             "--quiet"], ".json", set(), None),
    "verify STORE": (["verify", "{P}", "--quiet"], "", {"store"}, None),
    "verify --source": (["verify", "store", "--source", "{P}", "--quiet"], ".parquet", set(), None),
    "inspect STORE": (["inspect", "{P}"], "", {"store"}, None),
    "export STORE": (["export", "{P}", "--output", "out", "--quiet"], "", {"store"}, None),
    "export --output": (["export", "store", "--output", "{P}", "--quiet"], "", {"empty", "missing"}, None),
    "export --output --overwrite": (["export", "store", "--output", "{P}", "--quiet", "--overwrite"], "",
                                    {"empty", "missing", "export"}, None),
    "export --layout parquet --output": (["export", "store", "--layout", "parquet", "--output", "{P}"], ".parquet",
                                         {"missing"}, None),
    "export --layout parquet --output --overwrite": (["export", "store", "--layout", "parquet", "--output", "{P}",
                                                      "--overwrite"], ".parquet", {"missing", "export"}, None),
    "plot STORE": (["plot", "{P}", "--out", "chart.png"], "", {"store"}, None),
    "plot --source": (["plot", "store", "--source", "{P}", "--out", "chart.png"], ".parquet", set(), None),
    "plot --out": (["plot", "store", "--out", "{P}"], ".png", {"missing", "export"}, None),
    "train --store": (["--store", "{P}", "--run-dir", "newrun"], "", {"store"}, None),
    "train --run-dir": (["--store", "store", "--run-dir", "{P}"], "", {"empty", "missing"}, None),
    "train --run-dir --overwrite": (["--store", "store", "--run-dir", "{P}", "--overwrite"], "",
                                    {"empty", "missing", "run"}, None),
    "train --run-dir --resume": (["--store", "store", "--run-dir", "{P}", "--resume"], "", set(), None),
    "train --config": (["--config", "{P}", "--store", "store", "--run-dir", "newrun"], ".json", set(), None),
    "train plot RUN_DIR": (["plot", "{P}", "--out", "curves.png"], "", set(), None),
    "train plot --out": (["plot", "run", "--out", "{P}"], ".png", set(), None),
    "stream --store": (["stream", "--store", "{P}"], "", {"store"}, None),
    "stream --config": (["stream", "--config", "{P}"], ".json", set(), None),
    "stream --resume": (["stream", "--resume", "{P}"], "", set(), None),
    "stream --save": (["stream", "--store", "store", "--save", "{P}"], "", {"missing"}, None),
    # A sweep starts only in a new or empty folder, and continues only in a folder holding our sweep.json.
    "train sweep --study-dir": (["sweep", "--study-dir", "{P}", "--store", "store", "--grid", "lr=1e-3", "--device",
                                 "cpu", "--quiet"], "", {"empty", "missing"}, None),
    "train sweep --study-dir (continue)": (["sweep", "--study-dir", "{P}", "--quiet"], "", {"study"}, "study"),
    "train sweep --config": (["sweep", "--config", "{P}", "--study-dir", "newstudy"], ".json", set(), None),
    "train sweep-report STUDY_DIR": (["sweep-report", "{P}"], "", {"study"}, "study"),
    # Using a run: "done" is a finished run of the template store (none of the kinds is one, so --run accepts none
    # of them; tests/train/test_embed.py and test_probe.py run the accepted case). Only an embeddings file of ours
    # is ever replaced; probe.json goes into the run directory only.
    "train embed --run": (["embed", "--run", "{P}", "--output", "emb.parquet"], "", set(), None),
    "train embed --store": (["embed", "--run", "done", "--store", "{P}", "--output", "emb.parquet"], "", {"store"},
                            None),
    "train embed --output": (["embed", "--run", "done", "--output", "{P}"], ".parquet", {"missing"}, None),
    "train embed --output --overwrite": (["embed", "--run", "done", "--output", "{P}", "--overwrite"], ".parquet",
                                         {"missing"}, None),
    "train probe --run": (["probe", "--run", "{P}"] + PROBE, "", set(), None),
    "train probe --store": (["probe", "--run", "done", "--store", "{P}"] + PROBE, "", {"store"}, None),
    "train probe --source": (["probe", "--run", "done", "--source", "{P}"] + PROBE, ".parquet", set(), None),
}
USER_FILES = ["notes", "notes.parquet", "notes.png", "notes.json", "user/notes.txt", "run/notes.txt"]


# The text options that are not paths (every other text option of both parsers must have a case above).
NOT_PATHS = {"--split-fractions", "--split-dates", "--time-column", "--date-column", "--time-format", "--timezone",
             "--symbol-column", "--roll-column", "--rename", "--delimiter", "--columns", "--scheduler", "--symbol",
             "--start", "--end", "--features",
             # python -m train sweep: a grid axis, an objective, CUDA device indices, a worker's name, and the
             # study's database URL (an SQLite file's checks: tests/train/test_sweep.py)
             "--grid", "--objective", "--devices", "--worker", "--storage",
             # python -m train probe targets (train/targets.py refuses a bad one: tests/train/test_targets.py)
             "--probe", "--target"}
OPTUNA = importlib.util.find_spec("optuna") is not None


def test_every_path_option_has_a_case():
    """Taken from the parsers (tests/cli/test_option_grid.py): a new text option is a path with a case here, or
    named in NOT_PATHS."""
    from tests.cli.test_option_grid import numeric, value_actions

    missing = []
    for prog, action in value_actions():
        if numeric(action) or (action.option_strings and action.option_strings[0] in NOT_PATHS):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest.upper()
        if not any(case.startswith(f"{prog} {name}") for case in CASES):
            missing.append(f"{prog} {name}")
    assert missing == [], f"path options without a case: {missing}"


@pytest.fixture(scope="module")
def template(make_store, tmp_path_factory):
    """A store, new bars for it, an export of each layout and a chart, made once and copied into each world."""
    root = tmp_path_factory.mktemp("paths-template")
    bars = synthetic.generate(3600, 1, 6)
    make_store(bars.take(0, 3000, 0), root / "store", splits={"fractions": [0.6, 0.2, 0.2]})  # val, test > K + N
    write_parquet(root / "new.parquet", bars, 3000, None, symbols=False)
    assert main(["export", str(root / "store"), "--output", str(root / "export"), "--quiet"]) == 0
    assert main(["export", str(root / "store"), "--layout", "parquet", "--output", str(root / "export.parquet")]) == 0
    assert main(["plot", str(root / "store"), "--out", str(root / "export.png"), "--last", "50"]) == 0
    _make_study(root / "study", root / "store")
    if importlib.util.find_spec("torch") is not None:  # a finished run of the store, for embed and probe
        from tests.train.runs import tiny
        from train.loop import train

        train(root / "store", root / "done", tiny(epochs=1, hidden_size=8, max_train_windows=64, max_val_windows=32,
                                                  max_final_windows=32))
    return root


def _make_study(folder, store):
    """A sweep's study folder: one queued grid point on ``store`` (Optuna's journal where Optuna is installed;
    without it, the record alone, which is what makes a folder a study for every other command)."""
    from train.sweep_file import quick_grid

    spec = quick_grid(["lr=1e-3"], {"store": [str(store)], "device": "cpu", "epochs": 1})
    if OPTUNA:
        from train.sweep import Sweep

        Sweep.open(folder, spec)
    else:
        from gpu_features.fileio import write_json_atomic

        folder.mkdir()
        write_json_atomic(folder / "sweep.json", {**spec.record(), "name": "study", "storage": "journal"})


@pytest.fixture
def world(template, tmp_path, monkeypatch):
    for name in ("store", "export", "study", "done"):
        if (template / name).exists():
            shutil.copytree(template / name, tmp_path / name)
    for name in ("new.parquet", "export.parquet", "export.png"):
        shutil.copy(template / name, tmp_path / name)
    for name in ("user", "empty", "run"):
        (tmp_path / name).mkdir()
    for name in USER_FILES:
        (tmp_path / name).write_text(f"the user's {name}")
    (tmp_path / "run" / "run.json").write_text(json.dumps({"format": "jade-run", "version": 1, "created": "x"}))
    (tmp_path / "run" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(world: Path, with_store: bool, with_study: bool = True) -> dict:
    snap = {name: (world / name).read_bytes() for name in USER_FILES}
    if with_store:
        snap["store"] = sorted((p.name, p.read_bytes()) for p in (world / "store").iterdir())
    if with_study:
        snap["study"] = sorted((p.name, p.read_bytes()) for p in (world / "study").iterdir() if p.is_file())
    snap["/"] = sorted(os.listdir("/"))
    return snap


def _stub_training(monkeypatch):
    """Accepted training commands prepare the run (run directory, config, lock) but train no epoch."""
    from train import loop, report

    monkeypatch.setattr(loop.Run, "fit", lambda self, on_batch=None, on_epoch=None: False)
    monkeypatch.setattr(loop.Run, "finish", lambda self: {"val": {"mae": {"model": 0.5}}})  # a sweep's objective
    monkeypatch.setattr(report, "print_report", lambda *a, **kw: None)


CELLS = [(case, kind) for case in CASES for kind in KINDS]


@pytest.mark.parametrize("case, kind", CELLS, ids=[f"{c}={k}" for c, k in CELLS])
def test_path_kind_grid(case, kind, world, template, capsys, monkeypatch):
    from train import cli as train_cli

    argv, sfx, accepted, writes = CASES[case]
    path = KINDS[kind].format(sfx=sfx)
    argv = [a.replace("{P}", path) for a in argv]
    if "--engine" not in argv and argv[0] == "precompute":
        argv += ["--engine", STORE_ENGINE]
    trainer = case.startswith("train")
    if trainer and argv[0] not in ("plot", "sweep-report"):
        if argv[0] != "sweep":  # a sweep's cases say their own flags (a continued sweep takes no settings)
            argv += ["--device", "cpu", "--quiet"]
        _stub_training(monkeypatch)
    if case.startswith(("train embed", "train probe")) and importlib.util.find_spec("torch") is None:
        pytest.skip("embed and probe need torch (make test installs it)")
    if "sweep" in case and not OPTUNA:
        pytest.skip("sweeps need Optuna (pip install 'gpu-features[optuna]'), not installed here")
    if argv[0] == "stream":  # no bars on standard input: the stream opens, ends and saves
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
    protect_store = not (writes == "store" and kind == "store" and kind in accepted)
    protect_study = not (writes == "study" and kind == "study" and kind in accepted)
    before = _snapshot(world, protect_store, protect_study)
    try:
        code = (train_cli.main if trainer else main)(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    if kind in accepted:
        assert code == 0, (code, err)
    else:
        assert code in ((1, 2) if case.startswith("verify") else (2,)), (code, out, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(world, protect_store, protect_study) == before, "a user's file, the store, the study or / changed"
    if kind == "run" and kind in accepted:  # only the run's own files were replaced
        assert (world / "run" / "notes.txt").read_text() == "the user's run/notes.txt"
        assert json.loads((world / "run" / "config.json").read_text())["store"] == ["store"]
    if kind == "study" and kind in accepted:  # our own study: its record kept, its report written beside it
        assert (world / "study" / "sweep.json").read_bytes() == (template / "study" / "sweep.json").read_bytes()
        assert (world / "study" / "trials.csv").is_file()
