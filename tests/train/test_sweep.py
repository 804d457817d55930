"""Sweeps end to end on a tiny store: a grid, its report, standalone reproduction, SIGKILL and resume,
concurrent workers, pruning, refusals. Every trial trains a 2x8 BiLSTM for a fraction of a second."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="sweeps need Optuna (pip install 'gpu-features[optuna]'); "
                                              "not installed here (the GPU machine has none)")
torch = pytest.importorskip("torch")

from gpu_features import synthetic  # noqa: E402
from train import cli  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.loop import TIMING_FIELDS  # noqa: E402
from train.sweep import Sweep, plan_workers  # noqa: E402
from train.sweep_file import quick_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--epochs", "2", "--batch-size", "32", "--hidden-size", "8", "--max-train-windows", "128",
        "--max-val-windows", "64", "--max-final-windows", "64"]
GRID = ["--grid", "lr=1e-3,3e-3", "--grid", "dropout=0.0,0.2"]
POINTS = [(1e-3, 0.0), (1e-3, 0.2), (3e-3, 0.0), (3e-3, 0.2)]  # file order: the first axis varies slowest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every sweep here runs its trials with one torch thread (--threads-per-job 1); so do the standalone runs
    that must reproduce them (on a CPU the float sums depend on the number of threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    return make_store(synthetic.generate(6_000, 1, 5), tmp_path_factory.mktemp("sweep") / "s")


def _args(store, study_dir, *extra):
    return ["sweep", "--study-dir", str(study_dir), "--store", str(store.path), *TINY, *GRID, "--threads-per-job",
            "1", *extra]


def _command(args, **env):
    return [sys.executable, "-m", "train", *args], {**os.environ, "PYTHONPATH": str(ROOT), **env}


def _trials(study_dir, storage=None):
    return Sweep.open(study_dir, None, storage, create=False).study.get_trials()


def _values(study_dir) -> dict:
    return {(t.params["lr"], t.params["dropout"]): t.value for t in _trials(study_dir)}


def _untimed(run_dir):
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


@pytest.fixture(scope="module")
def grid_sweep(store, tmp_path_factory):
    """The quick 2x2 grid, run by one worker in this process, uninterrupted."""
    study_dir = tmp_path_factory.mktemp("grid") / "study"
    assert cli.main(_args(store, study_dir)) == 0
    return study_dir


def test_a_2x2_grid_finishes_exactly_four_distinct_trials_in_file_order(grid_sweep):
    trials = _trials(grid_sweep)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert [(t.params["lr"], t.params["dropout"]) for t in trials] == POINTS
    for t in trials:
        run_dir = grid_sweep / f"trial-{t.number:04d}"
        config = json.loads((run_dir / "config.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        assert (config["lr"], config["dropout"], config["epochs"], config["hidden_size"]) == (*POINTS[t.number], 2, 8)
        assert t.value == summary["val"]["mae"]["model"]  # the objective is the run's own final val MAE
        assert t.user_attrs["epochs_run"] == 2 and t.user_attrs["segments"] == 1 and t.user_attrs["threads"] == 1
        assert sorted(t.intermediate_values) == [1, 2]
    assert len({t.value for t in trials}) == 4


def test_a_trials_objective_equals_the_standalone_run_of_its_config_json(grid_sweep, tmp_path):
    trial = _trials(grid_sweep)[3]
    config = grid_sweep / "trial-0003" / "config.json"
    assert cli.main(["--config", str(config), "--run-dir", str(tmp_path / "again"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["val"]["mae"]["model"] == trial.value
    assert _untimed(tmp_path / "again") == _untimed(grid_sweep / "trial-0003")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == json.loads(config.read_text())


def test_the_report_prints_the_trials_and_writes_csv_best_json_and_a_png(grid_sweep, capsys):
    assert cli.main(["sweep-report", str(grid_sweep)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    trials = _trials(grid_sweep)
    best = min(trials, key=lambda t: t.value)
    for text in ("trial", "lr", "dropout", "val_mae", "epochs", "state", "complete", f"best: trial {best.number}",
                 "best.json", "trials.csv", "sweep.png"):
        assert text in out
    with open(grid_sweep / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["objective"]) for r in rows] == [t.value for t in trials]
    assert [(float(r["lr"]), float(r["dropout"])) for r in rows] == POINTS
    assert {r["state"] for r in rows} == {"COMPLETE"} and {r["epochs"] for r in rows} == {"2"}
    best_json = json.loads((grid_sweep / "best.json").read_text())
    assert best_json == json.loads((grid_sweep / f"trial-{best.number:04d}" / "config.json").read_text())
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    height, width = mpimg.imread(grid_sweep / "sweep.png").shape[:2]
    assert (width, height) == (1260, 320)  # lr, dropout and the history: one row of three panels


def test_without_matplotlib_the_report_writes_the_rest_and_says_so(grid_sweep, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (grid_sweep / "trials.csv").unlink()
    assert cli.main(["sweep-report", str(grid_sweep)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no sweep.png: the sweep's plot needs matplotlib, which is not installed; install it with pip install " \
           "'gpu-features[plot]'" in out
    assert (grid_sweep / "trials.csv").is_file() and (grid_sweep / "best.json").is_file()


def test_running_a_finished_sweep_again_runs_nothing_and_other_settings_are_refused(grid_sweep, store, capsys):
    before = {t.number: t.value for t in _trials(grid_sweep)}
    assert cli.main(_args(store, grid_sweep)) == 0
    assert "4 finished" in capsys.readouterr().out
    after = _trials(grid_sweep)
    assert {t.number: t.value for t in after} == before and all(t.user_attrs["segments"] == 1 for t in after)
    changed = _args(store, grid_sweep)
    changed[changed.index("lr=1e-3,3e-3")] = "lr=1e-3,1e-2"
    assert cli.main(changed) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a sweep with other settings (differs in search.lr)" in err
    assert cli.main(["sweep", "--study-dir", str(grid_sweep), "--epochs", "3"]) == 2
    assert "give no settings (they are in its sweep.json)" in " ".join(capsys.readouterr().err.split())
    # no settings at all: continue (here: finish) the sweep the folder holds
    assert cli.main(["sweep", "--study-dir", str(grid_sweep), "--quiet"]) == 0
    assert len(_trials(grid_sweep)) == 4


def test_a_sweep_killed_mid_trial_resumes_that_trial_and_finishes_the_grid(store, tmp_path, grid_sweep):
    study_dir = tmp_path / "study"
    cmd, env = _command(_args(store, study_dir), GPU_FEATURES_FAULT="sweep.after_epoch")
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr  # SIGKILL right after trial 0's first epoch
    (left,) = _trials(study_dir)[:1]
    assert left.state.name == "RUNNING" and sorted(left.intermediate_values) == [1]
    assert json.loads((study_dir / "trial-0000" / "checkpoint.json").read_text())["epoch"] == 1
    assert cli.main(_args(store, study_dir)) == 0  # the same command again
    trials = _trials(study_dir)
    assert len(trials) == 4 and [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert [(t.params["lr"], t.params["dropout"]) for t in trials] == POINTS
    assert trials[0].user_attrs["segments"] == 2 and all(t.user_attrs["segments"] == 1 for t in trials[1:])
    assert len(_untimed(study_dir / "trial-0000")) == 2
    # resumed from its checkpoint exactly: every objective equals the uninterrupted sweep's
    assert _values(study_dir) == _values(grid_sweep)


def test_two_sweep_commands_share_one_study_without_running_any_trial_twice(store, tmp_path, grid_sweep):
    """One command with --jobs 2 and a second one started beside it: three worker processes, one journal."""
    study_dir = tmp_path / "study"
    first = _popen(_args(store, study_dir, "--jobs", "2"))
    second = _popen(_args(store, study_dir))
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    trials = _trials(study_dir)
    assert len(trials) == 4 and [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert sorted((t.params["lr"], t.params["dropout"]) for t in trials) == POINTS
    assert all(t.user_attrs["segments"] == 1 and t.user_attrs["threads"] == 1 for t in trials)
    assert sorted(p.name for p in study_dir.glob("trial-*")) == [f"trial-{n:04d}" for n in range(4)]
    assert _values(study_dir) == _values(grid_sweep)  # the same numbers whichever process ran a trial


def _popen(args):
    cmd, env = _command(args)
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_pruned_trial_stops_at_an_epoch_is_recorded_as_pruned_and_matches_its_standalone_run(
        store, tmp_path, capsys):
    sweep_file = tmp_path / "prune.toml"
    sweep_file.write_text(f"""
