"""The training loop: the learning-rate schedule, exact resume, both baselines reported, the encoder exported, a NaN stop, run-directory refusals."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpu_features as gf  # noqa: E402
from tests.train.runs import K, metrics_of, tiny, untimed  # noqa: E402
from train import checkpoint as ckpt  # noqa: E402
from train.baselines import train_mean  # noqa: E402
from train.config import TrainConfig, TrainError, make_config  # noqa: E402
from train.jade import Jade, JadeConfig  # noqa: E402
from train.loop import lr_at, train  # noqa: E402


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    cfg = TrainConfig(lr=1.0, warmup_fraction=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    np.testing.assert_allclose(lrs[:10], np.arange(1, 11) / 10)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.001


# --- training runs ------------------------------------------------------------------------------


def test_interrupted_run_resumes_to_the_same_batches_and_metrics(store, tmp_path):
    seen_full, seen_resumed = {}, {}

    def record(into):
        def hook(epoch, i, batch, model):
            if i == 0:
                into[epoch] = (batch.X.clone(), batch.mask.clone())
        return hook

    full = train(store.path, tmp_path / "full", tiny(), on_batch=record(seen_full))

    def interrupt(epoch, i, batch, model):
        if epoch == 1 and i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(store.path, tmp_path / "cut", tiny(), on_batch=interrupt)
    assert [x["epoch"] for x in metrics_of(tmp_path / "cut")] == [1]  # epoch 2 never completed
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 1
    resumed = train(store.path, tmp_path / "cut", None, resume=True, on_batch=record(seen_resumed))

    assert sorted(seen_resumed) == [1, 2]  # resumed at the start of the interrupted epoch
    for epoch in (1, 2):  # the same next batches as the uninterrupted run
        assert torch.equal(seen_resumed[epoch][0], seen_full[epoch][0])
        assert torch.equal(seen_resumed[epoch][1], seen_full[epoch][1])
    assert untimed(metrics_of(tmp_path / "cut")) == untimed(metrics_of(tmp_path / "full"))
    assert len(metrics_of(tmp_path / "full")) == 3
    for key in ("val", "test"):
        assert resumed[key] == full[key]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_reports_both_baselines_and_writes_its_files(store, tmp_path):
    s = train(store.path, tmp_path / "r", tiny(epochs=2, hidden_size=32, max_train_windows=1024))
    for name in ("metrics.jsonl", "checkpoint.json", "model.safetensors", "encoder.safetensors", "summary.json"):
        assert (tmp_path / "r" / name).is_file()
    assert len(list((tmp_path / "r").glob("checkpoint-e*.safetensors"))) == 1
    line = metrics_of(tmp_path / "r")[-1]
    for key in ("train_loss", "val_mae", "lr", "windows_per_s", "data_wait_fraction", "val_mae_mean_baseline",
                "val_mae_interp_baseline"):
        assert math.isfinite(line[key])
    assert 0 <= line["data_wait_fraction"] <= 1
    for split in ("val", "test"):
        r = s[split]
        assert len(r["model"]) == len(r["mean"]) == len(r["interp"]) == 10 and r["windows"] == 128
        assert r["positions"] == 128 * int(0.15 * K)
    # the mean baseline is a real number computed from the masks: recompute it on val by hand
    st = gf.open_store(store.path)
    from gpu_features.windows import WindowSource, derive_seed

    mean = train_mean(st.array("features"), st.array("valid"), st.split_ids())
    loader = WindowSource.from_store(st, "cpu").loader("val", 512, max_windows=128, shuffle=False,
                                                       seed=derive_seed(11, 103))
    err, n = np.zeros(10), 0
    for X, mask, valid in loader.batches(0):
        sel = (mask & valid).numpy()
        err += np.abs(X.numpy()[sel] - mean).sum(0)
        n += sel.sum()
    np.testing.assert_allclose(s["val"]["mean"], err / n, rtol=1e-5)
    assert s["beats_mean_on_val"] == (s["val"]["mae"]["model"] < s["val"]["mae"]["mean"])
    assert s["beats_mean_on_val"]  # even this tiny run learns more than the training mean


def test_encoder_export_reproduces_the_encoder(store, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    train(store.path, tmp_path / "r", tiny(epochs=1))
    enc = load_file(str(tmp_path / "r" / "encoder.safetensors"))
    with safe_open(str(tmp_path / "r" / "model.safetensors"), "pt") as f:
        cfg = JadeConfig.from_dict(json.loads(f.metadata()["jade_config"]))
    model = Jade(cfg)
    model.load_state_dict(load_file(str(tmp_path / "r" / "model.safetensors")))
    model.eval()
    lstm = torch.nn.LSTM(11, 16, 2, batch_first=True, bidirectional=True)
    lstm.load_state_dict({k[5:]: v for k, v in enc.items() if k.startswith("lstm.")})
    lstm.eval()
    X, mask = torch.randn(2, K, 10), torch.rand(2, K) < 0.15
    with torch.no_grad():
        assert torch.equal(model.encode(X, mask), lstm(model.encoder_input(X, mask))[0])
    assert torch.equal(enc["mask_vector"], model.mask_vector.detach())


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(store, tmp_path):
    def poison(epoch, i, batch, model):
        if epoch == 1 and i == 1:
            with torch.no_grad():
                model.decoder.weight[0, 0] = float("nan")

    with pytest.raises(TrainError, match=r"training stopped: the loss became NaN in epoch 2 .* the checkpoint of "
                                         r"epoch 1 is kept in .*checkpoint.json; start a new run with a lower --lr"):
        train(store.path, tmp_path / "r", tiny(), on_batch=poison)
    state, tensors = ckpt.load_checkpoint(tmp_path / "r")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in tensors.values())
    assert [x["epoch"] for x in metrics_of(tmp_path / "r")] == [1]


# --- refusals -----------------------------------------------------------------------------------


def test_run_directory_refusals(store, tmp_path):
    with pytest.raises(TrainError, match="no checkpoint.json to resume from"):
        train(store.path, tmp_path / "none", None, resume=True)
    train(store.path, tmp_path / "r", tiny(epochs=1))
    with pytest.raises(TrainError, match="already holds a run .*continue it with --resume, replace it with --overwrite"):
        train(store.path, tmp_path / "r", tiny(epochs=1))
    with pytest.raises(TrainError, match=r"these differ: lr 0.5 \(saved 0.003\)"):
        train(store.path, tmp_path / "r", tiny(epochs=1, lr=0.5), resume=True)
    with pytest.raises(TrainError, match="no feature store there; build the demo store with `make precompute`"):
        train(tmp_path / "nostore", tmp_path / "x", tiny())
    if not torch.cuda.is_available():
        from gpu_features.windows import WindowError

        with pytest.raises(WindowError, match="torch sees no CUDA device here; use --device cpu"):
            train(store.path, tmp_path / "gpu", tiny(device="cuda"))
        assert not (tmp_path / "gpu").exists()  # a refused run leaves no directory behind
    with pytest.raises(TrainError, match="training option batch_size = 0 is out of range"):
        tiny(batch_size=0)
    assert make_config("small", lr=None).lr == 2e-3 and make_config("full").hidden_size == 128
