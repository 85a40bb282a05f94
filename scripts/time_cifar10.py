"""Per-step time of ResNet-18 on CIFAR-10 and its split: compute, selection, exchange.

    python scripts/time_cifar10.py [--device cpu] [--nproc 2] [--workers N] [--batch-size 32] [--steps 12] [--repeats 2]
                                   [--out results/cifar10/step_time.md]

Runs ``sparsetrain`` on synthetic CIFAR-shaped data (``task.synthetic=true``: the timing does not
depend on the pixels) for dense, topk, gaussiank and regtopk at ratio 0.001, interleaved
(compressor after compressor, ``--repeats`` rounds), so that all are measured side by side under
the same machine load. Per step, from metrics.jsonl: ``time/step_ms`` (the whole synchronous step,
averaged over processes), ``time/select_ms`` (the compressor, per worker) and ``time/comm_ms`` (the
exchange backward did not hide, per process); compute = step - select - exchange (forward,
backward, optimizer, the error-feedback bookkeeping outside selection). The first ``--warmup``
steps of every run are dropped. On CUDA every timer synchronises the device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

COMPRESSORS = ("dense", "topk", "gaussiank", "regtopk")


def run(compressor: str, args: argparse.Namespace, run_dir: Path) -> list[dict]:
    cmd = [
        "sparsetrain", "task=cifar10", "task.synthetic=true", "task.synthetic_samples=20000",
        f"task.batch_size={args.batch_size}", "task.eval_samples=100", f"compressor={compressor}",
        f"ratio={args.ratio}", f"dist.device={args.device}", f"dist.nproc={args.nproc}",
        f"train.steps={args.steps}", "train.epochs=null", "log.eval_every=null", "ckpt.every=0",
        "log.tensorboard=false", f"hydra.run.dir={run_dir}",
        *([f"dist.workers={args.workers}"] if args.workers else []),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["step"] > args.warmup]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="logical workers (default: one per process)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ratio", type=float, default=0.001)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="results/cifar10/step_time.md")
    args = parser.parse_args()
    steps: dict[str, list[dict]] = {c: [] for c in COMPRESSORS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for compressor in COMPRESSORS:
                records = run(compressor, args, Path(tmp) / f"{compressor}-{repeat}")
                steps[compressor] += records
                print(f"{compressor} round {repeat}: median step "
                      f"{statistics.median(r['time/step_ms'] for r in records):.0f} ms", flush=True)
    if args.device == "cuda":
        machine = torch.cuda.get_device_name(0)
    else:
        machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    workers = args.workers or args.nproc
    layout = f"{workers} workers on {args.nproc} process{'es' if args.nproc > 1 else ''}"
    lines = [
        f"# ResNet-18 on CIFAR-10: time per step and its split ({args.device}, {layout})",
        "",
        f"Made by `python {' '.join(shlex.quote(a) for a in sys.argv)}` on {datetime.date.today()} "
        f"({platform.node()}: {machine}, Python {platform.python_version()}, torch {torch.__version__}). "
        f"`sparsetrain task=cifar10 task.synthetic=true compressor=<c> ratio={args.ratio} dist.nproc={args.nproc} "
        f"{f'dist.workers={workers} ' if args.workers else ''}task.batch_size={args.batch_size} "
        f"train.steps={args.steps}`: {layout}, "
        f"batch {args.batch_size} per worker, synthetic CIFAR-shaped data, d = 11,173,962. Compressors ran "
        f"interleaved, {args.repeats} rounds; steps 1-{args.warmup} of each run dropped; "
        f"{len(steps[COMPRESSORS[0]])} steps per compressor. Milliseconds; compute = step - select - exchange.",
        "",
        "| compressor | mean step | median step | compute | select | exchange | selected per worker | bytes sent per worker |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = []
    for compressor, records in steps.items():
        mean = lambda key: statistics.fmean(r[key] for r in records)  # noqa: E731
        step, select, comm = mean("time/step_ms"), mean("time/select_ms"), mean("time/comm_ms")
        row = {
            "compressor": compressor, "mean_step_ms": step, "median_step_ms": statistics.median(r["time/step_ms"] for r in records),
            "compute_ms": step - select - comm, "select_ms": select, "exchange_ms": comm,
            "selected": mean("comm/selected"), "bytes_sent": mean("comm/bytes_sent"),
        }
        results.append(row)
        lines.append(
            f"| {compressor} | {row['mean_step_ms']:.0f} | {row['median_step_ms']:.0f} | {row['compute_ms']:.0f} | "
            f"{row['select_ms']:.1f} | {row['exchange_ms']:.1f} | {row['selected']:.0f} | {row['bytes_sent']:.0f} |"
        )
    lines += [
        "",
        "The exchange time includes waiting for the slower process to reach the collective, so on a shared "
        "CPU it also holds the two processes' compute imbalance, not only the transfer and the scatter-add. "
        "Dense overlaps its all-reduce with backward (its default `compressor.scope=bucket`): its exchange "
        "column is the part backward did not hide (`time/comm_ms`); the sparse compressors exchange after "
        "backward (`scope=model`).",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": sys.argv, "date": str(datetime.date.today()),
                                                    "machine": machine, "rows": results}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
