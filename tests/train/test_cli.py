"""python -m train: its flags, its report, and its words about stores and interruptions (checksums on open, no
--resume without a checkpoint)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpu_features import synthetic  # noqa: E402
from train import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def short_store(make_store, tmp_path_factory):
    """A one-symbol store of 6,000 bars (the runs here stop before they train)."""
    path = tmp_path_factory.mktemp("tm") / "s"
    make_store(synthetic.generate(6000, 1, 5), path)
    return path


def test_ctrl_c_in_epoch_1_does_not_suggest_resume(short_store, tmp_path, capsys, monkeypatch):
    from train import cli, loop

    def interrupted(self, on_batch=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Run, "fit", interrupted)
    code = cli.main(["--store", str(short_store), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet",
                     "--epochs", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 130 and "--resume" not in err
    assert "before any checkpoint, so there is nothing to resume" in err and "--overwrite" in err


def test_training_refuses_a_store_with_a_flipped_byte(short_store, tmp_path, capsys):
    import shutil

    from train import cli

    bad = tmp_path / "bad"
    shutil.copytree(short_store, bad)
    p = bad / "bars-00000.safetensors"
    data = bytearray(p.read_bytes())
    data[-2000] ^= 0x40  # a feature byte
    p.write_bytes(bytes(data))
    code = cli.main(["--store", str(bad), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet"])
    assert code == 2 and "fails its SHA-256 checksum" in capsys.readouterr().err


def test_a_failed_cuda_graph_capture_is_an_internal_error_with_its_traceback(short_store, tmp_path, capsys, monkeypatch):
    import tempfile

    from train import cli, loop, step

    monkeypatch.setattr(loop, "_use_graphs", lambda cfg, dist, recorded: True)

    def fails(self, X, mask, valid):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore lines")

    monkeypatch.setattr(step.TrainStep, "capture", fails)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the crash report goes
    code = cli.main(["--store", str(short_store), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet",
                     "--epochs", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3
    assert ("capturing the training step into a CUDA graph failed (CUDA error: operation not permitted when stream "
            "is capturing); train with --cuda-graphs off meanwhile; this is a bug in gpu-features") in err
    (crash,) = tmp_path.glob("gpu-features-crash-*.txt")
    assert "more lines" in crash.read_text()  # the original error, whole, for the report


def _cli_args(store, run_dir, *extra):
    """Flags of a short CPU run on ``store``."""
    return ["--store", str(store.path), "--run-dir", str(run_dir), "--device", "cpu", "--quiet", "--epochs", "2",
            "--batch-size", "32", "--hidden-size", "16", "--max-train-windows", "128", "--max-val-windows", "64",
            "--max-final-windows", "64", *extra]


def test_cli_help_and_bad_store():
    env_path = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "--resume" in r.stdout and "--batch-size" in r.stdout and "plot" in r.stdout
    r = subprocess.run([sys.executable, "-m", "train", "--store", "/nonexistent/store", "--run-dir", "/tmp/x"],
                       cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "no feature store there; build the demo store with `make precompute`" in " ".join(r.stderr.split())


def test_cli_run_prints_the_report_and_resume_finishes_it(store, tmp_path, capsys):
    assert cli.main(_cli_args(store, tmp_path / "r")) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("val: masked MAE per feature", "test: masked MAE per feature", "dist_to_prev_SH", "interp",
                 "the mean baseline", "interpolation"):
        assert text in out
    assert cli.main(_cli_args(store, tmp_path / "r")) == 2
    assert "already holds a run" in capsys.readouterr().err
    # resuming a finished run trains nothing more and reports the same numbers
    before = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert cli.main(["--resume", "--run-dir", str(tmp_path / "r"), "--store", str(store.path), "--quiet"]) == 0
    after = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert after["val"] == before["val"] and after["epochs_run"] == 2
    assert cli.main(["--resume", "--run-dir", str(tmp_path / "r"), "--store", str(store.path), "--lr", "9"]) == 2
    assert "--resume continues" in capsys.readouterr().err


# Every flag python -m train had when its flags were written by hand: the generated ones keep them all.
OLD_FLAGS = ["--device", "--epochs", "--batch-size", "--lr", "--seed", "--max-train-windows", "--max-val-windows",
             "--max-final-windows", "--stride", "--min-valid-fraction", "--mask", "--mask-ratio", "--patch-length",
             "--patience", "--hidden-size", "--num-layers", "--dropout", "--weight-decay", "--warmup-fraction",
             "--grad-clip", "--no-bf16", "--position-channel", "--window-length", "--cuda-graphs"]


def test_flags_are_generated_from_train_config_and_its_profiles():
    import dataclasses

    from train.config import PROFILES, TrainConfig

    parser = cli.build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert [f for f in OLD_FLAGS if f not in flags] == []
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "profile"]
    assert sorted(a.dest for a in parser._actions if a.dest in fields) == sorted(fields)  # one flag per field
    text = " ".join(parser.format_help().split())
    small, full = PROFILES["small"], PROFILES["full"]
    assert f"planned epochs [small {small['epochs']}, full {full['epochs']}]" in text
    assert f"evenly spaced training windows per epoch [small {small['max_train_windows']}, full all]" in text
    assert "keep every N-th usable window [1]" in text and "[the store's K]" in text
    args = parser.parse_args(["--no-bf16", "--position-channel", "--lr", "0.5", "--mask", "patch"])
    assert (args.bf16, args.position_channel, args.lr, args.mask, args.epochs) == (False, True, 0.5, "patch", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])


def test_the_trainer_does_not_import_the_feature_command_line():
    code = "import sys, train.cli; print('gpu_features.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-500:]
