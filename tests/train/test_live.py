"""train/live.py: Jade on the stream's latest windows, every symbol in one batch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the encoder needs torch (make test installs it)")

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.jade import Jade, JadeConfig  # noqa: E402
from train.live import LiveEncoder, encode_window  # noqa: E402
from tests.test_stream import as_table  # noqa: E402


@pytest.fixture(scope="module")
def live_stream():
    """A stream of 4 symbols: 3 past K bars with swings, one young (100 bars: its window starts with padding)."""
    bars = synthetic.generate(260, 4, seed=2)
    stream = gf.FeatureStream(engine="reference")
    b = bars.segment_bounds()
    rows = np.concatenate([np.arange(b[s], b[s + 1] - (160 if s == 3 else 0)) for s in range(4)])
    stream.update(as_table(bars, rows))
    return stream


def model(position: bool = False) -> Jade:
    torch.manual_seed(0)
    return Jade(JadeConfig(hidden_size=8, num_layers=2, position_channel=position))


@pytest.mark.parametrize("position", [False, True])
def test_one_batch_gives_the_models_own_outputs(live_stream, position):
    net = model(position)
    X, valid = live_stream.window()
    out = encode_window(net, X, valid)
    S, K = valid.shape
    assert tuple(out.embedding.shape) == (S, 16) and tuple(out.reconstruction.shape) == (S, K, 10)
    assert out.usable.tolist() == valid.all(dim=1).tolist() == [True, True, True, False]
    net.eval()
    with torch.no_grad():
        Xin = X if not position else torch.cat([X, (torch.arange(K) / (K - 1)).view(1, K, 1).expand(S, K, 1)], -1)
        mask = torch.zeros(S, K, dtype=torch.bool)
        assert torch.equal(out.reconstruction, net(Xin, mask))
        states = net.encode(Xin, mask)
    for s in range(S):
        want = states[s][valid[s]].mean(dim=0) if valid[s].any() else torch.zeros(16)
        assert torch.allclose(out.embedding[s], want, atol=1e-6)
        # and a symbol alone gives what it gets in the batch
        alone = encode_window(net, X[s:s + 1], valid[s:s + 1])
        assert torch.allclose(alone.embedding[0], out.embedding[s], atol=1e-6)
        assert torch.allclose(alone.reconstruction[0], out.reconstruction[s], atol=1e-6)


def test_encode_window_restores_the_training_mode_and_the_encoder_stays_in_eval(live_stream):
    net = model()
    net.train()
    X, valid = live_stream.window()
    a = encode_window(net, X, valid)
    assert net.training
    enc = LiveEncoder(net, graphs=False)
    assert not net.training
    b = enc(X, valid)
    assert torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.embedding, b.embedding)


def test_windows_of_the_wrong_shape_or_device_are_refused(live_stream):
    X, valid = live_stream.window()
    with pytest.raises(TrainError, match=r"windows \[S, K, 10\]"):
        encode_window(model(), X[..., :5], valid)
    with pytest.raises(TrainError, match="CUDA graphs need the model on a CUDA device"):
        LiveEncoder(model(), graphs=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device (torch sees none)")
def test_the_cuda_graph_replays_what_the_eager_batch_gives(live_stream):
    net = model().cuda()
    X, valid = (t.cuda() for t in live_stream.window())
    enc = LiveEncoder(net)
    assert enc.graphs
    got = enc(X, valid)
    want = encode_window(net, X, valid)
    for a, b in zip(got, want):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    X2 = X.flip(0).contiguous()
    got2, want2 = enc(X2, valid.flip(0)), encode_window(net, X2, valid.flip(0))
    assert torch.allclose(got2.reconstruction, want2.reconstruction, atol=1e-5)
    assert not torch.equal(got2.reconstruction, got.reconstruction)  # outputs are the caller's, not overwritten
