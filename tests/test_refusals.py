"""Tracebacks become one sentence with exit 2, and text from data reaches the terminal escaped.

Config files (precompute's and the trainer's) that are nested 100,000 deep, huge or not UTF-8; asking
for more synthetic bars than memory holds; an allocation that fails anyway; escape sequences in
symbol names, in a file's bytes and in a library's message; non-finite config values; verify's verdict.
"""
import math
import sys

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import EXIT_BAD_INPUT, guarded, main
from gpu_features.config import FeatureConfig
from gpu_features.errors import ConfigError, GpuFeaturesError, printable

ESC = "\x1b[2J"
DEEP = "[" * 100_000 + "]" * 100_000


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("text, shown", [
    ("plain words, é and 日本", "plain words, é and 日本"),
    (f"ES{ESC}", "ES\\x1b[2J"),
    ("a\nb\tc\x00d\x7fe\x9bf", "a\\x0ab\\x09c\\x00d\\x7fe\\x9bf"),
    ("left\u202eright", "left\\u202eright"),  # a bidirectional override reorders what the terminal shows
])
def test_printable_escapes_control_characters_only(text, shown):
    assert printable(text) == shown


def test_the_one_error_printer_escapes_what_the_message_quotes(capsys):
    code = guarded(lambda: (_ for _ in ()).throw(GpuFeaturesError(f"no symbol 'ES{ESC}' [bold]here[/bold]")),
                   sys.modules["gpu_features.cli"].err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "ES\\x1b[2J" in err and "[bold]here[/bold]" in err


@pytest.mark.parametrize("content", [
    f"timestamp,open,high,low,close\n2024-01-01T00:00:00,{ESC},1,1,1\n".encode(),  # quoted by pyarrow
    b"\x1b[2J\x00\xff\xfe garbage \x1b]0;title\x07\n" * 20,                          # bytes of a binary file
])
def test_data_quoted_in_a_refusal_is_escaped(tmp_path, capsys, content):
    (tmp_path / "bars.csv").write_bytes(content)
    code, _, err = run(capsys, "precompute", "--input", tmp_path / "bars.csv", "--output", tmp_path / "s", "--quiet")
    assert code == 2 and one_sentence(err), err
    assert "\x1b" not in err and "\x07" not in err


@pytest.mark.parametrize("body", [DEEP, "{" + " " * (17 << 20) + "}", b"\xff\xfe{}", "[1, 2]"])
def test_a_bad_feature_config_file_is_one_sentence(tmp_path, capsys, body):
    path = tmp_path / "cfg.json"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    code, _, err = run(capsys, "precompute", "--config", path, "--output", tmp_path / "s", "--synthetic-bars", 500,
                       "--quiet")
    assert code == 2 and one_sentence(err) and f"--config {path}" in err, err
    assert not (tmp_path / "s").exists()


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


def test_too_many_synthetic_bars_are_refused_before_allocating(tmp_path, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("allocated")

    monkeypatch.setattr(synthetic, "_one_symbol", never)
    code, _, err = run(capsys, "precompute", "--output", tmp_path / "s", "--synthetic-bars", "1e12", "--quiet")
    assert code == 2 and one_sentence(err) and "need about 88,000.0 GB of memory" in err, err
    with pytest.raises(gf.BarsError, match="synthetic seed must lie in 0 .. 17,179,869,184"):
        synthetic.generate(10, 1, 1 << 40)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")])
def test_an_allocation_that_fails_is_bad_input_not_a_bug(capsys, error):
    def fail():
        raise error

    code = guarded(fail, sys.modules["gpu_features.cli"].err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and one_sentence(err) and "out of memory" in err


@pytest.mark.parametrize("field", ["eps", "zigzag_k", "hybrid_min_retrace_atr"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_config_values_are_refused_like_nan(field, value):
    with pytest.raises(ConfigError, match=f"FeatureConfig.{field} = .* is not a finite number"):
        FeatureConfig(**{field: value})
    with pytest.raises(ConfigError, match="too large for a float"):
        FeatureConfig(zigzag_k=10 ** 400)


def test_training_values_that_train_nothing_are_refused():
    torch = pytest.importorskip("torch")
    from gpu_features.windows import WindowError, WindowLoader
    from train.config import TrainConfig, TrainError

    with pytest.raises(TrainError, match="grad_clip = inf is not a finite number"):
        TrainConfig(grad_clip=math.inf)
    feats, valid = torch.zeros(500, 10), torch.ones(500, dtype=torch.bool)
    starts = np.arange(10)
    with pytest.raises(WindowError, match=r"mask_ratio 1e-05 masks no bar of a 105-bar window"):
        WindowLoader(feats, valid, starts, 105, 8, mask_ratio=1e-5)
    with pytest.raises(WindowError, match=r"patch_length 200 is longer than the window \(105 bars\)"):
        WindowLoader(feats, valid, starts, 105, 8, mask="patch", patch_length=200)


def test_verify_says_which_checks_failed_not_bit_for_bit(make_store, tmp_path, capsys):
    import json

    path = make_store(synthetic.generate(3000, 1, 5), tmp_path / "s").path
    code, out, _ = run(capsys, "verify", path, "--quiet")
    assert code == 0 and "verified: 3,000 bars recomputed bit for bit" in out
    shard = path / json.loads((path / "manifest.json").read_text())["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", path, "--quiet")
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("FAILED: checksums") and "bit for bit" not in last
