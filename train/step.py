"""One training step, eager or captured into a CUDA graph and replayed; and the lagged non-finite check.

A B = 256 step of Jade is launch-bound on a GPU (one H100 run of the eager step:
127 kernels, 5.5 ms of mostly host time). :class:`TrainStep` with ``graphs=True`` captures forward,
loss, backward, gradient clipping and the fused, capturable AdamW step once per
epoch and replays the graph for every full batch: inputs are copied into static
tensors, the learning rate is a device tensor filled before each replay, and
the step's statistics are a static output added to the epoch sums, so the host
never waits for the device.

Exact resume with graphs: capturing needs a few warm-up steps, which would move
the weights and the AdamW moments; they are snapshotted before and copied back
(in place, so the graph's addresses stay valid) after the capture. Capturing
happens at the start of every epoch, right after the epoch's dropout seed is
set, so the generator state each replay sees (Philox offsets and cuDNN's
dropout state, which PyTorch re-initializes after a re-seed) is a function of
``(seed, epoch, step)`` whether the run started at epoch 0 or resumed at ``e``.
A last partial batch runs eagerly. Graphs are used by one process on one GPU
only (DDP's gradient hooks are not captured here).

NOT YET RUN ON A GPU: this path was written without a device; the GPU tests in
``tests/train/test_gpu.py`` (skipped elsewhere) check it against the eager step
and check its exact resume.
"""
from __future__ import annotations

import contextlib
import math

import torch

GRAPH_WARMUP_STEPS = 3   # PyTorch's documented pattern warms up on a side stream before capturing


def batch_stats(model, recon, X, mask, valid, loss, huber) -> torch.Tensor:
    """``[4] float64`` of one step: loss, huber, summed |error| at masked valid bars, masked positions x D."""
    D = model.config.n_features
    with torch.no_grad():
        w = (mask & valid).unsqueeze(-1)
        err = ((recon.float() - X[..., :D]).abs() * w).sum()
        return torch.stack([loss.detach().double(), huber.detach().double(), err.double(), w.sum().double() * D])


class TrainStep:
    """``step(X, mask, valid, lr) -> [4] float64`` statistics; updates the model in place.

    Args:
        model: the Jade module (unwrapped), for its loss and parameters.
        net: what the forward pass calls (``model`` or its DistributedDataParallel wrapper).
        opt: AdamW; with ``graphs`` built with ``capturable=True`` and a tensor learning rate.
        grad_clip: max global gradient norm.
        autocast: a zero-argument callable returning the autocast context.
        graphs: capture and replay (CUDA only).
    """

    def __init__(self, model, net, opt, grad_clip: float, autocast, graphs: bool = False):
        self.model, self.net, self.opt, self.grad_clip, self.autocast = model, net, opt, grad_clip, autocast
        self.graphs = bool(graphs)
        self._graph = None
        self._static: tuple | None = None
        self._stats = None
        if self.graphs:
            lr = opt.param_groups[0]["lr"]
            self._lr = lr if torch.is_tensor(lr) else torch.tensor(float(lr), device=next(model.parameters()).device)
            self.set_tensor_lr()

    def set_tensor_lr(self) -> None:
        """Point every param group at the one device learning rate (again after ``opt.load_state_dict``)."""
        for g in self.opt.param_groups:
            g["lr"] = self._lr

    def _body(self, X, mask, valid) -> torch.Tensor:
        with self.autocast():
            recon = self.net(X, mask)
        loss, huber = self.model.loss(recon, X, mask, valid)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return batch_stats(self.model, recon, X, mask, valid, loss, huber)

    def __call__(self, X, mask, valid, lr: float) -> torch.Tensor:
        if self._graph is not None and tuple(X.shape) == tuple(self._static[0].shape):
            for dst, src in zip(self._static, (X, mask, valid)):
                dst.copy_(src)
            self._lr.fill_(lr)
            self._graph.replay()
            return self._stats
        if self.graphs:
            self._lr.fill_(lr)
        else:
            for g in self.opt.param_groups:
                g["lr"] = lr
        return self._body(X, mask, valid)

    # --- capture -------------------------------------------------------------------------------

    def capture(self, X, mask, valid) -> None:
        """Capture one step on batches shaped like ``X``; weights and AdamW state are left as they were."""
        self._graph = None
        params = [p for p in self.model.parameters()]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() for k, v in self.opt.state[p].items() if torch.is_tensor(v)}
                       for p in params if p in self.opt.state}
        self._static = (X.clone(), mask.clone(), valid.clone())
        lr_now = self._lr.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self._body(*self._static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._stats = self._body(*self._static)
        with torch.no_grad():
            for p, v in zip(params, saved_params):
                p.copy_(v)
            for p in params:
                if p not in self.opt.state:
                    continue
                for k, v in self.opt.state[p].items():
                    if not torch.is_tensor(v):
                        continue
                    if p in saved_state and k in saved_state[p]:
                        v.copy_(saved_state[p][k])
                    else:
                        v.zero_()  # state AdamW created in the warm-up: its lazy initial value is zeros
            self._lr.copy_(lr_now)
        self._graph = graph

    def release(self) -> None:
        self._graph, self._static, self._stats = None, None, None


def graph_autocast(enabled: bool):
    """bf16 autocast without the weight-cast cache (a cache would outlive a graph's replay)."""
    if enabled:
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


class LaggedCheck:
    """Read the epoch's (reduced) sums one check late, so the host never waits on the device mid-epoch.

    ``push(sums, step)`` every few steps reduces a snapshot over ranks and starts its copy to
    the host; ``pop()`` at the next push returns the previous snapshot, long complete by then.
    Every rank pushes and pops at the same steps and reads the same reduced values, so all
    ranks take the same decision.
    """

    def __init__(self, dist, device):
        self.dist, self.device = dist, device
        self._pending = None

    def push(self, sums: torch.Tensor, step: int, batches: int) -> None:
        snap = self.dist.all_reduce_sum(sums.clone())
        if self.device.type == "cuda":
            host = torch.empty(snap.shape, dtype=snap.dtype, pin_memory=True)
            host.copy_(snap, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (host, event, step, batches)
        else:
            self._pending = (snap, None, step, batches)

    def pop(self):
        """``(values, step, batches)`` of the previous push, or None."""
        if self._pending is None:
            return None
        host, event, step, batches = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        return host.tolist(), step, batches


def finite(values) -> bool:
    return all(math.isfinite(x) for x in values)


__all__ = ["GRAPH_WARMUP_STEPS", "LaggedCheck", "TrainStep", "batch_stats", "finite", "graph_autocast"]
