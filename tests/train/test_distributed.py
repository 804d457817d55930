"""Jade past one process: rank shares of an epoch, 2-rank gloo runs, several stores, K at training time."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpu_features import synthetic  # noqa: E402
from gpu_features.window_index import split_window_starts  # noqa: E402
from gpu_features.windows import WindowError, WindowSource  # noqa: E402
from tests.train.conftest import DATES  # noqa: E402
from tests.train.runs import untimed  # noqa: E402
from train.config import TrainConfig, TrainError  # noqa: E402
from train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Tiny on purpose: two ranks share 2 cores in CI.
TINY = dict(epochs=2, batch_size=8, lr=3e-3, hidden_size=8, num_layers=1, dropout=0.0, max_train_windows=64,
            max_val_windows=48, max_final_windows=48, device="cpu", seed=5, profile="small")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- rank shares of an epoch (no processes needed: the shares are pure functions) -----------------


@pytest.mark.parametrize("n,world,B", [(64, 2, 8), (61, 2, 8), (50, 3, 7)])
def test_ranks_take_equal_shares_of_one_permutation(n, world, B):
    feats = np.random.default_rng(0).normal(size=(400, 10)).astype(np.float32)
    valid = np.ones(400, bool)
    starts = np.arange(0, 5 * n, 5)[:n]
    kw = dict(shuffle=True, seed=3)
    one = WindowSource(feats, valid, window_length=20, device="cpu")
    single = one.loader("train", B, **kw)
    single.starts = torch.as_tensor(starts)
    shares = []
    for r in range(world):
        ld = one.loader("train", B, rank=r, world_size=world, **kw)
        ld.starts = torch.as_tensor(starts)
        shares.append(ld)
    lens = {len(ld) for ld in shares}
    global_batches = -(-n // B)
    assert lens == {-(-global_batches // world)}  # every rank steps the same number of times
    order = single.order(0).tolist()
    got = [ld.rank_order(0).tolist() for ld in shares]
    flat = [s for g in got for s in g]
    assert set(flat) == set(starts.tolist())  # together they are the epoch
    assert all(len(g) == len(shares[0]) * B for g in got)  # full batches only
    extra = len(flat) - n
    assert extra < world * B
    if extra == 0:
        assert len(set(flat)) == n  # disjoint
    else:  # padding wraps: the duplicates are the first windows of the permutation
        dup = sorted(flat)
        counts = {s: dup.count(s) for s in set(dup)}
        assert sorted(s for s, c in counts.items() if c == 2) == sorted(order[:extra])
    # masks are keyed by the global batch index: rank r's batch i is the single process's batch i*world + r
    for r, ld in enumerate(shares):
        for i in range(len(ld)):
            g = i * world + r
            if (g + 1) * B <= n:
                a, b = ld.batch(0, i), single.batch(0, g)
                assert torch.equal(a.X, b.X) and torch.equal(a.mask, b.mask)


def test_evaluation_shares_hold_every_window_once():
    feats = np.zeros((300, 10), np.float32)
    src = WindowSource(feats, np.ones(300, bool), window_length=10, device="cpu")
    shares = [src.loader("train", 16, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    flat = [s for ld in shares for s in ld.rank_order(0).tolist()]
    assert sorted(flat) == src.starts("train").tolist()
    assert max(len(ld) for ld in shares) - min(len(ld) for ld in shares) <= 1
    with pytest.raises(WindowError, match="rank 3 is outside 0 .. 2"):
        src.loader("train", 16, rank=3, world_size=3)


# --- two gloo ranks ----------------------------------------------------------------------------


def test_two_gloo_ranks_train_agree_write_once_and_resume_exactly(stores, tmp_path):
    import torch.multiprocessing as mp

    from tests.train.ddp_worker import rank_main

    a, b, _ = stores
    paths = [str(a.path), str(b.path)]
    mp.spawn(rank_main, args=(2, _free_port(), paths, str(tmp_path), TINY), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # both ranks report the same reduced metrics, for training, validation and the final evaluation
    for key in ("full", "resumed"):
        assert untimed(r0[key]["history"]) == untimed(r1[key]["history"])
        for split in ("val", "test"):
            assert r0[key]["summary"][split] == r1[key]["summary"][split]
    s = r0["full"]["summary"]
    assert s["world_size"] == 2 and s["batch_size_per_process"] == 8 and s["global_batch_size"] == 16
    assert s["stores"] == paths and len(r0["full"]["history"]) == 2
    assert r0["weights"] == r1["weights"]  # gradients were all-reduced: the ranks never diverged
    # the ranks' windows in an epoch are disjoint and together are the epoch (64 windows = 4 steps x 2 x 8)
    assert r0["n_batches"] == r1["n_batches"] == 4
    for e in range(2):
        w0, w1 = set(r0["orders"][e]), set(r1["orders"][e])
        assert not (w0 & w1) and len(w0) == len(w1) == 32
    src = WindowSource.from_stores([a, b], "cpu")
    assert sorted(w0 | w1) == src.starts("train", max_windows=64).tolist()
    # rank 0 alone wrote files
    assert r1["writes"] == []
    full = tmp_path / "full"
    assert {p.name for p in full.iterdir()} >= {"checkpoint.json", "metrics.jsonl", "summary.json", "config.json",
                                                 "model.safetensors", "encoder.safetensors"}
    assert json.loads((full / "summary.json").read_text())["val"] == s["val"]
    # an interrupted 2-rank run resumes to the same metrics and weights
    assert r0["cut_epochs"] == r1["cut_epochs"] == 1
    assert untimed(r0["resumed"]["history"]) == untimed(r0["full"]["history"])
    assert r0["resumed"]["summary"]["val"] == s["val"] and r0["resumed"]["summary"]["test"] == s["test"]
    from safetensors.torch import load_file

    m1, m2 = load_file(str(full / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert sorted(m1) == sorted(m2) and not any(k.startswith("module.") for k in m1)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    # a different world size refuses to resume, unless asked
    with pytest.raises(TrainError, match=r"was trained by 2 process\(es\) and this run has 1; .* pass "
                                         r"--allow-world-size-change to continue anyway"):
        train(paths, tmp_path / "cut", None, resume=True)
    again = train(paths, tmp_path / "cut", None, resume=True, allow_world_size_change=True)  # finished: no steps
    assert again["world_size"] == 1 and again["val"]["windows"] == s["val"]["windows"]


def _torchrun(store, run_dir, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
            "-m", "train", "--store", str(store.path), "--run-dir", str(run_dir), "--device", "cpu", "--quiet",
            "--epochs", "3", "--batch-size", "8", "--hidden-size", "8", "--num-layers", "1",
            "--max-train-windows", "64", "--max-val-windows", "32", "--max-final-windows", "32", *extra]


def test_torchrun_runs_the_same_command_and_a_killed_run_resumes(stores, tmp_path):
    import signal
    import time

    a, _, _ = stores
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(_torchrun(a, tmp_path / "full"), cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = " ".join(r.stdout.split())
    assert out.count("training Jade on") == 1 and "2 processes x B=8 = 16 windows per step" in out  # rank 0 prints
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["world_size"] == 2
    # the same run, its two workers killed (SIGKILL) once the first epoch's checkpoint is on disk
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_torchrun(a, cut), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (cut / "checkpoint.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in workers:  # torchrun starts its workers in their own sessions: kill them by id
        os.kill(int(pid), signal.SIGKILL)
    assert proc.wait(timeout=120) != 0 and len(workers) == 2
    done = json.loads((cut / "checkpoint.json").read_text())["epoch"]
    assert 1 <= done < 3 and not (cut / "summary.json").exists()
    r = subprocess.run(_torchrun(a, cut, "--resume"), cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [[json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (tmp_path / "full", cut)]
    assert len(lines[0]) == 3 and untimed(lines[0]) == untimed(lines[1])
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "full", cut))
    assert s1["val"] == s2["val"] and s1["test"] == s2["test"]


# --- several stores ----------------------------------------------------------------------------


def test_windows_of_several_stores_never_cross_a_store(stores):
    a, b, _ = stores
    src = WindowSource.from_stores([a, b], "cpu")
    n_a = a.n_bars
    assert src.store_bounds.tolist() == [0, n_a, n_a + b.n_bars]
    assert n_a in src.segment_bounds.tolist()
    K = src.window_length
    for split in ("train", "val", "test"):
        starts = src.starts(split)
        assert not ((starts < n_a) & (starts + K > n_a)).any()
        # the combined windows are exactly each store's own windows, the second shifted by n_a
        want = np.concatenate([a.usable_window_starts(split), b.usable_window_starts(split) + n_a])
        np.testing.assert_array_equal(starts, want)
    X, mask, valid = src.loader("train", 4, shuffle=False).batch(0, 0)
    s0 = int(src.starts("train")[0])
    assert torch.equal(X[0], torch.from_numpy(a.array("features")[s0:s0 + K]))


def test_stores_that_cannot_be_combined_are_refused(stores, make_store, tmp_path):
    a, b, f = stores
    with pytest.raises(WindowError, match="its splits are fractions of its own bars, so combined with other "
                                          "stores one store's test period could lie inside another's training"):
        WindowSource.from_stores([a, f], "cpu")
    other = make_store(synthetic.generate(3000, 1, 8), tmp_path / "k", splits={"dates": DATES},
                       config=a.config.__class__.from_dict({**a.config.to_dict(), "window_length": 50}))
    with pytest.raises(WindowError, match=r"built with other feature settings than .*window_length 50 \(vs 105\)"):
        WindowSource.from_stores([a, other], "cpu")
    late = make_store(synthetic.generate(3000, 1, 9), tmp_path / "l", splits={"dates": ["2019-01-08", DATES[1]]})
    with pytest.raises(WindowError, match="the stores split at different dates"):
        WindowSource.from_stores([a, late], "cpu")
    with pytest.raises(TrainError, match="its splits are fractions"):
        train([a.path, f.path], tmp_path / "r", TrainConfig.from_dict(TINY))
    assert not (tmp_path / "r").exists()


def test_window_length_at_training_time_uses_the_stores_valid_mask(stores, tmp_path):
    a, _, _ = stores
    src = WindowSource.from_store(a, "cpu", window_length=50)
    want = split_window_starts(a.array("valid"), a.split_ids(), a.segment_bounds(), 50, "val")
    np.testing.assert_array_equal(src.starts("val"), want)
    assert len(want) > len(a.usable_window_starts("val"))  # shorter windows: more of them
    X, _, _ = src.loader("val", 4).batch(0, 0)
    assert X.shape == (4, 50, 10)
    s = train(a.path, tmp_path / "r", TrainConfig.from_dict({**TINY, "epochs": 1, "window_length": 50}))
    assert s["window_length"] == 50 and s["config"]["window_length"] == 50


# --- run files, tensorboard, graphs option ------------------------------------------------------


def test_tensorboard_logs_the_metrics_or_says_what_is_missing(stores, tmp_path, monkeypatch):
    a, _, _ = stores
    cfg = TrainConfig.from_dict({**TINY, "epochs": 1})
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(TrainError, match=r"--tensorboard needs the tensorboard package, which is not installed; "
                                             r"install it with pip install 'gpu-features\[tensorboard\]'"):
            train(a.path, tmp_path / "r", cfg, tensorboard=True)
        return
    train(a.path, tmp_path / "r", cfg, tensorboard=True)
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator

    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    line = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("val_mae", "train_loss", "lr"):
        (event,) = acc.Scalars(key)
        assert event.step == 1 and event.value == pytest.approx(line[key], rel=1e-6)
    (event,) = acc.Scalars("val_mae_per_feature/range_z")
    assert event.value == pytest.approx(line["val_mae_per_feature"]["range_z"], rel=1e-6)


def test_cuda_graphs_on_needs_one_process_on_a_gpu(stores, tmp_path):
    a, _, _ = stores
    with pytest.raises(TrainError, match="--cuda-graphs on needs one process on a CUDA device"):
        train(a.path, tmp_path / "r", TrainConfig.from_dict({**TINY, "cuda_graphs": "on"}))
    s = train(a.path, tmp_path / "auto", TrainConfig.from_dict({**TINY, "epochs": 1, "cuda_graphs": "auto"}))
    assert s["cuda_graphs"] is False  # auto: off on a CPU (the default is off, so auto is asked for by name)


def test_a_nan_mid_epoch_is_caught_one_check_later_without_waiting_each_step(stores, tmp_path, monkeypatch):
    import train.loop as loop

    a, _, _ = stores
    monkeypatch.setattr(loop, "CHECK_EVERY", 2)

    def poison(epoch, i, batch, model):
        if epoch == 0 and i == 0:
            with torch.no_grad():
                model.decoder.weight[0, 0] = float("nan")

    seen = []

    def hook(epoch, i, batch, model):
        poison(epoch, i, batch, model)
        seen.append(i)

    with pytest.raises(TrainError, match=r"loss became NaN in epoch 1 \(steps 1 to 2\); no epoch had completed"):
        train(a.path, tmp_path / "r", TrainConfig.from_dict({**TINY, "max_train_windows": 64}), on_batch=hook)
    assert seen == [0, 1, 2, 3]  # read at the check of step 4: the sums of step 2, one check late


def test_a_device_learning_rate_is_checkpointed_as_its_number(tmp_path):
    from train import checkpoint as ckpt

    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=torch.tensor(0.01), foreach=False)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt)
    assert meta["param_groups"][0]["lr"] == pytest.approx(0.01)
    ckpt.save_checkpoint(tmp_path, {"epoch": 1, "optimizer": meta}, tensors)  # JSON: no tensor left in it
    state, loaded = ckpt.load_checkpoint(tmp_path)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    ckpt.optimizer_from_tensors(opt2, loaded, state["optimizer"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01)
