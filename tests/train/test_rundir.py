"""Run directories are like stores (train/rundir.py): one trainer at a time, only a run's own files, a way out.

A second trainer waits for the run directory's lock, then is refused in one sentence; two ``--overwrite``
runs never interleave; a run killed in its first epoch is named the same way by a new run and by
``--resume``, and the command both give works; a hand-edited ``config.json`` is refused (settings) or
honoured (a moved store), never ignored; a store that changed under a run is named as appended to or
rebuilt.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_features import synthetic
from gpu_features.cli import main as gf_main
from gpu_features.fileio import LOCK_TIMEOUT_ENV

torch = pytest.importorskip("torch")

from train import cli  # noqa: E402
from train.rundir import RUN_MARKER  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--quiet", "--epochs", "1", "--batch-size", "32", "--hidden-size", "8",
        "--max-train-windows", "64", "--max-val-windows", "32", "--max-final-windows", "32"]


def run_train(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.fixture(scope="module")
def trained(make_store, tmp_path_factory):
    """A store and a finished one-epoch run on it (copied by the tests that change either)."""
    root = tmp_path_factory.mktemp("rundir")
    make_store(synthetic.generate(6000, 1, 5), root / "s")
    assert cli.main(["--store", str(root / "s"), "--run-dir", str(root / "r"), *TINY]) == 0
    return root


def _copy_run(trained, tmp_path) -> Path:
    shutil.copytree(trained / "r", tmp_path / "r")
    return tmp_path / "r"


def _subprocess(code: str, env=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_run_is_marked_and_its_config_describes_it(trained):
    marker = json.loads((trained / "r" / RUN_MARKER).read_text())
    assert marker["format"] == "jade-run" and marker["version"] == 1
    cfg = json.loads((trained / "r" / "config.json").read_text())
    assert cfg["store"] == [str(trained / "s")] and cfg["hidden_size"] == 8


def test_a_second_trainer_waits_for_the_lock_then_is_refused(trained, tmp_path, capsys, monkeypatch):
    holder = _subprocess("import sys, time\nfrom gpu_features.fileio import writer_lock\n"
                         f"with writer_lock({str(tmp_path / 'r')!r}, 'test'):\n"
                         "    print('held', flush=True)\n    time.sleep(30)\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")
        code, _, err = run_train(capsys, "--store", trained / "s", "--run-dir", tmp_path / "r", *TINY)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "is being written by another process" in err and "held for 0.5 s" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_two_overwrite_runs_into_one_directory_never_interleave(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    code = ("import sys\nfrom train.cli import main\n"
            f"sys.exit(main(['--store', {str(trained / 's')!r}, '--run-dir', {str(run)!r}, '--overwrite', "
            f"'--seed', sys.argv[1], *{TINY!r}]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(seed)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), **{LOCK_TIMEOUT_ENV: "1"}))
             for seed in (21, 22)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert all(code in (0, 2) for code, _ in results), results
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        if code == 2:  # the one that waited: one sentence about the lock
            assert "is being written by another process" in err and len(err.strip().splitlines()) == 1, err
    # whatever ran last, the directory holds one run: its config, checkpoint and summary agree
    seed = json.loads((run / "config.json").read_text())["seed"]
    assert json.loads((run / "checkpoint.json").read_text())["config"]["seed"] == seed
    assert json.loads((run / "summary.json").read_text())["config"]["seed"] == seed


def test_a_run_killed_in_its_first_epoch_has_one_way_out(trained, tmp_path, capsys):
    run = tmp_path / "r"
    killer = _subprocess("import os, signal, sys\nfrom train import loop\n"
                         "loop.Run.fit = lambda self, on_batch=None: os.kill(os.getpid(), signal.SIGKILL)\n"
                         "from train.cli import main\n"
                         f"main(['--store', {str(trained / 's')!r}, '--run-dir', {str(run)!r}, *{TINY!r}])\n")
    killer.wait(timeout=300)
    assert killer.returncode == -signal.SIGKILL
    assert sorted(p.name for p in run.iterdir()) == ["config.json", RUN_MARKER]
    code, _, err = run_train(capsys, "--store", trained / "s", "--run-dir", run, *TINY)
    assert code == 2 and "holds a run that stopped before its first checkpoint" in err and "--overwrite" in err
    code, _, err = run_train(capsys, "--run-dir", run, "--resume")
    assert code == 2 and "stopped before its first checkpoint, so there is nothing to resume" in err
    command = err.split("`python -m train ")[1].split("`")[0].split()  # the command it gives, run as given
    assert command == ["--config", str(run / "config.json"), "--run-dir", str(run), "--overwrite"]
    code, _, err = run_train(capsys, *command, "--quiet")
    assert code == 0, err
    assert json.loads((run / "checkpoint.json").read_text())["config"]["hidden_size"] == 8  # the killed run's settings


def test_overwrite_replaces_only_a_runs_own_files(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "notes.txt").write_text("mine")
    before = (run / RUN_MARKER).read_text()
    code, _, err = run_train(capsys, "--store", trained / "s", "--run-dir", run, "--overwrite", *TINY, "--seed", "3")
    assert code == 0, err
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "config.json").read_text())["seed"] == 3 and (run / RUN_MARKER).read_text() != before


def test_a_config_json_no_run_wrote_is_never_replaced(trained, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"lr": 0.1}')
    for extra in ([], ["--overwrite"]):
        code, _, err = run_train(capsys, "--store", trained / "s", "--run-dir", tmp_path / "mine", *TINY, *extra)
        assert code == 2 and "is not a run directory: it holds config.json, which no run wrote" in err
        assert "pass --overwrite" not in err
    assert (tmp_path / "mine" / "config.json").read_text() == '{"lr": 0.1}'
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["config.json"]


def test_a_run_of_an_older_version_is_still_a_run(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / RUN_MARKER).unlink()  # older runs have no run.json; their checkpoint.json says what they are
    code, _, err = run_train(capsys, "--store", trained / "s", "--run-dir", run, *TINY)
    assert code == 2 and "already holds a run" in err
    code, _, err = run_train(capsys, "--run-dir", run, "--resume", "--quiet")
    assert code == 0, err
    assert json.loads((run / RUN_MARKER).read_text())["format"] == "jade-run"  # marked from now on


@pytest.mark.parametrize("edit, words", [
    (lambda text: text.replace('"lr": 0.002', '"lr": 0.5'),
     "was edited after the run started: lr 0.5 (the run: 0.002)"),
    (lambda text: text.replace('"hidden_size": 8', '"hidden_size": 32'), "hidden_size 32 (the run: 8)"),
    (lambda text: "{{{", "no longer reads as the run's settings"),
    (lambda text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (lambda text: text.replace('"epochs"', '"colour": 1, "epochs"'), "unknown key(s) colour"),
])
def test_a_hand_edited_config_json_is_refused_not_ignored(trained, tmp_path, capsys, edit, words):
    run = _copy_run(trained, tmp_path)
    text = (run / "config.json").read_text()
    assert '"lr": 0.002' in text and '"hidden_size": 8' in text
    (run / "config.json").write_text(edit(text))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    code, _, err = run_train(capsys, "--run-dir", run, "--resume", "--quiet")
    assert code == 2 and words in err, err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before  # nothing was changed


def test_a_non_utf8_config_json_is_refused(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "config.json").write_bytes(b"\xff\xfe{}")
    code, _, err = run_train(capsys, "--run-dir", run, "--resume", "--quiet")
    assert code == 2 and "not UTF-8" in err


def test_a_deleted_config_json_is_written_again_and_a_moved_store_is_honoured(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "config.json").unlink()
    code, _, err = run_train(capsys, "--run-dir", run, "--resume", "--quiet")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["store"] == [str(trained / "s")]
    shutil.copytree(trained / "s", tmp_path / "moved")  # the same bars elsewhere
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(cfg, store=[str(tmp_path / "moved")])))
    code, out, err = run_train(capsys, "--run-dir", run, "--resume", "--quiet")
    assert code == 0, err
    assert f"resuming Jade on {tmp_path / 'moved'}" in " ".join(out.split())
    assert json.loads((run / "config.json").read_text())["store"] == [str(tmp_path / "moved")]


@pytest.mark.parametrize("change", ["appended", "rebuilt", "another"])
def test_resume_says_what_changed_in_the_store(make_store, tmp_path, capsys, change):
    bars = synthetic.generate(7000, 1, 5)
    make_store(bars.take(0, 6000, 0), tmp_path / "s")
    assert cli.main(["--store", str(tmp_path / "s"), "--run-dir", str(tmp_path / "r"), *TINY]) == 0
    if change == "appended":
        from tests.harness import write_parquet

        write_parquet(tmp_path / "new.parquet", bars, 6000, None, symbols=False)
        assert gf_main(["precompute", "--output", str(tmp_path / "s"), "--append", str(tmp_path / "new.parquet"),
                        "--quiet"]) == 0
        argv, words = [], "was appended to after this run started (6,000 bars then, 7,000 now)"
    elif change == "rebuilt":
        make_store(synthetic.generate(6000, 1, 8), tmp_path / "s", overwrite=True)
        argv, words = [], "was rebuilt after this run started"
    else:
        make_store(synthetic.generate(6000, 1, 8), tmp_path / "t")
        argv, words = ["--store", str(tmp_path / "t")], f"was trained on {tmp_path / 's'}"
    capsys.readouterr()
    code, _, err = run_train(capsys, "--run-dir", tmp_path / "r", "--resume", "--quiet", *argv)
    assert code == 2 and words in err, err
    assert "not on" in err if change == "another" else "start a new run on the stores as they are now" in err
    assert "--overwrite" in err


def test_a_run_left_open_in_this_process_hands_its_lock_to_the_next(trained, tmp_path, monkeypatch):
    """A prepared run interrupted by an exception and never closed does not block its own resume."""
    from train.config import TrainConfig
    from train.loop import prepare

    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")  # a wait would fail fast
    cfg = TrainConfig.from_dict({"epochs": 2, "batch_size": 32, "hidden_size": 8, "max_train_windows": 64,
                                 "max_val_windows": 32, "max_final_windows": 32, "device": "cpu", "profile": "small"})
    run = prepare(trained / "s", tmp_path / "r", cfg, quiet=True)

    def interrupt(epoch, i, batch, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.fit(interrupt)
    resumed = prepare(trained / "s", tmp_path / "r", None, resume=True, quiet=True)  # `run` is still alive
    with contextlib.closing(resumed):
        resumed.fit()
        assert resumed.finish()["epochs_run"] == 2
    holder = _subprocess("from gpu_features.fileio import writer_lock\n"
                         f"with writer_lock({str(tmp_path / 'r')!r}, 'test'):\n    print('free')\n",
                         env={LOCK_TIMEOUT_ENV: "5"})
    assert holder.wait(timeout=60) == 0 and holder.stdout.read().strip() == "free"  # released by the close
