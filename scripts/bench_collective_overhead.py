"""What each sparse exchange costs a CPU process beyond its bytes: one exchange per step against several.

    torchrun --standalone --nproc-per-node 2 scripts/bench_collective_overhead.py --pairs 60

``scope=bucket`` replaces a step's one sparse exchange with one per bucket (four for ResNet-18,
:mod:`sparsetrain.train.gradients`), carrying the same entries in all. Each exchange is a Top-k
compression of its stretch and a :class:`~sparsetrain.exchange.SparseExchange` round (zero the
stretch, pack the payload, an asynchronous all-gather, the scatter-add in its completion callback),
and costs CPU time whatever it carries: gloo's threads, the callbacks, the calls. On a machine whose cores are all computing
that time is taken from the compute, and this is what per bucket has to win back by hiding the
transfer. Here every step is a fixed compute (a loop of matrix products, one thread, about as long
as a ResNet-18 step) with ``--buckets`` exchanges started at even intervals through it, against
one started at its end; the two alternate step by step, the order swapping from pair to pair.
Both carry ``k = floor(ratio * dim)`` entries of a gradient of ``dim``; the buckets cut it in equal
parts. Rank 0 writes ``collective_overhead.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from sparsetrain.compressors.topk import TopK
from sparsetrain.exchange import build_exchange
from sparsetrain.layout import WorkerLayout

RESNET18_DIM = 11_173_962
CHUNKS = 60
"""Pieces of a step's compute; the bucketed exchanges start between them."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60, help="pairs of steps timed, after --warmup pairs")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--dim", type=int, default=RESNET18_DIM)
    parser.add_argument("--ratio", type=float, default=0.001)
    parser.add_argument("--buckets", type=int, default=4)
    parser.add_argument("--products", type=int, default=40, help="256x256 matrix products per compute chunk")
    parser.add_argument("--out", default="results/network")
    args = parser.parse_args()
    if args.buckets < 2:
        parser.error(f"--buckets={args.buckets}: compare one exchange with at least 2 (use --buckets 4, ResNet-18's)")

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    layout = WorkerLayout.create(rank, world, world)
    cpu = torch.device("cpu")
    ways = {1: [(0, args.dim)], args.buckets: [
        (args.dim * i // args.buckets, args.dim * (i + 1) // args.buckets) for i in range(args.buckets)]}
    compressors = {n: [TopK(dim=end - start, ratio=args.ratio) for start, end in stretches]
                   for n, stretches in ways.items()}
    exchanges = {n: [build_exchange(TopK, c.dim, c.k, layout, cpu) for c in cs] for n, cs in compressors.items()}
    gradient, gbar = torch.randn(args.dim), torch.empty(args.dim)
    left, right = torch.randn(256, 256), torch.randn(256, 256)

    def step(n: int) -> None:
        due = {CHUNKS * (i + 1) // n - 1: i for i in range(n)}
        in_flight = []
        for chunk in range(CHUNKS):
            for _ in range(args.products):
                left @ right
            if chunk in due:
                i = due[chunk]
                start, end = ways[n][i]
                exchanges[n][i].put(compressors[n][i].compress(gradient[start:end], 0))
                in_flight.append(exchanges[n][i].reduce_async(gbar[start:end])[0])
        for future in in_flight:
            future.wait()

    wall: dict[int, list[float]] = {n: [] for n in ways}
    cpu_ms: dict[int, list[float]] = {n: [] for n in ways}
    for pair in range(args.warmup + args.pairs):
        for n in list(ways) if pair % 2 == 0 else list(ways)[::-1]:
            dist.barrier()
            started, cpu_started = time.perf_counter(), time.process_time()
            step(n)
            if pair >= args.warmup:
                wall[n].append(1e3 * (time.perf_counter() - started))
                cpu_ms[n].append(1e3 * (time.process_time() - cpu_started))
    per_process: list[dict] = [{} for _ in range(world)]
    dist.all_gather_object(per_process, {"wall_ms": wall, "cpu_ms": cpu_ms})
    if rank == 0:
        write(args, per_process, {n: sum(c.k for c in cs) for n, cs in compressors.items()})
    dist.barrier()  # drain gloo's worker threads before exit (pytorch/pytorch#190489)
    dist.destroy_process_group()


def paired_median(values: dict, n: int) -> float:
    return statistics.median(b - a for a, b in zip(values[1], values[n]))


def write(args: argparse.Namespace, per_process: list[dict], entries: dict[int, int]) -> None:
    n = args.buckets
    measured = {
        "command": f"torchrun --standalone --nproc-per-node {len(per_process)} "
                   f"{' '.join(shlex.quote(a) for a in sys.argv)}",
        "date": str(datetime.date.today()), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "torch": torch.__version__, "dim": args.dim, "ratio": args.ratio, "buckets": n, "entries": entries,
        "pairs": args.pairs, "warmup": args.warmup, "per_process": per_process,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "collective_overhead.json").write_text(json.dumps(measured) + "\n")
    rows = []
    for rank, values in enumerate(per_process):
        wall, cpu = ({int(k): v for k, v in values[key].items()} for key in ("wall_ms", "cpu_ms"))
        for count in (1, n):
            rows.append(f"| {rank} | {count} | {entries[count]} | {statistics.median(wall[count]):.1f} | "
                        f"{statistics.median(cpu[count]):.1f} | " + (
                            f"{paired_median(wall, n):+.2f} | {paired_median(cpu, n):+.2f} |" if count == n else " | |"))
    lines = [
        "# What a sparse exchange costs a CPU process beyond its bytes",
        "",
        f"Made by `{measured['command']}` on {measured['date']} ({platform.node()}: {measured['machine']}, Python "
        f"{platform.python_version()}, torch {torch.__version__}). Two gloo processes on loopback, one compute "
        f"thread each. Every step is the same compute (about a ResNet-18 step here) during which one Top-k exchange "
        f"of a {args.dim:,}-entry gradient at ratio {args.ratio} runs, or {n} exchanges of its equal parts, started "
        f"at even intervals through the compute; the two alternate step by step ({args.pairs} pairs after "
        f"{args.warmup} of warm-up). Medians per step; the differences are paired ({n} exchanges minus 1). CPU: the "
        "process's time on all its threads.",
        "",
        "| process | exchanges per step | entries sent | step (ms) | CPU (ms) | step, difference (ms) | CPU, difference (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    (out / "collective_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
