"""Jade, the BiLSTM masked autoencoder: masked inputs cannot reach the output, shapes, the loss."""
import math

import pytest

torch = pytest.importorskip("torch")

from tests.train.runs import K  # noqa: E402
from train.jade import Jade, JadeConfig, JadeConfigError  # noqa: E402


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
