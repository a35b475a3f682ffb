"""Data-parallel CNN training with PyTorch DDP, one process per CPU socket or GPU, via ``torchrun``.

::

    torchrun --standalone --nproc-per-node 2 -m smi_deep.ddp data/phantom-v1 \\
        --model cnn-paper --view lateral --out /tmp/cnn-ddp

Every process reads the same manifest and builds the same
:class:`~smi_deep.regressor.CNNRegressor` with the same seed; inside a process group,
``fit`` wraps the network in ``DistributedDataParallel`` and each rank trains on its
share (``rank::world``) of every batch, so a step sees the same batch as a single
process does and the gradients are averaged over the ranks (the loss is weighted so
the average is the batch mean). The batch order, the augmentation draws (made for the
whole batch on every rank) and the initial weights (rank 0's, broadcast) do not depend
on the world size; dropout has a stream per rank, and batch-norm statistics are per
rank's share (gloo has no synchronised batch norm on CPUs), so a run is reproducible
for a fixed world size and close to, not equal to, the single-process run.

Backend: NCCL when the processes train on CUDA GPUs (each on ``cuda:LOCAL_RANK``),
gloo on CPUs. Rank 0 writes the model folder; the others only train.
"""

from __future__ import annotations

import argparse
import os
import sys


def init_process_group(device: str = "auto") -> tuple[str, int, int]:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...).

    Returns ``(device, rank, world_size)``; the device is ``cuda:LOCAL_RANK`` with the
    NCCL backend where CUDA is asked for (or ``auto`` finds it), else ``cpu`` with gloo.
    """
    import torch
    import torch.distributed as dist

    from .regressor import resolve_device

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("smi_deep.ddp runs under torchrun (it sets RANK and WORLD_SIZE), e.g. "
                           "torchrun --standalone --nproc-per-node 2 -m smi_deep.ddp DATASET ...")
    kind = resolve_device(device)
    if kind.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}", dist.get_rank(), dist.get_world_size()
    dist.init_process_group("gloo")
    return "cpu", dist.get_rank(), dist.get_world_size()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun ... -m smi_deep.ddp", description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--model", default="cnn-paper", choices=("cnn-paper", "cnn-lite"))
    parser.add_argument("--view", default="lateral", choices=("lateral", "posterior", "both"))
    parser.add_argument("--out", required=True, help="model folder (written by rank 0)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    import json
    import time

    import torch.distributed as dist

    from smi_data.manifest import read_manifest, to_samples

    from .modelio import save_model
    from .regressor import CNNRegressor

    device, rank, world = init_process_group(args.device)
    try:
        samples = to_samples(read_manifest(args.dataset), args.view)
        samples = samples[samples["smi"].notna()].reset_index(drop=True)
        est = CNNRegressor(variant=args.model, epochs=args.epochs, random_state=args.seed,
                           device=device, n_threads=args.threads)
        t0 = time.perf_counter()
        est.fit(samples.drop(columns=["smi"]), samples["smi"].to_numpy(dtype=float))
        seconds = time.perf_counter() - t0
        if rank == 0:
            save_model(est, args.out, overwrite=args.overwrite,
                       extra_meta={"view": args.view, "dataset": str(args.dataset),
                                   "ddp": {"world_size": world, "device": device, "fit_seconds": round(seconds, 1)}})
            print(json.dumps({"world_size": world, "device": device, "fit_seconds": round(seconds, 1),
                              "final_train_loss": est.history_[-1]["train_loss"], "out": str(args.out)}))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
