"""The trainer on a CUDA device: bf16 runs, device batches, masked-input invariance and exact resume there."""
import json

import pytest

torch = pytest.importorskip("torch")

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402

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