[run]
store = "{store.path}"
device = "cpu"
epochs = 3
batch_size = 32
hidden_size = 8
max_train_windows = 256
max_val_windows = 64
max_final_windows = 64

[search]
lr = [3e-3, 1e-7]

[study]
pruner = {{ kind = "median", startup_trials = 1, warmup_epochs = 0 }}
""")
    study_dir, url = tmp_path / "study", f"sqlite:///{tmp_path / 'study.db'}"
    args = ["sweep", "--config", str(sweep_file), "--study-dir", str(study_dir), "--threads-per-job", "1"]
    assert cli.main([*args, "--storage", url]) == 0
    good, slow = _trials(study_dir, url)
    assert good.state.name == "COMPLETE" and good.user_attrs["epochs_run"] == 3
    # lr 1e-7 barely moves: after epoch 1 it is worse than the median of the finished trials there
    assert slow.state.name == "PRUNED" and slow.intermediate_values[1] > good.intermediate_values[1]
    assert slow.user_attrs["epochs_run"] == 1 and sorted(slow.intermediate_values) == [1]
    pruned_dir = study_dir / "trial-0001"
    assert not (pruned_dir / "summary.json").exists() and len(_untimed(pruned_dir)) == 1
    # a pruned trial simply stopped: its epoch is the first epoch of the same run trained in full
    assert cli.main(["--config", str(pruned_dir / "config.json"), "--run-dir", str(tmp_path / "full"), "--quiet"]) == 0
    assert _untimed(tmp_path / "full")[:1] == _untimed(pruned_dir)
    capsys.readouterr()
    assert cli.main(["sweep-report", str(study_dir)]) == 2
    assert f"study lives in {url}, not journal; pass --storage" in " ".join(capsys.readouterr().err.split())
    assert cli.main(["sweep-report", str(study_dir), "--storage", url]) == 0
    with open(study_dir / "trials.csv") as f:
        assert [r["state"] for r in csv.DictReader(f)] == ["COMPLETE", "PRUNED"]


def test_a_claim_skips_trials_whose_worker_lives_and_takes_over_a_dead_workers_trial(store, tmp_path):
    from train.sweep import trial_name, try_lock

    spec = quick_grid(["lr=1e-3,3e-3", "dropout=0.0,0.2"], {"device": "cpu", "store": [str(store.path)]})
    sweep = Sweep.open(tmp_path / "study", spec)
    assert [t.state.name for t in sweep.study.get_trials()] == ["WAITING"] * 4  # the whole grid, queued once
    live = sweep.claim()
    assert (live.trial.number, live.resumed, live.trial.params) == (0, False, {"lr": 1e-3, "dropout": 0.0})
    # a worker killed inside ask(): trial 1 popped from the queue, RUNNING, its parameters not yet set
    dead = sweep.study.ask()
    assert dead.number == 1 and dead.params == {}
    took = sweep.claim()
    assert (took.trial.number, took.resumed, took.trial.params) == (1, True, {"lr": 1e-3, "dropout": 0.2})
    assert try_lock(tmp_path / "study" / trial_name(1)) is None  # held by the claim until the trial ends
    took.lock.release()
    again = Sweep.open(tmp_path / "study").claim()  # another worker: trial 0's lock is held, trial 1's is free
    assert (again.trial.number, again.resumed) == (1, True)
    for c in (again, live):
        c.lock.release()


TINY_RUN = {"device": "cpu", "epochs": 1, "batch_size": 32, "hidden_size": 8, "max_train_windows": 128,
            "max_val_windows": 64, "max_final_windows": 64}


def _free(path) -> bool:
    """Whether another holder could take the lock file ``path`` now (a second FileLock is a second flock, which
    waits for the first even in this process)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def test_a_trial_takes_its_run_directorys_own_lock_inside_its_claim_and_releases_it_before(store, tmp_path,
                                                                                       monkeypatch):
    """The claim (.trial-NNNN.claim) and the trainer's run lock (.trial-NNNN.lock) are two files, taken in one
    order: the claim, then the run's lock for prepare .. close. One file for both would make the trainer wait for
    the sweep's own claim (a second flock in one process waits like any other)."""
    from gpu_features.fileio import lock_path
    from train import sweep as sweep_module
    from train.sweep import claim_path, trial_name, try_lock

    sweep = Sweep.open(tmp_path / "study", quick_grid(["lr=1e-3"], {**TINY_RUN, "store": [str(store.path)]}))
    claim = sweep.claim()
    run_dir = sweep.root / trial_name(0)
    assert claim_path(run_dir) != lock_path(run_dir)
    held = []
    monkeypatch.setattr(sweep_module, "fault_point", lambda name: held.append(
        (name, _free(lock_path(run_dir)), _free(claim_path(run_dir)))))
    assert sweep.run_claim(claim) == "COMPLETE"
    assert held == [("sweep.after_epoch", False, False)]  # during the epoch: both held
    assert _free(lock_path(run_dir)) and not _free(claim_path(run_dir))  # the run closed; the claim is still ours
    assert json.loads((run_dir / "run.json").read_text())["format"] == "jade-run"  # an ordinary run directory
    claim.lock.release()
    assert _free(claim_path(run_dir))
    again = try_lock(run_dir)
    assert again is not None
    again.release()


