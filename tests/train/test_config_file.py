"""Run files (TOML, JSON, YAML): every setting of a run, flags on top."""
import json
import sys

import pytest

torch = pytest.importorskip("torch")

from tests.train.runs import untimed  # noqa: E402
from train import cli  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.config_file import load_run_file  # noqa: E402
from tests.harness import DEEP, one_sentence  # noqa: E402


def test_run_file_round_trip_and_flags_override_it(stores, tmp_path, capsys):
    a, _, _ = stores
    f = tmp_path / "run.toml"
    f.write_text(f'store = "{a.path}"\nprofile = "small"\nepochs = 1\nbatch_size = 8\nhidden_size = 8\n'
                 'num_layers = 1\nmax_train_windows = 32\nmax_val_windows = 32\nmax_final_windows = 32\n'
                 'device = "cpu"\nlr = 0.002\n')
    run = tmp_path / "r"
    assert cli.main(["--config", str(f), "--run-dir", str(run), "--lr", "0.004", "--quiet"]) == 0
    written = json.loads((run / "config.json").read_text())
    assert written["lr"] == 0.004 and written["epochs"] == 1 and written["store"] == [str(a.path)]
    # the written file starts the same run again
    assert cli.main(["--config", str(run / "config.json"), "--run-dir", str(tmp_path / "again"), "--quiet"]) == 0
    m1 = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    assert untimed(m1) == untimed(m2)
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again == written  # the resolved run file round-trips
    # --resume without --store takes the stores the checkpoint names
    assert cli.main(["--resume", "--run-dir", str(run), "--quiet"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = 1\nlearning_rate = 3\n")
    with pytest.raises(TrainError, match="unknown key.*learning_rate; allowed keys are epochs, batch_size"):
        load_run_file(bad)
    (tmp_path / "bad.ini").write_text("x")
    with pytest.raises(TrainError, match="unknown run file type '.ini'"):
        load_run_file(tmp_path / "bad.ini")
    (tmp_path / "bad.json").write_text('{"epochs": 0}')
    assert cli.main(["--config", str(tmp_path / "bad.json"), "--run-dir", str(tmp_path / "x")]) == 2
    assert "training option epochs = 0 is out of range" in " ".join(capsys.readouterr().err.split())


def test_yaml_run_files_need_pyyaml(tmp_path, monkeypatch):
    f = tmp_path / "run.yaml"
    f.write_text("epochs: 2\nlr: 0.001\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(TrainError, match="YAML run files need PyYAML, which is not installed"):
        load_run_file(f)
    monkeypatch.undo()
    try:
        import yaml  # noqa: F401
    except ImportError:
        return
    assert load_run_file(f) == {"epochs": 2, "lr": 0.001}


# --- a run file that no parser may turn into a traceback ---


@pytest.mark.parametrize("suffix, body", [(".json", DEEP), (".toml", "a = " + "[" * 100_000 + "]" * 100_000),
                                          (".json", "{" + " " * (17 << 20) + "}"), (".toml", b"\xff\xfe = 1"),
                                          (".json", b"\xff\xfe{}")])
def test_a_bad_run_file_is_one_sentence(tmp_path, capsys, suffix, body):
    pytest.importorskip("torch")
    from train import cli as train_cli

    path = tmp_path / f"run{suffix}"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    code = train_cli.main(["--config", str(path), "--run-dir", str(tmp_path / "r"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and one_sentence(err) and str(path) in " ".join(err.split()), err
    assert not (tmp_path / "r").exists()
