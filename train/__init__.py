"""Jade: masked-autoencoder pretraining on gpu-features stores.

    from train.jade import JadeConfig, Jade
    recon = Jade(JadeConfig())(X, mask)          # [B, K, 10]
    from train.loop import train
    summary = train("data/features/demo", "runs/demo")

``python -m train --help`` for the command line. Importing the package changes
nothing: the deterministic cuBLAS setting exact resume needs is made by
``train.loop.prepare``, the entry point of every run.
"""