def test_a_trial_whose_run_directory_another_trainer_holds_is_left_running_for_the_next_command(
        store, tmp_path, monkeypatch):
    """A trainer started by hand on a trial's folder holds the run's lock: the sweep's worker is refused as that
    trainer would be (LockError, exit 2), and the trial is not failed: the next command runs it."""
    from filelock import FileLock

    from gpu_features.errors import LockError
    from gpu_features.fileio import lock_path
    from train.sweep import trial_name

    monkeypatch.setenv("GPU_FEATURES_LOCK_TIMEOUT", "0.2")
    sweep = Sweep.open(tmp_path / "study", quick_grid(["lr=1e-3"], {**TINY_RUN, "store": [str(store.path)]}))
    claim = sweep.claim()
    by_hand = FileLock(str(lock_path(sweep.root / trial_name(0))))
    by_hand.acquire()
    with pytest.raises(LockError, match="is being written by another process"):
        sweep.run_claim(claim)
    claim.lock.release()
    by_hand.release()
    assert [t.state.name for t in sweep.study.get_trials()] == ["RUNNING"]
    again = sweep.claim()
    assert (again.trial.number, again.resumed) == (0, True)
    assert sweep.run_claim(again) == "COMPLETE"
    again.lock.release()


def test_a_trial_folder_holding_a_users_file_fails_that_trial_and_keeps_the_file(store, tmp_path):
    from train.sweep import trial_name

    sweep = Sweep.open(tmp_path / "study", quick_grid(["lr=1e-3"], {**TINY_RUN, "store": [str(store.path)]}))
    (sweep.root / trial_name(0)).mkdir()
    (sweep.root / trial_name(0) / "notes.txt").write_text("keep me")
    claim = sweep.claim()
    assert sweep.run_claim(claim) == "FAIL"
    claim.lock.release()
    (trial,) = sweep.study.get_trials()
    assert "is not a run directory: it holds notes.txt" in trial.user_attrs["error"]
    assert sorted(p.name for p in (sweep.root / trial_name(0)).iterdir()) == ["notes.txt"]


