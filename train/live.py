"""The encoder on the latest window: Jade's embeddings and reconstructions for every symbol of a live stream.

::

    stream_store = gf.open_store("data/features/nq")
    stream = gf.FeatureStream.from_store(stream_store)
    run = train.load_run("runs/demo", device="cuda")
    run.check_store(stream_store)                # the stream's features must be the run's
    encoder = LiveEncoder(run)                   # eval mode; on CUDA the fixed-shape batch is a CUDA graph
    stream.update(closed_bars)
    out = encoder(*stream.window())              # every symbol in one batch
    out.embedding       # [S, 2H] mean of the encoder states over the window's valid bars
    out.reconstruction  # [S, K, 10] Jade's reconstruction of each bar, nothing masked
    out.usable          # [S] bool: all K bars valid (the windows the model was trained on)

The encoder is bidirectional, so each new bar re-runs the whole window: the
batch is the S symbols' latest K bars, one forward pass. The features are
bit-identical to the offline build (gpu_features.stream); the encoder's own
arithmetic is torch's, as in training.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .embed import encode_windows
from .jade import Jade
from .load import LoadedRun
from .step import GRAPH_WARMUP_STEPS


class LiveOutput(NamedTuple):
    """The encoder's view of the latest windows.

    Attributes:
        embedding: ``[S, 2 * hidden_size] float32``, the encoder states averaged over each window's valid bars
            (zeros for a window with none): :func:`train.embed.pool`, as ``python -m train embed`` writes them.
        reconstruction: ``[S, K, n_features] float32``.
        usable: ``[S] bool``, True where all K bars are valid.
    """

    embedding: torch.Tensor
    reconstruction: torch.Tensor
    usable: torch.Tensor


def encode_window(model: Jade, X: torch.Tensor, valid: torch.Tensor) -> LiveOutput:
    """Embeddings and reconstructions of windows ``X [S, K, 10]`` with validity ``valid [S, K]``, one batch.

    Runs in eval mode without gradients (the model's mode is restored); nothing is masked. A model trained
    with the position channel gets it appended here, as the loader does.
    """
    _check(model, X, valid)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _forward(model, X, valid)
    finally:
        model.train(was_training)


def _check(model: Jade, X: torch.Tensor, valid: torch.Tensor) -> None:
    D = model.config.n_features
    if X.ndim != 3 or X.shape[-1] != D or tuple(valid.shape) != tuple(X.shape[:2]):
        from .config import TrainError

        raise TrainError(f"the encoder takes windows [S, K, {D}] with validity [S, K], got {tuple(X.shape)} and "
                         f"{tuple(valid.shape)}; pass stream.window() of a stream with the model's features.")


def _forward(model: Jade, X: torch.Tensor, valid: torch.Tensor) -> LiveOutput:
    embedding, states = encode_windows(model, X, valid)  # the project's one pooling (train.embed)
    return LiveOutput(embedding, model.decoder(states), valid.all(dim=1))


class LiveEncoder:
    """:func:`encode_window` for a stream's every update; on CUDA the fixed-shape batch is a CUDA graph.

    Args:
        model: a :class:`train.load.LoadedRun` (``train.load_run(run_dir)``) or a Jade; put in eval mode here
            and left there.
        graphs: ``"auto"`` (capture on CUDA), ``True`` or ``False``. A graph is captured for the first
            window shape seen and again whenever the shape changes (a symbol joins the stream).

    ``encoder(X, valid)`` returns a :class:`LiveOutput` of tensors owned by the caller (copies of the
    graph's static outputs).
    """

    def __init__(self, model: Jade | LoadedRun, graphs="auto"):
        model = model.model if isinstance(model, LoadedRun) else model
        self.model = model.eval()
        device = next(model.parameters()).device
        self.graphs = device.type == "cuda" if graphs == "auto" else bool(graphs)
        if self.graphs and device.type != "cuda":
            from .config import TrainError

            raise TrainError(f"CUDA graphs need the model on a CUDA device, it is on {device}; use graphs=False.")
        self._graph = None
        self._static_in: tuple | None = None
        self._static_out: LiveOutput | None = None

    def __call__(self, X: torch.Tensor, valid: torch.Tensor) -> LiveOutput:
        _check(self.model, X, valid)
        if not self.graphs:
            with torch.no_grad():
                return _forward(self.model, X, valid)
        if self._graph is None or tuple(self._static_in[0].shape) != tuple(X.shape):
            self._capture(X, valid)
        self._static_in[0].copy_(X)
        self._static_in[1].copy_(valid)
        self._graph.replay()
        return LiveOutput(*(t.clone() for t in self._static_out))

    def _capture(self, X: torch.Tensor, valid: torch.Tensor) -> None:
        """Capture :func:`_forward` on static copies of inputs shaped like ``X`` (PyTorch's warm-up pattern)."""
        self._graph = None
        self._static_in = (X.clone(), valid.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                _forward(self.model, *self._static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            self._static_out = _forward(self.model, *self._static_in)
        self._graph = graph


__all__ = ["LiveEncoder", "LiveOutput", "encode_window"]
