"""Data-parallel mechanics under torchrun: process group, reductions, rank-0-only writes.

``torchrun --nproc_per_node=N -m train ...`` starts N processes and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in
each; :func:`init` reads them and joins the process group: NCCL when the
run's device is a GPU (rank ``r`` uses GPU ``LOCAL_RANK``), gloo on CPUs.
Without those variables (or with ``WORLD_SIZE=1``) nothing is initialized
and every helper here is a no-op, so a plain ``python -m train`` is unchanged.

Everything collective is called by every rank at the same point of the loop
(same number of steps per epoch, decisions taken on reduced values), so no
rank ever waits on a collective the others never reach.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from gpu_features.devices import resolve_device

from .config import TrainError


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the run.

    Attributes:
        rank, world_size, local_rank: from torchrun's environment (0, 1, 0 without it).
        device: the torch device this rank trains on.
        backend: ``nccl``, ``gloo`` or None (one process, no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks in place (and return it); no-op for one process."""
        if self.active:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.active:
            if self.backend == "nccl":
                torch.distributed.barrier(device_ids=[self.device.index or 0])
            else:
                torch.distributed.barrier()

    def agree(self, ok: bool, message: str) -> None:
        """Raise ``TrainError(message)`` on every rank when any rank says ``ok`` is False.

        A check one rank fails and another passes would otherwise leave the others
        waiting in the next collective forever.
        """
        if self.active:
            flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
            self.all_reduce_sum(flag)
            ok = float(flag) == 0.0
        if not ok:
            raise TrainError(message)


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables, checked."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); "
                         "unset them to train in one process.") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise TrainError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} do not describe a rank of a run; "
                         "start several processes with torchrun, or unset them to train in one process.")
    return rank, world, local


def init(device: str = "auto") -> Dist:
    """Join torchrun's process group (when there is one) and pick this rank's device.

    Args:
        device: the run's device option: ``auto``, ``cpu`` or ``cuda``. Under torchrun on GPUs, rank
            ``r`` trains on ``cuda:LOCAL_RANK``.
    """
    rank, world, local = env_world()
    dev = resolve_device(device)
    if world == 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise TrainError(f"LOCAL_RANK {local} but torch sees {torch.cuda.device_count()} GPU(s); start at most "
                             "that many processes per node (torchrun --nproc_per_node).")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not torch.distributed.is_available():
        raise TrainError("this torch build has no torch.distributed; train in one process.")
    if not torch.distributed.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return Dist(rank, world, local, dev, backend)


def shutdown(d: Dist) -> None:
    """Leave the process group (after the last collective of the run).

    A barrier first: a gloo rank that tore its connections down while a peer was still finishing the
    last collective's sends would make that peer abort ("terminate called without an active exception").
    """
    if d.active and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (its state dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


__all__ = ["Dist", "env_world", "init", "shutdown", "unwrap"]
