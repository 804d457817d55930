"""The distributed build (Dask): a dataset of part stores equals a single-process build bit for bit, per symbol.

One 2-worker LocalCluster (processes, not threads) serves the module; the files
are tiny so the cluster's start-up (a few seconds) dominates. Covers: planning,
exact global splits, every reader on a dataset, a failed task, a worker killed
mid-task, --append on a dataset, the CLI, the missing-Dask message, and that the
single-machine path imports nothing of Dask.
"""
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import splits as splits_mod, synthetic
from gpu_features.cli import main
from gpu_features.errors import BarsError, GpuFeaturesError, StoreError
from gpu_features.store import Dataset, append_dataset, open_store
from gpu_features.store.dataset import select_symbols
from gpu_features.verify import verify_store
from tests.harness import STORE_ENGINE
from tests.harness import write_parquet

distributed = pytest.importorskip("distributed", reason="Dask (extra 'distributed') is not installed; `make test` "
                                                        "installs it")
from gpu_features.distributed import _running_parts, build_dataset, plan_tasks  # noqa: E402  (needs Dask only to run tasks)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (one thread each), shared by the module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    """5 symbols of different lengths and time ranges in 3 files (2 + 2 + 1 symbols per file)."""
    folder = tmp_path_factory.mktemp("universe")
    paths, bars = synthetic.write_universe(folder / "in", n_symbols=5, bars_per_symbol=2500, symbols_per_file=2)
    return folder, paths, bars


@pytest.fixture(scope="module")
def single(make_store, universe):
    """One process, one file holding every bar of the universe."""
    folder, _, bars = universe
    return make_store(write_parquet(folder / "all.parquet", bars), folder / "single")


@pytest.fixture(scope="module")
def built(client, universe):
    folder, paths, _ = universe
    return build_dataset([str(folder / "in" / "*.parquet")], folder / "dataset", engine=STORE_ENGINE, client=client,
                         symbols_per_task=1)  # 5 tasks from 3 files


def per_symbol(store, name, key):
    return np.concatenate([store.array(key)[g.first: g.stop] for g in store.segments if g.name == name])


def assert_same_per_symbol(got, want, names=None):
    """Features (bits), validity, timestamps and end state of every symbol equal."""
    names = names or want.symbols
    assert sorted(got.symbols) == sorted(names)
    got_end, want_end = got.states()["end_state"], want.states()["end_state"]
    for name in names:
        a, b = per_symbol(got, name, "features"), per_symbol(want, name, "features")
        assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32)), name
        for key in ("valid", "timestamp"):
            assert np.array_equal(per_symbol(got, name, key), per_symbol(want, name, key)), (name, key)
        assert np.array_equal(got_end[got.symbols.index(name)].view(np.uint64),
                              want_end[want.symbols.index(name)].view(np.uint64)), name


# --- planning and splits (no cluster) --------------------------------------------------------


def test_plan_keeps_each_symbol_in_one_task_and_cuts_big_groups():
    scans = [{"path": "c", "symbols": ["C"]}, {"path": "a", "symbols": ["A", "B"]}, {"path": "x", "symbols": ["D"]},
             {"path": "b", "symbols": ["B", "D"]}]
    assert plan_tasks(scans, bars_per_task=0) == [{"files": ["a", "x", "b"], "symbols": ["A", "B", "D"]},
                                                  {"files": ["c"], "symbols": ["C"]}]
    assert plan_tasks(scans, symbols_per_task=2) == [{"files": ["a", "x", "b"], "symbols": ["A", "B"]},
                                                     {"files": ["c"], "symbols": ["C"]},
                                                     {"files": ["a", "x", "b"], "symbols": ["D"]}]
    # Small groups are packed, in symbol order, while a task holds at most bars_per_task rows; cut groups are not.
    sized = [{"path": p, "symbols": [p.upper()], "rows": r} for p, r in (("e", 5), ("a", 4), ("b", 4), ("c", 9), ("d", 1))]
    assert plan_tasks(sized, bars_per_task=9) == [{"files": ["a", "b"], "symbols": ["A", "B"]},
                                                  {"files": ["c"], "symbols": ["C"]},
                                                  {"files": ["e", "d"], "symbols": ["D", "E"]}]
    assert len(plan_tasks(sized)) == 1 and len(plan_tasks(sized, bars_per_task=0)) == 5
    # Files without a symbol column are read together in one task (each a series named after its file).
    assert plan_tasks([{"path": "d", "symbols": None}, {"path": "e", "symbols": None}]) == \
        [{"files": ["d", "e"], "symbols": None}]
    with pytest.raises(GpuFeaturesError, match="c has no symbol column but a has one"):
        plan_tasks([{"path": "a", "symbols": ["A"]}, {"path": "c", "symbols": None}])


