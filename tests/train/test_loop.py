"""The Jade pretrainer: masked-input invariance, loss, baselines, exact resume, NaN stop, CLI, plot."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402
from train import checkpoint as ckpt  # noqa: E402
from train import cli  # noqa: E402
from train.baselines import interpolate, predictions, train_mean, train_mean_on_device  # noqa: E402
from train.config import TrainConfig, TrainError, make_config  # noqa: E402
from train.jade import Jade, JadeConfig, JadeConfigError  # noqa: E402
from train.loop import TIMING_FIELDS, lr_at, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = 105
TINY = dict(epochs=3, batch_size=32, lr=3e-3, hidden_size=16, num_layers=2, dropout=0.2, max_train_windows=256,
            max_val_windows=128, max_final_windows=128, device="cpu", seed=11)


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    return make_store(synthetic.generate(24_000, 1, 5), tmp_path_factory.mktemp("t") / "s")


def _tiny(**kw):
    return TrainConfig.from_dict({**TINY, "profile": "small", **kw})


def _lines(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _untimed(lines):
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


# --- the model ----------------------------------------------------------------------------------


def test_masked_bars_cannot_reach_the_output():
    torch.manual_seed(0)
    model = Jade(JadeConfig(hidden_size=32)).eval()
    X = torch.randn(4, K, 10)
    mask = torch.rand(4, K) < 0.2
    X2 = X.clone()
    X2[mask] = torch.randn(int(mask.sum()), 10) * 100.0  # anything at the masked bars...
    X2[0, mask[0]] = float("nan")                          # ...even NaN
    with torch.no_grad():
        out, out2 = model(X, mask), model(X2, mask)
    assert torch.equal(out, out2)
    # the control: changing one unmasked bar does change the output, so the comparison can fail
    t = int(torch.nonzero(~mask[1])[0])
    X3 = X.clone()
    X3[1, t] += 1.0
    with torch.no_grad():
        assert not torch.equal(model(X3, mask), out)
    # and the mask itself is information the encoder gets (mask-indicator channel)
    assert model.encoder.input_size == 11
    assert torch.equal(model.encoder_input(X, mask)[..., 10], mask.float())


def test_shapes_and_the_position_channel():
    m = Jade(JadeConfig(hidden_size=8, position_channel=True))
    X = torch.randn(2, K, 11)
    assert m(X, torch.zeros(2, K, dtype=torch.bool)).shape == (2, K, 10)
    assert Jade(JadeConfig())(torch.randn(3, K, 10), torch.zeros(3, K, dtype=torch.bool)).shape == (3, K, 10)
    with pytest.raises(JadeConfigError, match="dropout = 1.5 is out of range"):
        JadeConfig(dropout=1.5)
    with pytest.raises(JadeConfigError, match="unknown key"):
        JadeConfig.from_dict({"hidden": 3})


def test_loss_is_uncertainty_weighted_huber_on_masked_valid_bars_only():
    torch.manual_seed(1)
    m = Jade(JadeConfig(hidden_size=8))
    with torch.no_grad():
        m.log_sigma.fill_(0.3)
    X, recon = torch.randn(2, K, 10) * 2, torch.randn(2, K, 10)
    mask = torch.zeros(2, K, dtype=torch.bool)
    mask[0, 3], mask[1, 50], mask[1, 51] = True, True, True
    valid = torch.ones(2, K, dtype=torch.bool)
    valid[1, 51] = False
    total, huber = m.loss(recon, X, mask, valid)
    d = (recon - X)[torch.tensor([0, 1]), torch.tensor([3, 50])]
    want = torch.where(d.abs() < 1, 0.5 * d * d, d.abs() - 0.5).mean()
    assert huber.item() == pytest.approx(want.item(), rel=1e-6)
    assert total.item() == pytest.approx(want.item() / (2 * math.exp(0.6)) + 0.3, rel=1e-6)
    recon2 = recon.clone()
    recon2[~(mask & valid)] = 1e6  # unmasked and invalid bars do not count
    assert m.loss(recon2, X, mask, valid)[1].item() == pytest.approx(huber.item(), rel=1e-6)


def test_interpolation_baseline():
    X = torch.tensor([[0., 1., 2., 30., 4., 5., 6.]]).unsqueeze(-1)
    known = torch.tensor([[False, True, False, False, True, True, False]])
    out = interpolate(X, known, torch.tensor([-9.0]))[0, :, 0]
    # left edge: nearest known (1); bars 2 and 3 between 1 (t=1) and 4 (t=4); right edge: nearest (5)
    np.testing.assert_allclose(out.numpy(), [1, 1, 2, 3, 4, 5, 5], rtol=0, atol=1e-6)
    none = interpolate(X, torch.zeros(1, 7, dtype=torch.bool), torch.tensor([-9.0]))
    assert (none == -9).all()
    mean = torch.tensor([0.5] * 10)
    p = predictions(torch.randn(2, K, 11), torch.zeros(2, K, dtype=torch.bool), torch.ones(2, K, dtype=torch.bool),
                    mean)
    assert p["mean"].shape == p["interp"].shape == (2, K, 10)


def test_train_mean_uses_valid_training_bars_only():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    valid = np.array([1, 1, 0, 1, 1, 1], bool)
    split = np.array([0, 0, 0, 0, 1, 2], np.int8)
    np.testing.assert_allclose(train_mean(feats, valid, split), [(0 + 2 + 6) / 3, (1 + 3 + 7) / 3])
    feats[2] = np.nan  # what an invalid bar holds must not matter, on the device path either (chunks of 4 rows)
    got = train_mean_on_device(torch.from_numpy(feats), torch.from_numpy(valid), split, chunk=4)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), train_mean(feats, valid, split), rtol=1e-6)


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

    full = train(store.path, tmp_path / "full", _tiny(), on_batch=record(seen_full))

    def interrupt(epoch, i, batch, model):
        if epoch == 1 and i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(store.path, tmp_path / "cut", _tiny(), on_batch=interrupt)
    assert [x["epoch"] for x in _lines(tmp_path / "cut")] == [1]  # epoch 2 never completed
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 1
    resumed = train(store.path, tmp_path / "cut", None, resume=True, on_batch=record(seen_resumed))

    assert sorted(seen_resumed) == [1, 2]  # resumed at the start of the interrupted epoch
    for epoch in (1, 2):  # the same next batches as the uninterrupted run
        assert torch.equal(seen_resumed[epoch][0], seen_full[epoch][0])
        assert torch.equal(seen_resumed[epoch][1], seen_full[epoch][1])
    assert _untimed(_lines(tmp_path / "cut")) == _untimed(_lines(tmp_path / "full"))
    assert len(_lines(tmp_path / "full")) == 3
    for key in ("val", "test"):
        assert resumed[key] == full[key]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_reports_both_baselines_and_writes_its_files(store, tmp_path):
    s = train(store.path, tmp_path / "r", _tiny(epochs=2, hidden_size=32, max_train_windows=1024))
    for name in ("metrics.jsonl", "checkpoint.json", "model.safetensors", "encoder.safetensors", "summary.json"):
        assert (tmp_path / "r" / name).is_file()
    assert len(list((tmp_path / "r").glob("checkpoint-e*.safetensors"))) == 1
    line = _lines(tmp_path / "r")[-1]
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

    train(store.path, tmp_path / "r", _tiny(epochs=1))
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
        train(store.path, tmp_path / "r", _tiny(), on_batch=poison)
    state, tensors = ckpt.load_checkpoint(tmp_path / "r")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in tensors.values())
    assert [x["epoch"] for x in _lines(tmp_path / "r")] == [1]


def test_checkpoints_are_atomic(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, {"epoch": 1, "x": 1}, {"w": torch.ones(3)})
    import safetensors.torch as st

    def half_written(tensors, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, {"epoch": 2, "x": 2}, {"w": torch.zeros(3)})
    monkeypatch.undo()
    state, tensors = ckpt.load_checkpoint(tmp_path)
    assert state["epoch"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-e0001.safetensors", "checkpoint.json"]
    (tmp_path / "checkpoint-e0001.safetensors").write_bytes(b"tampered")
    with pytest.raises(TrainError, match="SHA-256 differs from checkpoint.json"):
        ckpt.load_checkpoint(tmp_path)


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.randn(5, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt)
    ckpt.save_checkpoint(tmp_path, {"epoch": 1, "optimizer": meta}, tensors)
    state, loaded = ckpt.load_checkpoint(tmp_path)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    ckpt.optimizer_from_tensors(opt2, loaded, state["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == [dict(g, betas=tuple(g["betas"])) for g in b["param_groups"]]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


# --- refusals -----------------------------------------------------------------------------------


def test_run_directory_refusals(store, tmp_path):
    with pytest.raises(TrainError, match="no checkpoint.json to resume from"):
        train(store.path, tmp_path / "none", None, resume=True)
    train(store.path, tmp_path / "r", _tiny(epochs=1))
    with pytest.raises(TrainError, match="already holds a run .*continue it with --resume, replace it with --overwrite"):
        train(store.path, tmp_path / "r", _tiny(epochs=1))
    with pytest.raises(TrainError, match=r"these differ: lr 0.5 \(saved 0.003\)"):
        train(store.path, tmp_path / "r", _tiny(epochs=1, lr=0.5), resume=True)
    with pytest.raises(TrainError, match="no feature store there; build the demo store with `make precompute`"):
        train(tmp_path / "nostore", tmp_path / "x", _tiny())
    if not torch.cuda.is_available():
        from gpu_features.windows import WindowError

        with pytest.raises(WindowError, match="torch sees no CUDA device here; use --device cpu"):
            train(store.path, tmp_path / "gpu", _tiny(device="cuda"))
        assert not (tmp_path / "gpu").exists()  # a refused run leaves no directory behind
    with pytest.raises(TrainError, match="training option batch_size = 0 is out of range"):
        _tiny(batch_size=0)
    assert make_config("small", lr=None).lr == 2e-3 and make_config("full").hidden_size == 128


# --- command line -------------------------------------------------------------------------------


def test_cli_help_and_bad_store():
    env_path = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "--resume" in r.stdout and "--batch-size" in r.stdout and "plot" in r.stdout
    r = subprocess.run([sys.executable, "-m", "train", "--store", "/nonexistent/store", "--run-dir", "/tmp/x"],
                       cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "no feature store there; build the demo store with `make precompute`" in " ".join(r.stderr.split())


def _cli_args(store, run_dir, *extra):
    return ["--store", str(store.path), "--run-dir", str(run_dir), "--device", "cpu", "--quiet", "--epochs", "2",
            "--batch-size", "32", "--hidden-size", "16", "--max-train-windows", "128", "--max-val-windows", "64",
            "--max-final-windows", "64", *extra]


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


# --- plot ---------------------------------------------------------------------------------------


def test_plot_writes_a_png_of_the_expected_size_from_the_runs_numbers(store, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    from train.plot import FIGSIZE, plot_run

    s = train(store.path, tmp_path / "r", _tiny(epochs=2))
    data = plot_run(tmp_path / "r", tmp_path / "c.png", dpi=50)
    img = mpimg.imread(tmp_path / "c.png")
    assert img.shape[:2] == (round(FIGSIZE[1] * 50), round(FIGSIZE[0] * 50)) == (data["height"], data["width"])
    assert img[..., :3].std() > 0.05  # something was drawn
    lines = _lines(tmp_path / "r")
    assert data["epochs"] == [1, 2] and data["train_huber"] == [x["train_huber"] for x in lines]
    assert data["val_huber"] == [x["val_huber"] for x in lines]
    assert data["val_mae"] == [x["val_mae"] for x in lines]
    assert data["val_mae_interp_baseline"] == lines[-1]["val_mae_interp_baseline"]
    assert data["split"] == "test" and data["model"] == s["test"]["model"] and data["interp"] == s["test"]["interp"]
    assert cli.main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "d.png"), "--dpi", "40"]) == 0
    assert mpimg.imread(tmp_path / "d.png").shape[:2] == (round(FIGSIZE[1] * 40), round(FIGSIZE[0] * 40))


def test_plot_without_matplotlib_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    (tmp_path / "metrics.jsonl").write_text("")
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "plotting needs matplotlib, which is not installed; install it with `pip install matplotlib`" in \
        " ".join(err.split()) and len(err.splitlines()) <= 2
