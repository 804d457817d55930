"""What the trainer tests share: a tiny training config and a run's metrics read back."""
import json
from pathlib import Path

from train.config import TrainConfig
from train.loop import TIMING_FIELDS

K = 105
TINY = dict(epochs=3, batch_size=32, lr=3e-3, hidden_size=16, num_layers=2, dropout=0.2, max_train_windows=256,
            max_val_windows=128, max_final_windows=128, device="cpu", seed=11)


def tiny(**kw) -> TrainConfig:
    """A small, fast run config (the ``small`` profile with :data:`TINY` and ``kw`` on top)."""
    return TrainConfig.from_dict({**TINY, "profile": "small", **kw})


def metrics_of(run_dir) -> list[dict]:
    """The run's metrics.jsonl, one dict per line."""
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def untimed(metrics: list[dict]) -> list[dict]:
    """Metrics lines without their wall-clock fields (what two exact runs share)."""
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in metrics]