def test_split_boundaries_from_merged_counts_equal_those_from_all_timestamps():
    rng = np.random.default_rng(3)
    ts = rng.integers(0, 500, size=2_001).astype(np.int64)  # many repeated timestamps, like symbols sharing minutes
    pieces = np.array_split(ts, 7)
    merged = np.unique(pieces[0], return_counts=True)
    for p in pieces[1:]:
        merged = splits_mod.merge_counted(merged, np.unique(p, return_counts=True))
    for fr in ((0.9, 0.05, 0.05), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)):
        spec = {"fractions": fr}
        assert splits_mod.resolve_counted(spec, *merged) == splits_mod.resolve(spec, ts)
        want = np.sort(ts)[int(np.floor(fr[0] * len(ts) + 1e-9))] if fr[0] < 1 else ts.max() + 1
        assert splits_mod.resolve(spec, ts)["boundaries"][1][0] == want


# --- the build --------------------------------------------------------------------------------


def test_dataset_equals_the_single_process_build_per_symbol(built, single):
    assert isinstance(built, Dataset)
    assert len(built.parts) == 5 and len(built.record["build"]["inputs"]) == 3  # one file fed two tasks
    assert_same_per_symbol(built, single)
    assert built.splits == single.splits  # same global boundaries (fractions of all bars), same counts
    for name in single.symbols:
        assert built.stats["per_symbol"][name] == single.stats["per_symbol"][name]
    for split in ("train", "val", "test"):
        assert len(built.usable_window_starts(split)) == len(single.usable_window_starts(split))
    for key in ("bars", "valid_bars", "valid_fraction", "swings"):
        assert built.stats[key] == single.stats[key]
    for name, want in single.stats["features"].items():
        for k, v in want.items():
            assert built.stats["features"][name][k] == pytest.approx(v, rel=1e-12, abs=1e-15), (name, k)


def test_every_reader_takes_a_dataset(built, single, tmp_path):
    from gpu_features.inspection import inspect_store
    from gpu_features.plot import chart_data
    from gpu_features.seed import export_seed, plan

    report = verify_store(built.path, sample_bars=10**9)
    assert report.ok, report.checks
    assert report.bars_recomputed == built.n_bars  # every checkpoint interval of every part
    checks = {c.name: c.detail for c in report.checks}
    assert "10 file(s)" in checks["checksums"]  # 5 parts x (1 shard + state file)
    ins = inspect_store(built.path)
    assert [p["symbol"] for p in ins["per_symbol"]] == built.symbols
    assert ins["summary"]["valid_bars"] == single.stats["valid_bars"]
    assert plan(built)["n_windows"] == plan(single)["n_windows"]
    table = built.to_arrow()  # export --layout parquet
    assert table.num_rows == built.n_bars and table.column("symbol").to_pylist()[-1] == built.symbols[-1]
    meta = export_seed(built, tmp_path / "seed", ("val",))
    assert meta["n_windows"] == len(single.usable_window_starts("val"))
    a = chart_data(built.path, symbol="U0003", last=200)
    b = chart_data(single.path, symbol="U0003", last=200)
    shift = int(a.bars[0] - b.bars[0])  # the symbol's bars sit elsewhere in the dataset than in the single store
    assert a.swings and [(s.kind, s.extreme_bar - shift, s.extreme_price, s.confirm_bar - shift) for s in a.swings] \
        == [(s.kind, s.extreme_bar, s.extreme_price, s.confirm_bar) for s in b.swings]


