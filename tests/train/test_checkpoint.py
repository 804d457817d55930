"""Checkpoints: atomic, and the optimizer state round-trips through safetensors and JSON."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train import checkpoint as ckpt  # noqa: E402
from train.config import TrainError  # noqa: E402


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
