"""ResNet-18 (CIFAR stem, synthetic batches) under plain PyTorch DDP with a chosen communication hook.

    torchrun --standalone --nproc-per-node 2 scripts/ddp_resnet.py --hook none --steps 12 --batch-size 32
    torchrun --standalone --nproc-per-node 2 scripts/ddp_resnet.py --hook topk --ratio 0.001 --json out.json

What a user would otherwise run, and sparsetrain's hooks in it: ``--hook none`` is DDP's own
all-reduce, ``powersgd`` PyTorch's PowerSGD hook (rank 4, after 2 dense iterations), anything else
a sparsetrain compressor through ``sparsetrain.ddp.register`` (``--one-bucket`` puts the whole model
in one bucket, the papers' flat selection). The model, data and optimizer are those of
``sparsetrain task=cifar10 task.synthetic=true``: SGD with Nesterov momentum 0.9 and weight decay
5e-4 on batches of random CIFAR-shaped images. Rank 0 writes every step's wall time, measured as
sparsetrain measures ``time/step_ms``: from making the batch to the end of the update, any wait
for the other rank included (the ranks meet once, before the first step), and the hook's traffic,
to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd
from torch.nn.parallel import DistributedDataParallel

import sparsetrain.ddp
from sparsetrain.tasks.resnet import build_resnet18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hook", default="none", help="none, powersgd, or a sparsetrain compressor (topk, ...)")
    parser.add_argument("--ratio", type=float, default=0.001)
    parser.add_argument("--one-bucket", action="store_true")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build_resnet18("cifar")
    bucket_cap_mb = 1 + 4 * sum(p.numel() for p in model.parameters()) / 2**20 if args.one_bucket else 25
    ddp = DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
    state = None
    if args.hook == "powersgd":
        ddp.register_comm_hook(powersgd.PowerSGDState(None, matrix_approximation_rank=4, start_powerSGD_iter=2),
                               powersgd.powerSGD_hook)
    elif args.hook != "none":
        state = sparsetrain.ddp.register(ddp, compressor=args.hook, ratio=args.ratio)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    data = torch.Generator().manual_seed(1 + rank)
    times = []
    dist.barrier()
    for _ in range(args.steps):
        started = time.perf_counter()
        images = torch.rand(args.batch_size, 3, 32, 32, generator=data)
        labels = torch.randint(0, 10, (args.batch_size,), generator=data)
        loss = torch.nn.functional.cross_entropy(ddp(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(1e3 * (time.perf_counter() - started))
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump({"step_ms": times, "stats": state.stats() if state is not None else {}}, f)
    dist.barrier()  # drain gloo's worker threads before exit (pytorch/pytorch#190489)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
