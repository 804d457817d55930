"""Jade: masked-autoencoder pretraining on gpu-features stores, and the trained encoder put to use.

    from train.jade import JadeConfig, Jade
    recon = Jade(JadeConfig())(X, mask)          # [B, K, 10]
    from train.loop import train
    summary = train("data/features/demo", "runs/demo")

    import train
    run = train.load_run("runs/demo")             # the trained Jade, its settings (train/load.py)
    emb = train.embed_run(run, split="test")      # one embedding per window (train/embed.py)
    record = train.run_probe(run, ["return-sign:5"])   # the downstream probe (train/probe.py)

``python -m train --help`` for the command line. Importing the package changes
nothing and imports no torch: the names above are loaded when first used, and the
deterministic cuBLAS setting exact resume needs is made by ``train.loop.prepare``,
the entry point of every run.
"""
import importlib

_LAZY = {"load_run": "train.load", "LoadedRun": "train.load", "jade_from_file": "train.load",
         "embed_run": "train.embed", "write_embeddings": "train.embed", "Embeddings": "train.embed",
         "run_probe": "train.probe", "ProbeSettings": "train.probe"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")


__all__ = sorted(_LAZY)
