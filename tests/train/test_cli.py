"""The trainer's words about stores and interruptions (issue 10): checksums on open, no --resume without a checkpoint."""
import pytest

from gpu_features import synthetic

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("tm") / "s"
    make_store(synthetic.generate(6000, 1, 5), path)
    return path


def test_ctrl_c_in_epoch_1_does_not_suggest_resume(store, tmp_path, capsys, monkeypatch):
    from train import cli, loop

    def interrupted(self, on_batch=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Run, "fit", interrupted)
    code = cli.main(["--store", str(store), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet",
                     "--epochs", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 130 and "--resume" not in err
    assert "before any checkpoint, so there is nothing to resume" in err and "--overwrite" in err


def test_training_refuses_a_store_with_a_flipped_byte(store, tmp_path, capsys):
    import shutil

    from train import cli

    bad = tmp_path / "bad"
    shutil.copytree(store, bad)
    p = bad / "bars-00000.safetensors"
    data = bytearray(p.read_bytes())
    data[-2000] ^= 0x40  # a feature byte
    p.write_bytes(bytes(data))
    code = cli.main(["--store", str(bad), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet"])
    assert code == 2 and "fails its SHA-256 checksum" in capsys.readouterr().err


def test_a_failed_cuda_graph_capture_is_an_internal_error_with_its_traceback(store, tmp_path, capsys, monkeypatch):
    import tempfile

    from train import cli, loop, step

    monkeypatch.setattr(loop, "_use_graphs", lambda cfg, dist, recorded: True)

    def fails(self, X, mask, valid):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore lines")

    monkeypatch.setattr(step.TrainStep, "capture", fails)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the crash report goes
    code = cli.main(["--store", str(store), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--quiet",
                     "--epochs", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3
    assert ("capturing the training step into a CUDA graph failed (CUDA error: operation not permitted when stream "
            "is capturing); train with --cuda-graphs off meanwhile; this is a bug in gpu-features") in err
    (crash,) = tmp_path.glob("gpu-features-crash-*.txt")
    assert "more lines" in crash.read_text()  # the original error, whole, for the report
