"""Wall time of the paper's 20-worker linear regression, launch included.

    python scripts/time_linreg.py [--repeats 3] [--out results/foundation/linreg_wall_time.md]

Runs, side by side in one invocation: dense and Top-k (ratio 0.6) with 20 logical workers on 2
processes, and the same dense run as 20 real processes (one worker each). Reports the median wall
time of the whole ``sparsetrain`` command and the final ``linreg/dist_to_opt`` of each.
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
import time
from pathlib import Path

import torch

# label -> (overrides, most repeats): the 20-process run takes minutes, so it runs once.
RUNS = {
    "dense, 20 workers on 2 processes": (["compressor=dense", "dist.workers=20", "dist.nproc=2"], None),
    "topk ratio=0.6, 20 workers on 2 processes": (
        ["compressor=topk", "ratio=0.6", "dist.workers=20", "dist.nproc=2"], None),
    "dense, 20 processes (1 worker each)": (["compressor=dense", "dist.workers=20", "dist.nproc=20"], 1),
}
COMMON = ["task=linreg", "train.steps=2500"]


def run_once(overrides: list[str], run_dir: Path) -> tuple[float, dict]:
    cmd = ["sparsetrain", *COMMON, *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/foundation/linreg_wall_time.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (overrides, most) in RUNS.items():
            walls, summaries = [], []
            for repeat in range(min(args.repeats, most or args.repeats)):
                wall, summary = run_once(overrides, Path(tmp) / f"{len(rows)}-{repeat}")
                walls.append(wall)
                summaries.append(summary)
                print(f"{label}: {wall:.1f} s, dist_to_opt {summary['linreg/dist_to_opt']:.3e}", flush=True)
            rows.append((label, overrides, walls, summaries))
    lines = [
        "# Linear regression (20 workers, 2500 steps): wall time including launch",
        "",
        f"Made by `python {' '.join(shlex.quote(a) for a in sys.argv)}` on {datetime.date.today()} "
        f"({platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, CPU/gloo). Each row: "
        f"`sparsetrain {' '.join(COMMON)} <overrides>`, median wall time of the whole command (Hydra, "
        "launch, worker start-up, training, logging) over the runs listed.",
        "",
        "| run | overrides | median wall s | all runs s | final linreg/dist_to_opt | time/step_ms (last step) |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for label, overrides, walls, summaries in rows:
        dist_to_opt = statistics.median(s["linreg/dist_to_opt"] for s in summaries)
        lines.append(
            f"| {label} | `{' '.join(overrides)}` | {statistics.median(walls):.1f} | "
            f"{', '.join(f'{w:.1f}' for w in walls)} | {dist_to_opt:.3e} | {summaries[-1]['time/step_ms']:.2f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
