"""An ordinary PyTorch DDP training script whose gradient compression is one line.

    torchrun --standalone --nproc-per-node 2 scripts/ddp_example.py                   # CPU, gloo
    torchrun --standalone --nproc-per-node 2 scripts/ddp_example.py --compressor regtopk --ratio 0.01
    torchrun --standalone --nproc-per-node <gpus> scripts/ddp_example.py --device cuda   # NCCL

A small MLP learns a fixed random teacher network on inputs drawn from the seed (no download).
Each rank draws its own batches; DDP averages the gradients, here through sparsetrain's Top-k hook
with error feedback. Rank 0 prints the loss and the traffic every 50 steps.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import sparsetrain.ddp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressor", default="topk")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank = dist.get_rank()
    device = torch.device(args.device, int(os.environ["LOCAL_RANK"])) if args.device == "cuda" else torch.device("cpu")
    torch.manual_seed(0)  # the same teacher and initial student on every rank
    teacher = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1)).to(device)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)).to(device)
    ddp_model = DistributedDataParallel(model)

    state = sparsetrain.ddp.register(ddp_model, compressor=args.compressor, ratio=args.ratio)  # the one line

    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator(device="cpu").manual_seed(1 + rank)  # each rank its own batches
    for step in range(1, args.steps + 1):
        inputs = torch.randn(64, 32, generator=data).to(device)
        with torch.no_grad():
            targets = teacher(inputs)
        loss = nn.functional.mse_loss(ddp_model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and (step % 50 == 0 or step == 1):
            stats = state.stats()
            print(f"step {step:4d}  loss {loss.item():.4f}  sent {stats['comm/bytes_sent'] / 1e3:.1f} kB/step "
                  f"(dense: {4 * sum(p.numel() for p in model.parameters()) / 1e3:.1f} kB)  "
                  f"selected {stats['comm/selected']:.0f}", flush=True)
    dist.barrier()  # drain gloo's worker threads before exit (pytorch/pytorch#190489)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
