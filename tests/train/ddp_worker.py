"""One rank of the 2-rank gloo tests (started by torch.multiprocessing.spawn from tests/train/test_distributed.py).

Each rank joins the process group from the variables torchrun would set, then
runs, in one process group: a full run, a run interrupted in epoch 2, and its
resume; it writes what it saw to ``out/rank<r>.json`` for the test to compare.
"""
import gc
import json
import os
from pathlib import Path


def rank_main(rank: int, world: int, port: int, stores: list, out: str, cfg_dict: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch

    torch.set_num_threads(1)  # two ranks share the box's cores
    from train import distributed
    from train.config import TrainConfig
    from train.loop import prepare

    out = Path(out)
    writes = []
    if rank != 0:  # every file of a run is committed by os.replace (atomic writers): record any that rank 1 makes
        real = os.replace

        def spy(src, dst, *a, **kw):
            writes.append(str(dst))
            return real(src, dst, *a, **kw)

        os.replace = spy
    cfg = TrainConfig.from_dict(cfg_dict)
    result = {"rank": rank}

    run = prepare(stores, out / "full", cfg, quiet=True)
    result["orders"] = [run.train_loader.rank_order(e).tolist() for e in range(cfg.epochs)]
    result["n_batches"] = len(run.train_loader)
    run.fit()
    # every parameter, log sigma included (used by the loss, outside DDP's forward), as exact numbers
    result["weights"] = {k: v.double().flatten().tolist() for k, v in run.model.state_dict().items()}
    result["full"] = {"summary": run.finish(), "history": run.state["history"]}

    def interrupt(epoch, i, batch, model):
        if epoch == 1 and i == 1:
            raise KeyboardInterrupt

    run = prepare(stores, out / "cut", cfg, quiet=True)
    try:
        run.fit(interrupt)
    except KeyboardInterrupt:
        result["cut_epochs"] = run.state["epoch"]
    distributed.Dist(rank, world, rank, run.device, "gloo").barrier()
    run = prepare(stores, out / "cut", None, resume=True, quiet=True)
    run.fit()
    result["resumed"] = {"summary": run.finish(), "history": run.state["history"]}
    result["writes"] = writes
    dist = run.dist
    # Three runs in one process: free the earlier runs' DDP models (and the process group they hold)
    # while the interpreter is alive. Left to the interpreter's teardown, a gloo rank sometimes aborted
    # there ("terminate called without an active exception", no Python frame on the stack).
    del run
    gc.collect()
    distributed.shutdown(dist)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
