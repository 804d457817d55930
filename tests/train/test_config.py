"""train/config.py: TrainConfig refuses values that would train nothing (and the loader those it cannot cut)."""
import math

import numpy as np
import pytest


def test_training_values_that_train_nothing_are_refused():
    torch = pytest.importorskip("torch")
    from gpu_features.windows import WindowError, WindowLoader
    from train.config import TrainConfig, TrainError

    with pytest.raises(TrainError, match="grad_clip = inf is not a finite number"):
        TrainConfig(grad_clip=math.inf)
    feats, valid = torch.zeros(500, 10), torch.ones(500, dtype=torch.bool)
    starts = np.arange(10)
    with pytest.raises(WindowError, match=r"mask_ratio 1e-05 masks no bar of a 105-bar window"):
        WindowLoader(feats, valid, starts, 105, 8, mask_ratio=1e-5)
    with pytest.raises(WindowError, match=r"patch_length 200 is longer than the window \(105 bars\)"):
        WindowLoader(feats, valid, starts, 105, 8, mask="patch", patch_length=200)