def test_a_study_folder_is_ours_only_with_our_sweep_json_and_nothing_is_written_into_another(store, tmp_path,
                                                                                           capsys):
    grid = ["--grid", "lr=1e-3", "--device", "cpu", "--store", str(store.path)]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        ("/", "study folder / is the filesystem root"),
        (str(tmp_path / "afile" / "below"), "is a file, not a folder, so nothing can be made below it"),
        (str(store.path), f"is the feature store {store.path}"),
        (str(store.path / "studies"), f"is inside the feature store {store.path}"),
    ]
    for text, message in (("not json", "not valid JSON"), ('{"format": "mine"}', "is not a sweep record")):
        (theirs / "sweep.json").write_text(text)
        cases.append((str(theirs), message))
        for argv in (["sweep", "--study-dir", str(theirs), *grid], ["sweep", "--study-dir", str(theirs)],
                     ["sweep-report", str(theirs)]):
            assert cli.main(argv) == 2, argv
            err = " ".join(capsys.readouterr().err.split())
            assert message in err, err
    for folder, message in cases[:4]:
        assert cli.main(["sweep", "--study-dir", folder, *grid]) == 2
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in theirs.iterdir()) == ["sweep.json"]
    assert not (store.path / "studies").exists() and sorted(os.listdir(tmp_path)) == ["afile", "theirs"]