def test_windows_and_training_see_one_store(built, single):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from gpu_features.seed import create_fast_dataloaders
    from gpu_features.windows import WindowSource

    from train import cli as train_cli

    got, want = WindowSource.from_store(built.path, "cpu"), WindowSource.from_store(single.path, "cpu")
    for split in ("train", "val", "test"):
        assert np.array_equal(got.starts(split), want.starts(split) + 0) == (built.symbols == single.symbols)
        assert len(got.starts(split)) == len(want.starts(split))
    # The old pipeline's entry point takes a dataset as a store (not as a seed-layout export).
    loaders = create_fast_dataloaders(built.path, batch_size=16, seed=0, device="cpu")
    assert [ld.n_windows for ld in loaders] == [len(want.starts(split)) for split in ("train", "val", "test")]
    # A dataset is one store to the trainer: a tiny run on it finishes and reports.
    run = built.path.parent / "run"
    assert train_cli.main(["--store", str(built.path), "--run-dir", str(run), "--device", "cpu", "--quiet",
                           "--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--max-train-windows", "64",
                           "--max-val-windows", "32", "--max-final-windows", "32"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["val"]["windows"] == 32 and np.isfinite(summary["val"]["model"]).all()


def test_a_symbol_spread_over_files_is_one_task_equal_to_reading_every_file(client, tmp_path):
    paths, _ = synthetic.write_universe(tmp_path / "in" / "2019", n_symbols=3, bars_per_symbol=1500,
                                        files_per_symbol=3)
    ds = build_dataset([str(tmp_path / "in" / "**" / "*.parquet")], tmp_path / "ds", engine=STORE_ENGINE,
                       client=client, bars_per_task=0)  # ** recurses; a task per symbol group
    assert len(paths) == 9 and len(ds.parts) == 3
    assert [len(p.sources[0]["files"]) for p in ds.parts] == [3, 3, 3]  # each symbol's three files, one task
    single = gf.precompute(paths, tmp_path / "single", engine=STORE_ENGINE)  # one process reads all nine
    assert_same_per_symbol(ds, single)
    assert ds.splits == single.splits
    assert verify_store(ds.path).ok


def test_a_running_scheduler_is_joined_by_address(client, universe, single, tmp_path):
    folder, paths, _ = universe
    ds = build_dataset(paths, tmp_path / "ds", engine=STORE_ENGINE, scheduler=client.scheduler.address)
    assert ds.record["build"]["cluster"] == {"scheduler": client.scheduler.address, "workers": 2}
    assert_same_per_symbol(ds, single)
    with pytest.raises(GpuFeaturesError, match="give one of them"):
        build_dataset(paths, tmp_path / "x", scheduler=client.scheduler.address, workers=2)


def test_csv_inputs_are_scanned_by_the_reader(client, universe, single, tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder, paths, _ = universe
    csvs = []
    for p in paths:
        csvs.append(tmp_path / (p.stem + ".csv"))
        pcsv.write_csv(pq.read_table(p), csvs[-1])
    ds = build_dataset(csvs, tmp_path / "ds", engine=STORE_ENGINE, client=client, bars_per_task=0)
    assert [p.symbols for p in ds.parts] == [["U0000", "U0001"], ["U0002", "U0003"], ["U0004"]]
    assert_same_per_symbol(ds, single)


def test_many_small_symbols_are_packed_into_fewer_parts(client, tmp_path):
    paths, bars = synthetic.write_universe(tmp_path / "in", n_symbols=12, bars_per_symbol=300)
    ds = build_dataset(paths, tmp_path / "ds", engine=STORE_ENGINE, client=client)
    used = ds.record["build"]["bars_per_task_used"]
    assert used == -(-bars.n // 4)  # all rows over twice the 2 worker threads, below the 1M default
    assert 4 <= len(ds.parts) < 12
    sizes = {name: int(c) for name, c in zip(bars.segment_names, np.diff(bars.segment_bounds()))}
    for part in ds.parts:  # whole symbols, in name order, each part within the packing limit (or one symbol)
        assert sum(sizes[name] for name in part.symbols) <= used or len(part.symbols) == 1
    assert [name for p in ds.parts for name in p.symbols] == sorted(bars.segment_names)
    single = gf.precompute(write_parquet(tmp_path / "all.parquet", bars), tmp_path / "single", engine=STORE_ENGINE)
    assert_same_per_symbol(ds, single)
    assert ds.splits == single.splits


def test_split_dates_are_given_to_every_part(client, universe, tmp_path):
    folder, paths, bars = universe
    dates = ["2019-01-08T06:00", "2019-01-08T09:00"]
    seen = []
    ds = build_dataset(paths, tmp_path / "ds", engine=STORE_ENGINE, client=client, splits={"dates": dates},
                       progress=lambda *a: seen.append(a), bars_per_task=0)
    tasks = [a for a in seen if a[0] == "tasks"]
    assert ("scan", 3, 3) in seen and tasks[0] == ("tasks", 0, 3) and tasks[-1] == ("tasks", 3, 3)
    want = gf.precompute(bars, tmp_path / "single", engine=STORE_ENGINE, splits={"dates": dates})
    assert len(ds.parts) == 3 and ds.splits == want.splits
    assert all(p.splits["boundaries"] == want.splits["boundaries"] for p in ds.parts)
    assert_same_per_symbol(ds, want)


def test_a_failed_task_fails_the_build_and_keeps_the_previous_dataset(client, universe, tmp_path):
    folder, paths, bars = universe
    inputs = tmp_path / "in"
    shutil.copytree(folder / "in", inputs)
    out = tmp_path / "ds"
    old = build_dataset([inputs], out, engine=STORE_ENGINE, client=client)
    before = (out / "dataset.json").read_bytes()
    bad = select_symbols(bars, ["U0000", "U0001"])
    bad.close[bad.offsets[1] + 100] = -1.0  # a bad price of U0001: its task must refuse
    write_parquet(inputs / "U0000-000.parquet", bad)
    with pytest.raises(BarsError, match=r"U0000-000\.parquet.*1 bar\(s\) break the rule 'price missing"):
        build_dataset([inputs], out, engine=STORE_ENGINE, client=client, overwrite=True, symbols_per_task=1)
    # The build waited for its running tasks before removing its directory (the check it polls works).
    assert set(client.run(_running_parts, "gpu-features-part-").values()) == {0}
    assert (out / "dataset.json").read_bytes() == before
    assert_same_per_symbol(open_store(out, checksums=True), old)
    # Nothing left beside it but its writer lock (a flock file, kept like every store's).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.lock", "ds", "in"]


class KillMidWrite(distributed.WorkerPlugin):
    """In every worker process, the first part to reach its state file (shards written, manifest not)
    kills its worker with SIGKILL: a task dies mid-write, once (a marker file says it happened)."""

    name = "kill-mid-write"

    def __init__(self, marker: str):
        self.marker = marker

    def setup(self, worker):
        from gpu_features.store import writer

        self.original = original = writer.write_state
        marker = self.marker

        def write_state(*args, **kwargs):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        writer.write_state = write_state

    def teardown(self, worker):
        from gpu_features.store import writer

        writer.write_state = self.original


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_exact(client, universe, single, tmp_path):
    import cloudpickle

    folder, paths, _ = universe
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    client.register_plugin(KillMidWrite(str(marker)))
    try:
        ds = build_dataset(paths, tmp_path / "ds", engine=STORE_ENGINE, client=client)
    finally:
        client.unregister_worker_plugin(KillMidWrite.name)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists()  # a worker did die while writing a part
    assert_same_per_symbol(ds, single)
    assert ds.splits == single.splits
    assert not [p for p in ds.path.iterdir() if p.name.startswith(".")]  # no leftover of the killed attempt
    client.wait_for_workers(2, timeout=60)


def test_append_to_a_dataset_goes_to_the_parts_of_its_symbols(client, tmp_path):
    _, full = synthetic.write_universe(tmp_path / "gen", n_symbols=6, bars_per_symbol=1500)
    cut = 1200
    old = tmp_path / "old"
    old.mkdir()
    for names in (["U0000", "U0001"], ["U0002", "U0003"], ["U0004"]):
        write_parquet(old / f"{names[0]}.parquet", select_symbols(full, names), 0, cut)
    ds = build_dataset([old], tmp_path / "ds", engine=STORE_ENGINE, client=client, bars_per_task=0)
    before = {p.path.name: p.symbols for p in ds.parts}
    new = write_parquet(tmp_path / "new.parquet", select_symbols(full, ["U0000", "U0002", "U0005"]), cut, None)
    got = append_dataset(ds.path, new, engine=STORE_ENGINE)
    assert got.splits["boundaries"] == ds.splits["boundaries"]
    assert len(got.parts) == 4 and got.parts[-1].symbols == ["U0005"]
    assert {p.path.name: p.symbols for p in got.parts[:3]} != before  # the two touched parts were replaced
    assert sorted(p.name for p in got.path.iterdir()) == sorted(["dataset.json"] + [p.path.name for p in got.parts])
    bounds = full.segment_bounds()
    for s, name in enumerate(full.segment_names):
        a, b = int(bounds[s]), int(bounds[s + 1])
        lo, hi = {"U0000": (a, b), "U0002": (a, b), "U0005": (a + cut, b)}.get(name, (a, a + cut))
        feats, valid = gf.compute_features(full.open[lo:hi], full.high[lo:hi], full.low[lo:hi], full.close[lo:hi],
                                           engine="reference")
        assert np.array_equal(per_symbol(got, name, "features").view(np.uint32), feats.view(np.uint32)), name
        assert np.array_equal(per_symbol(got, name, "valid"), valid), name
    assert verify_store(got.path).ok
    record = (got.path / "dataset.json").read_bytes()
    with pytest.raises(StoreError, match="at or before its last stored bar"):
        append_dataset(got.path, new, engine=STORE_ENGINE)  # the same bars again: refused, nothing changed
    assert (got.path / "dataset.json").read_bytes() == record
    assert sorted(p.name for p in got.path.iterdir()) == sorted(["dataset.json"] + [p.path.name for p in got.parts])


# --- command line -----------------------------------------------------------------------------


def test_cli_builds_verifies_and_appends_a_dataset(universe, tmp_path, capsys):
    folder, _, bars = universe
    out = tmp_path / "ds"
    args = ["precompute", "--input", str(folder / "in" / "*.parquet"), "--output", str(out), "--distributed",
            "--workers", "2", "--engine", STORE_ENGINE, "--quiet"]
    assert main(args) == 0
    said = capsys.readouterr().out
    # 12,870 rows in all on 2 worker threads: no task is packed beyond 12,870 / 4 rows, so a task per file
    assert "wrote dataset" in said and "3 part(s)" in said and "3 input file(s) in 3 task(s) on LocalCluster" in said
    assert main(["verify", str(out), "--quiet"]) == 0
    new = write_parquet(tmp_path / "new.parquet", dataclasses.replace(select_symbols(bars, ["U0001"]), segment_names=("NEW",)))
    assert main(["precompute", "--append", str(new), "--output", str(out), "--engine", STORE_ENGINE, "--quiet"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "appended to" in said
    # the summary gives this append's own engine and timings (summed over the parts it wrote), not the build's
    run = open_store(out).record["build"]["appends"][-1]
    assert run["engine"]["name"] == STORE_ENGINE and run["engine"]["chunks"] >= 1
    phases = {k: v for k, v in run["timings"].items() if k != "total_s"}
    assert abs(sum(phases.values()) - run["timings"]["total_s"]) < 1e-6
    assert f"total {run['timings']['total_s']:.2f} s" in said
    assert open_store(out).parts[-1].symbols == ["NEW"] and len(open_store(out).parts) == 4
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["precompute", "--input", "x.parquet", "--workers", "2", "--output", str(tmp_path / "y")]) == 2
    assert "belong to --distributed" in capsys.readouterr().err


def test_cli_a_bad_bar_is_one_line_on_the_terminal_and_exit_2(universe, tmp_path, capfd):
    _, _, bars = universe
    bad = select_symbols(bars, ["U0001"])
    bad.close[bad.offsets[0] + 10] = -1.0
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "bad.parquet", bad)
    write_parquet(tmp_path / "in" / "good.parquet", select_symbols(bars, ["U0002"]))
    code = main(["precompute", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "ds"), "--distributed",
                 "--workers", "2", "--quiet", "--engine", STORE_ENGINE])
    err = capfd.readouterr().err  # the workers' stderr too (they inherit the file descriptor)
    assert code == 2 and not (tmp_path / "ds").exists()
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines()
                                                                  if line.startswith("error: ")]
    assert "bad.parquet: 1 bar(s) break the rule 'price missing" in " ".join(err.split())
    assert "Traceback" not in err and "Compute Failed" not in err


def test_missing_dask_is_one_sentence_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    code = main(["precompute", "--input", str(tmp_path / "*.parquet"), "--output", str(tmp_path / "ds"),
                 "--distributed"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--distributed needs Dask" in err and "pip install 'gpu-features[distributed]'" in err


def test_the_single_machine_path_imports_nothing_of_dask(built, tmp_path):
    code = f"""
import sys
from gpu_features.cli import main
from gpu_features.store import open_store
assert main(["precompute", "--synthetic-bars", "3000", "--output", {str(tmp_path / 's')!r}, "--quiet",
             "--engine", "reference"]) == 0
assert main(["verify", {str(built.path)!r}, "--quiet", "--sample-bars", "10"]) == 0
assert main(["inspect", {str(built.path)!r}]) == 0
open_store({str(built.path)!r}).states()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "dask_cuda"))
assert not loaded, loaded
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_bars_without_a_symbol_column_are_refused_by_a_dataset_of_several_symbols(built, universe, tmp_path):
    _, _, bars = universe
    before = (built.path / "dataset.json").read_bytes()
    new = write_parquet(tmp_path / "x.parquet", bars.take(0, 100, 0), symbols=False)
    with pytest.raises(StoreError, match=r"x.parquet has no symbol column but the dataset holds 5 symbols \(U0000, "):
        append_dataset(built.path, new, engine=STORE_ENGINE)
    assert (built.path / "dataset.json").read_bytes() == before


def test_a_damaged_dataset_is_refused_in_one_sentence(built, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(built.path, ds)
    part = built.parts[1].path.name
    manifest = ds / part / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    with pytest.raises(StoreError, match=rf"the manifest of part {part} has \d+ bytes but the manifest says"):
        open_store(ds)
    shutil.rmtree(ds / part)
    with pytest.raises(StoreError, match=rf"part {part} has no manifest.json; the dataset is incomplete"):
        open_store(ds)
    record = json.loads((ds / "dataset.json").read_text())
    record["parts"][2]["symbols"].append(record["parts"][0]["symbols"][0])
    (ds / "dataset.json").write_text(json.dumps(record))
    with pytest.raises(StoreError, match="must live in one part"):
        open_store(ds)
    record["version"] = 99
    (ds / "dataset.json").write_text(json.dumps(record))
    with pytest.raises(StoreError, match="dataset version 99 is unknown"):
        open_store(ds)


def test_a_crafted_dataset_record_is_refused_like_a_crafted_manifest(tmp_path):
    """dataset.json is distrusted as a store's manifest is: too deep or not JSON is one sentence, no RecursionError."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "dataset.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StoreError, match="JSON nested too deeply to be a dataset record .* rebuild the dataset"):
        open_store(ds)
    (ds / "dataset.json").write_bytes(b"\xff{")
    with pytest.raises(StoreError, match="not valid JSON .* rebuild the dataset"):
        open_store(ds)


def test_a_parquet_scan_keys_series_as_the_reader_does(tmp_path):
    """``ticker`` keys series in a Polygon file only; in a generic file the reader ignores it, and so must the scan."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_features.distributed import scan_file

    n = 10
    t = 1_600_000_000_000_000_000 + np.arange(2 * n) * 60_000_000_000
    prices = {"open": np.full(2 * n, 100.0), "high": np.full(2 * n, 101.0), "low": np.full(2 * n, 99.0),
              "close": np.full(2 * n, 100.5)}
    tickers = ["AAA"] * n + ["BBB"] * n
    generic, polygon = tmp_path / "generic.parquet", tmp_path / "polygon.parquet"
    pq.write_table(pa.table({"timestamp": pa.array(t, pa.timestamp("ns", tz="UTC")), "ticker": tickers, **prices}),
                   generic)
    pq.write_table(pa.table({"ticker": tickers, "window_start": t, **prices}), polygon)
    for path, want in ((generic, None), (polygon, ["AAA", "BBB"])):
        bars = gf.read_bars(path)
        assert (sorted(set(bars.segment_names)) if bars.ingest["symbol_column"] else None) == want
        assert scan_file(str(path)) == {"path": str(path), "symbols": want, "rows": 2 * n}


def test_a_dataset_record_that_disagrees_with_its_parts_is_named_in_the_refusal(built, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(built.path, ds)
    good = json.loads((ds / "dataset.json").read_text())
    record = json.loads(json.dumps(good))
    record["parts"][0]["n_bars"] += 1
    (ds / "dataset.json").write_text(json.dumps(record))
    part = record["parts"][0]["dir"]
    with pytest.raises(StoreError, match=rf"^{re.escape(str(ds / 'dataset.json'))}: part {part} holds \d+ bars of .*"
                                         r"but the dataset lists \d+ bars .*; rebuild the dataset\.$"):
        open_store(ds)
    record = json.loads(json.dumps(good))
    record["config"]["no_such_key"] = 1
    (ds / "dataset.json").write_text(json.dumps(record))
    with pytest.raises(StoreError, match=rf"^{re.escape(str(ds / 'dataset.json'))}: bad feature config \(.*no_such_key"
                                         r".*\); rebuild the dataset\.$"):
        open_store(ds)


def test_a_dataset_append_counts_the_overlapping_bars_it_skips_on_screen(client, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, _ = synthetic.write_universe(tmp_path / "in", 2, 2000, files_per_symbol=2)
    ds = build_dataset([p for p in paths if p.name.endswith("-000.parquet")], tmp_path / "ds", engine=STORE_ENGINE,
                       client=client)
    first, second = (pq.read_table(tmp_path / "in" / f"U0000-00{k}.parquet") for k in (0, 1))
    again = tmp_path / "again.parquet"
    pq.write_table(pa.concat_tables([first.slice(first.num_rows - 50), second]), again)  # 50 bars it already has
    assert main(["precompute", "--append", str(again), "--output", str(ds.path), "--engine", STORE_ENGINE,
                 "--on-overlap", "skip", "--quiet"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"({second.num_rows:,} new bars, 50 overlapping skipped)" in said
    got = open_store(ds.path)
    assert got.n_bars == ds.n_bars + second.num_rows
    assert got.record["build"]["appends"][-1]["skipped_overlap"] == 50
