"""Jade: masked-autoencoder pretraining on gpu-features stores.

    from train.jade import JadeConfig, Jade
    recon = Jade(JadeConfig())(X, mask)          # [B, K, 10]
    from train.loop import train
    summary = train("data/features/demo", "runs/demo")

``python -m train --help`` for the command line.
"""
import os

# Exact resume on a GPU needs the same reduction order in every run: PyTorch documents this
# cuBLAS setting for deterministic LSTM results. cuBLAS reads it when CUDA first creates a
# cuBLAS handle, so it is set here, on import, before any training code touches the GPU;
# a value the user already set is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