def test_an_sqlite_storage_is_written_only_where_a_database_of_ours_may_go(store, tmp_path, capsys):
    (tmp_path / "notes.db").write_text("the user's notes")
    (tmp_path / "folder.db").mkdir()
    grid = ["--grid", "lr=1e-3", "--device", "cpu", "--store", str(store.path)]
    for db, message in ((tmp_path / "notes.db", "is not an SQLite database, so it is not ours to write"),
                        (tmp_path / "folder.db", "is a folder, not an SQLite database file"),
                        (store.path / "study.db", f"the database would lie inside the feature store {store.path}")):
        assert cli.main(["sweep", "--study-dir", str(tmp_path / "study"), "--storage", f"sqlite:///{db}", *grid]) == 2
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "notes.db").read_text() == "the user's notes" and not (tmp_path / "study").exists()
    assert not (store.path / "study.db").exists()


def test_folders_and_flags_a_sweep_refuses(store, tmp_path, capsys):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep me")
    (tmp_path / "afile").write_text("x")
    cases = [
        (["sweep", "--study-dir", str(tmp_path / "theirs"), "--grid", "lr=1e-3", "--device", "cpu", "--store",
          str(store.path)],
         "already holds other files (notes.txt) and no sweep.json; choose a new or empty folder"),
        (["sweep", "--study-dir", str(tmp_path / "afile"), "--grid", "lr=1e-3", "--device", "cpu", "--store",
          str(store.path)], "is a file"),
        (["sweep", "--study-dir", str(tmp_path / "new")], "holds no sweep (sweep.json is missing)"),
        (["sweep", "--study-dir", str(tmp_path / "new"), "--grid", "lr=1e-3", "--run-dir", "x"],
         "--run-dir is not a sweep setting"),
        (["sweep", "--study-dir", str(tmp_path / "new"), "--grid", "lr=1e-3", "--config", "s.toml"],
         "--grid builds a sweep without a file"),
        (["sweep", "--study-dir", str(tmp_path / "new"), "--grid", "lr=1e-3", "--store", str(tmp_path / "none"),
          "--device", "cpu"], "no feature store there"),
        (["sweep", "--study-dir", str(tmp_path / "new"), "--grid", "lr=1e-3", "--device", "cpu", "--store",
          str(store.path), "--devices", "0"], "--devices places workers on GPUs, but the sweep's runs use the CPU"),
        (["sweep-report", str(tmp_path / "new")], "holds no sweep (sweep.json is missing)"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["notes.txt"]
    assert not (tmp_path / "new").exists()


def test_without_optuna_the_sweep_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert cli.main(["sweep", "--study-dir", str(tmp_path / "d"), "--grid", "lr=1e-3"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sweeps need Optuna, which is not installed; install it with pip install 'gpu-features[optuna]'" in err


def test_workers_are_planned_per_device_and_per_core():
    cpu = quick_grid(["lr=1e-3,3e-3"], {"device": "cpu"})
    one = plan_workers(cpu, None, None, None, None)
    assert one.in_process and one.devices == (None,) and one.threads is None
    two = plan_workers(cpu, 2, None, None, 1)
    assert not two.in_process and two.devices == (None, None) and two.threads == 1
    with pytest.raises(TrainError, match="--jobs-per-device places several workers on each GPU"):
        plan_workers(cpu, None, None, 2, None)
    with pytest.raises(TrainError, match="--jobs must be >= 1"):
        plan_workers(cpu, 0, None, None, None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_two_workers_share_one_gpu(store, tmp_path):
    study_dir = tmp_path / "study"
    args = ["sweep", "--study-dir", str(study_dir), "--store", str(store.path), "--device", "cuda", "--epochs", "1",
            "--hidden-size", "8", "--max-train-windows", "128", "--max-val-windows", "64", "--max-final-windows", "64",
            *GRID, "--devices", "0", "--jobs-per-device", "2"]
    cmd, env = _command(args)
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    trials = _trials(study_dir)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert all(t.user_attrs["device"] == "cuda:0 (CUDA_VISIBLE_DEVICES=0)" for t in trials)


def test_a_probe_objective_ranks_trials_by_validation_and_reproduces_standalone(make_store, tmp_path, capsys):
    """Each trial runs the downstream probe (train.probe) after training; the sweep ranks by its validation
    number, keeps the test number beside it, and the trial's config.json gives the same numbers again."""
    store = make_store(synthetic.generate(6_000, 1, 5), tmp_path / "s", splits={"fractions": [0.6, 0.2, 0.2]})
    study = tmp_path / "study"
    objective = "probe:return-sign:2:pretrained:auc"
    assert cli.main(["sweep", "--study-dir", str(study), "--store", str(store.path), *TINY, "--grid", "lr=1e-3,3e-3",
                     "--objective", objective, "--threads-per-job", "1"]) == 0
    report = capsys.readouterr().out
    assert "auc val" in report and "auc test" in report and "ranked by the probe on the validation split" in report
    trials = _trials(study)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    for t in trials:
        run_dir = study / f"trial-{t.number:04d}"
        summary = json.loads((run_dir / "summary.json").read_text())
        probe = summary["probe"]["return-sign:2"]
        assert t.value == probe["validation"]["pretrained"]["auc"]["value"]
        assert t.user_attrs["test"] == probe["test"]["pretrained"]["auc"]["value"]
        assert t.user_attrs["interval"] == [probe["validation"]["pretrained"]["auc"][k] for k in ("low", "high")]
        assert json.loads((run_dir / "config.json").read_text())["probe"] == ["return-sign:2"]
        assert (run_dir / "probe.json").is_file()
    rows = list(csv.DictReader((study / "trials.csv").open()))
    assert [float(r["test"]) for r in rows] == [t.user_attrs["test"] for t in trials]
    again = tmp_path / "again"
    assert cli.main(["--config", str(study / "trial-0001" / "config.json"), "--run-dir", str(again), "--quiet"]) == 0
    assert json.loads((again / "summary.json").read_text())["probe"] == \
        json.loads((study / "trial-0001" / "summary.json").read_text())["probe"]
