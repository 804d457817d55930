"""train/load.py: a finished run back as a model, and every damaged or mismatched run refused in one sentence."""
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="loading a run needs torch (make test installs it)")

from gpu_features import synthetic  # noqa: E402
from gpu_features.config import FeatureConfig  # noqa: E402
from tests.harness import one_sentence  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.jade import Jade  # noqa: E402
from train.load import FILE_HASHES, jade_from_file, load_run  # noqa: E402


def _batch(K=105, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((B, K, 10), generator=g), torch.rand((B, K), generator=g) < 0.2


def test_a_run_loads_with_its_weights_config_and_feature_settings(trained_run):
    run_dir, store = trained_run
    run = load_run(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.config.to_dict() == summary["config"] and run.window_length == summary["window_length"] == 105
    assert run.feature_config == store.config and run.stores == [str(store.path)]
    assert not run.model.training and run.model.config.hidden_size == 8
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["probe"] == []
    from safetensors.torch import load_file

    want = load_file(str(run_dir / "model.safetensors"))
    got = run.model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert set(summary[FILE_HASHES]) == {"model.safetensors", "encoder.safetensors"}
    run.check_store(store)  # its own store is accepted


def test_jade_from_either_file_encodes_identically(trained_run):
    run_dir, _ = trained_run
    full = jade_from_file(run_dir / "model.safetensors")
    enc = jade_from_file(run_dir / "encoder.safetensors")
    X, mask = _batch()
    with torch.no_grad():
        assert torch.equal(full.encode(X, mask), enc.encode(X, mask))
        assert torch.equal(load_run(run_dir, encoder_only=True).model.encode(X, mask), full.encode(X, mask))
    assert isinstance(full, Jade) and full.config == enc.config


def _copy(run_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


@pytest.mark.parametrize("damage, message", [
    ("no-dir", "no such run directory"),
    ("no-summary", "holds no summary.json, so it is not a finished run"),
    ("no-model", "model.safetensors is missing"),
    ("flipped-byte", "SHA-256 differs from the one summary.json records"),
    ("torn-summary", "summary.json"),
])
def test_a_damaged_run_is_refused_in_one_sentence(trained_run, tmp_path, damage, message):
    run_dir = _copy(trained_run[0], tmp_path)
    if damage == "no-dir":
        run_dir = tmp_path / "nothing"
    elif damage == "no-summary":
        (run_dir / "summary.json").unlink()
    elif damage == "no-model":
        (run_dir / "model.safetensors").unlink()
    elif damage == "flipped-byte":
        data = bytearray((run_dir / "model.safetensors").read_bytes())
        data[-5] ^= 0xFF  # a weight, not the header: only the checksum can tell
        (run_dir / "model.safetensors").write_bytes(bytes(data))
    elif damage == "torn-summary":
        (run_dir / "summary.json").write_text('{"config": ')
    with pytest.raises(TrainError, match=message) as err:
        load_run(run_dir)
    assert one_sentence(str(err.value))


def test_files_that_are_not_jade_models_are_refused(trained_run, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something"})
    with pytest.raises(TrainError, match="not a Jade model file"):
        jade_from_file(other)
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes((trained_run[0] / "model.safetensors").read_bytes()[:100])
    with pytest.raises(TrainError, match="not a readable safetensors file"):
        jade_from_file(torn)
    # a header that names another architecture than the tensors hold
    tensors = {k: v for k, v in Jade().state_dict().items()}
    meta = dict(Jade().metadata())
    meta["jade_config"] = json.dumps({**json.loads(meta["jade_config"]), "hidden_size": 4})
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(bad), metadata=meta)
    with pytest.raises(TrainError, match="do not fit the Jade its header describes"):
        jade_from_file(bad)


def test_a_store_with_other_feature_settings_is_refused(trained_run, make_store, tmp_path):
    run = load_run(trained_run[0])
    other = make_store(synthetic.generate(3000, 1, 5), tmp_path / "o", config=FeatureConfig(atr_period=14))
    with pytest.raises(TrainError, match=r"built with other feature settings .*atr_period 14 \(run: 10\)") as err:
        run.check_store(other)
    assert one_sentence(str(err.value))
    assert np.isfinite(other.array("features")[other.array("valid")]).all()
