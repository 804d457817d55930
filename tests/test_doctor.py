"""gpu-features doctor: the report's values match what the engines say, and missing pieces are named."""
import io
import json
import sys

import numpy as np
import pytest
from rich.console import Console

from gpu_features import doctor, engines
from gpu_features.cli import main
from gpu_features.engines import gpu, host


def report_json(capsys, *extra):
    code = main(["doctor", "--json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_json_report_matches_this_machine(capsys):
    code, r, err = report_json(capsys)
    assert code == 0 and r["ok"] is True and r["problem"] is None and err == ""
    assert r["interpreter"]["executable"] == sys.executable
    assert r["interpreter"]["venv"] == (sys.prefix != sys.base_prefix)
    pk = {p["name"]: p for p in r["packages"]}
    assert list(pk) == ["numpy", "pyarrow", "safetensors", "rich", "torch", "cupy", "cudf", "matplotlib", "dask"]
    assert pk["numpy"]["version"] == np.__version__ and pk["numpy"]["required"] is True
    assert pk["rich"]["version"] not in (None, "unknown")
    assert r["engines"]["reference"] == {"runs": True, "why_not": None}
    assert r["engines"]["host"]["runs"] == (host.compiler() is not None)
    assert r["compiler"]["path"] == host.compiler()
    assert r["engines"]["gpu"]["runs"] == gpu.available()
    if not gpu.available():
        assert r["engines"]["gpu"]["why_not"] == gpu.unavailable_reason() != ""
        assert r["cuda"]["devices"] == [] or r["cuda"]["via"] == "torch"
    assert r["auto"] == engines.resolve("auto")
    assert r["cache"]["path"] == str(host.cache_dir()) and r["cache"]["writable"] is True


@pytest.mark.skipif(host.compiler() is None, reason="no C++ compiler: the host engine cannot be reported as running")
def test_host_engine_runs_where_a_compiler_exists(capsys):
    _, r, _ = report_json(capsys)
    assert r["engines"]["host"] == {"runs": True, "why_not": None}
    assert r["compiler"]["version"]
    if not gpu.available():
        assert r["auto"] == "host"


def test_missing_compiler_and_unwritable_cache_say_why(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-cxx"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GPU_FEATURES_CACHE", str(blocker / "cache"))
    code, r, _ = report_json(capsys)
    assert code == 0
    assert r["engines"]["host"]["runs"] is False
    assert "no-such-cxx was not found" in r["engines"]["host"]["why_not"]
    assert r["compiler"]["path"] is None
    assert r["cache"] == {"path": str(blocker / "cache"), "exists": False, "writable": False}
    assert r["auto"] == ("gpu" if gpu.available() else "reference")


def test_a_missing_required_package_exits_2_with_one_sentence(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors now raises ImportError
    code, r, err = report_json(capsys)
    assert code == 2 and r["ok"] is False
    row = next(p for p in r["packages"] if p["name"] == "safetensors")
    assert row["version"] is None and row["required"] is True
    assert len(err.strip().splitlines()) == 1
    assert "safetensors" in err and "pip install gpu-features" in err and "numpy" not in err


def test_a_broken_optional_package_is_reported_not_fatal(capsys, monkeypatch, tmp_path):
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / "__init__.py").write_text("raise RuntimeError('libfoo.so not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dask", raising=False)
    code, r, _ = report_json(capsys)
    row = next(p for p in r["packages"] if p["name"] == "dask")
    assert code == 0 and row["version"] is None
    assert row["error"] == "RuntimeError: libfoo.so not found"


def test_human_report_keeps_extra_brackets_and_names_the_auto_engine(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudf", None)
    report = doctor.collect()
    out = io.StringIO()
    doctor.render(report, Console(file=out, width=300, color_system=None))
    text = out.getvalue()
    assert "pip install 'gpu-features[cudf]' (optional)" in text
    assert f"--engine auto picks {engines.resolve('auto')}" in text
    assert f"kernel cache {host.cache_dir()}" in text
    if not gpu.available():
        assert gpu.unavailable_reason() in text


def test_doctor_help():
    with pytest.raises(SystemExit) as e:
        main(["doctor", "--help"])
    assert e.value.code == 0
