"""The trainer on a CUDA device: bf16 runs, device batches, masked-input invariance and exact resume there."""
import json

import pytest

torch = pytest.importorskip("torch")

from gpu_features import synthetic  # noqa: E402
from train.loop import deterministic_cublas  # noqa: E402

# PyTorch reads CUBLAS_WORKSPACE_CONFIG once per process, at its first cuBLAS call; a test here that runs
# the model before train() (masked-input invariance) would otherwise fix it unset for the resume tests.
deterministic_cublas()

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")]

K = 105
TINY = dict(epochs=3, batch_size=64, lr=3e-3, hidden_size=32, num_layers=2, dropout=0.2, max_train_windows=1024,
            max_val_windows=256, max_final_windows=256, device="cuda", seed=3, profile="full")


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    return make_store(synthetic.generate(24_000, 1, 5), tmp_path_factory.mktemp("g") / "s")


def _lines(path):
    from train.loop import TIMING_FIELDS

    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_FIELDS}
            for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_loader_batches_live_on_the_gpu(store):
    from gpu_features.windows import WindowSource

    src = WindowSource.from_store(store, "cuda")
    assert src.features.is_cuda
    X, mask, valid = src.loader("train", 4096, seed=0).batch(0, 0)
    assert X.is_cuda and mask.is_cuda and valid.is_cuda and X.shape == (4096, K, 10)
    assert (mask.sum(1) == int(0.15 * K)).all() and not (mask & ~valid).any()
    F = store.array("features")
    s = int(src.loader("train", 4096, seed=0).order(0)[5])
    assert torch.equal(X[5].cpu(), torch.from_numpy(F[s:s + K]))


def test_masked_bars_cannot_reach_the_output_under_bf16():
    from train.jade import Jade, JadeConfig

    torch.manual_seed(0)
    model = Jade(JadeConfig()).cuda().eval()
    X = torch.randn(64, K, 10, device="cuda")
    mask = torch.rand(64, K, device="cuda") < 0.15
    X2 = torch.where(mask.unsqueeze(-1), torch.randn_like(X) * 50, X)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.equal(model(X, mask), model(X2, mask))


def test_bf16_training_run_on_the_gpu(store, tmp_path):
    from train.config import TrainConfig
    from train.loop import train

    s = train(store.path, tmp_path / "r", TrainConfig.from_dict(TINY))
    assert s["device"].startswith("cuda") and s["bf16"] is True
    for split in ("val", "test"):
        assert all(v == v for v in s[split]["model"])  # finite, not NaN
    assert s["beats_mean_on_val"]
    assert (tmp_path / "r" / "model.safetensors").is_file() and len(_lines(tmp_path / "r")) == 3


def test_resume_on_the_gpu_reproduces_the_metrics(store, tmp_path):
    from train.config import TrainConfig
    from train.loop import train

    cfg = TrainConfig.from_dict(TINY)
    train(store.path, tmp_path / "full", cfg)

    def interrupt(epoch, i, batch, model):
        if epoch == 2 and i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(store.path, tmp_path / "cut", cfg, on_batch=interrupt)
    train(store.path, tmp_path / "cut", None, resume=True)
    assert _lines(tmp_path / "cut") == _lines(tmp_path / "full")


# --- the captured step (train/step.py): written without a GPU; these are its first checks ---------


def test_cuda_graph_step_matches_the_eager_step(store, tmp_path):
    """One epoch with the step replayed from a CUDA graph against the same epoch run eagerly (fp32)."""
    from train.config import TrainConfig
    from train.loop import train

    cfg = dict(TINY, epochs=1, bf16=False, dropout=0.0)
    eager = train(store.path, tmp_path / "eager", TrainConfig.from_dict(dict(cfg, cuda_graphs="off")))
    graph = train(store.path, tmp_path / "graph", TrainConfig.from_dict(dict(cfg, cuda_graphs="on")))
    assert graph["cuda_graphs"] is True and eager["cuda_graphs"] is False
    a, b = _lines(tmp_path / "eager")[0], _lines(tmp_path / "graph")[0]
    # capturable fused AdamW and eager fused AdamW may round differently: close, not bitwise
    for key in ("train_loss", "train_mae", "val_mae"):
        assert b[key] == pytest.approx(a[key], rel=1e-3), key


def test_cuda_graph_run_resumes_exactly_with_a_partial_last_batch(store, tmp_path):
    from train.config import TrainConfig
    from train.loop import train

    cfg = TrainConfig.from_dict(dict(TINY, max_train_windows=1000, cuda_graphs="auto"))  # 15 full batches + 40
    full = train(store.path, tmp_path / "full", cfg)
    assert full["cuda_graphs"] is True  # auto: on for one process on CUDA

    def interrupt(epoch, i, batch, model):
        if epoch == 1 and i == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(store.path, tmp_path / "cut", cfg, on_batch=interrupt)
    train(store.path, tmp_path / "cut", None, resume=True)
    assert _lines(tmp_path / "cut") == _lines(tmp_path / "full")


def test_torchrun_with_one_gpu_process(store, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "-m", "train",
                        "--store", str(store.path), "--run-dir", str(tmp_path / "r"), "--device", "cuda", "--quiet",
                        "--epochs", "1", "--batch-size", "64", "--hidden-size", "32", "--max-train-windows", "512",
                        "--max-val-windows", "256", "--max-final-windows", "256"],
                       cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)},
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["world_size"] == 1 and s["device"].startswith("cuda")
