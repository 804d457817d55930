"""What every command shares: the FeatureConfig flags and --config files, bool switches that take no value."""
import json
import subprocess
import sys

import pytest

import gpu_features as gf
from gpu_features.cli import main
from tests.cli.console import run
from tests.harness import DEEP, one_sentence


def test_config_file_and_bad_values(capsys, tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"atr_period": 14, "colour": "red"}))
    code, _, err = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--config", str(tmp_path / "cfg.json"))
    assert code == 2 and "unknown key(s) colour" in err
    code, _, err = run(capsys, "precompute", "--output", str(tmp_path / "s"), "--atr-period", "0")
    assert code == 2 and "FeatureConfig.atr_period = 0 is out of range" in err
    assert not (tmp_path / "s").exists()


def test_bool_switches_are_honest(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["precompute", "--hybrid", "True", "--output", str(tmp_path / "s")])
    assert e.value.code == 2  # a switch takes no value: argparse says so
    code, _, _ = run(capsys, "precompute", "--output", tmp_path / "s", "--synthetic-bars", 2000, "--quiet",
                     "--no-hybrid")
    assert code == 0 and gf.open_store(tmp_path / "s").config.hybrid is False
    r = subprocess.run([sys.executable, "-m", "gpu_features.cli", "precompute", "--help"], capture_output=True,
                       text=True)
    assert "--hybrid, --no-hybrid" in r.stdout and "turn hybrid on or off [on]" in " ".join(r.stdout.split())


# --- a --config file that no parser may turn into a traceback ---


@pytest.mark.parametrize("body", [DEEP, "{" + " " * (17 << 20) + "}", b"\xff\xfe{}", "[1, 2]"])
def test_a_bad_feature_config_file_is_one_sentence(tmp_path, capsys, body):
    path = tmp_path / "cfg.json"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    code, _, err = run(capsys, "precompute", "--config", path, "--output", tmp_path / "s", "--synthetic-bars", 500,
                       "--quiet")
    assert code == 2 and one_sentence(err) and f"--config {path}" in err, err
    assert not (tmp_path / "s").exists()
