"""Step time of two versions of sparsetrain side by side: this checkout (named by ``git describe``)
and another installation.

    git worktree add /tmp/old <rev> && pip install --no-deps --target /tmp/oldsite /tmp/old
    python scripts/compare_versions.py --baseline /tmp/oldsite --label <rev> [--rounds 3]
                                       [--out results/refactor/step_time.md]

Runs the same jobs with ``python -m sparsetrain`` from this checkout and with ``PYTHONPATH=<baseline>``
(the other version), alternating run by run for ``--rounds`` rounds so that both see the same
machine load. Reports the median ``time/step_ms`` over all logged steps after the first two of
every run, and the ratio this/baseline. Also checks that both versions logged the same training
trajectory (``train/loss``) for every job.
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

JOBS = {
    "linreg, 20 workers on 2 processes, topk 0.6, 500 steps": [
        "task=linreg", "compressor=topk", "ratio=0.6", "dist.workers=20", "dist.nproc=2", "train.steps=500"],
    "linreg, 20 workers on 2 processes, dense, 500 steps": [
        "task=linreg", "compressor=dense", "dist.workers=20", "dist.nproc=2", "train.steps=500"],
    "ResNet-18 synthetic, 2 processes, batch 32, topk 0.001, 12 steps": [
        "task=cifar10", "task.synthetic=true", "task.synthetic_samples=2000", "task.batch_size=32", "task.eval_samples=64",
        "compressor=topk", "ratio=0.001", "dist.nproc=2", "train.steps=12", "train.epochs=null"],
}
COMMON = ["log.tensorboard=false", "ckpt.every=0"]


def run(overrides: list[str], run_dir: Path, pythonpath: str | None) -> list[dict]:
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "sparsetrain", *overrides, *COMMON, f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=run_dir.parent)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a directory holding another installation (pip --target)")
    parser.add_argument("--label", default="baseline", help="what the baseline is (a git revision)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/refactor/step_time.md")
    args = parser.parse_args()
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    versions = {revision: None, args.label: args.baseline}
    steps: dict[tuple[str, str], list[float]] = {}
    losses: dict[tuple[str, str], list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for number, (job, overrides) in enumerate(JOBS.items()):
                for version, pythonpath in versions.items():
                    records = run(overrides, Path(tmp) / f"{round_}-{number}-{version[:4]}", pythonpath)
                    steps.setdefault((job, version), []).extend(r["time/step_ms"] for r in records if r["step"] > 2)
                    losses.setdefault((job, version), []).append([r["train/loss"] for r in records])
                    print(f"round {round_} {version}: {job}", flush=True)
    lines = [
        "# Step time of two versions, side by side",
        "",
        f"Made by `python {' '.join(shlex.quote(a) for a in sys.argv)}` on {datetime.date.today()} "
        f"({platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}). "
        f"Each job ran {args.rounds} times per version, the versions alternating run by run; median `time/step_ms` "
        "over every logged step after the second of each run. `same losses`: both versions logged identical "
        "`train/loss` sequences in every run.",
        "",
        f"| job | {revision} (ms) | {args.label} (ms) | ratio | same losses |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for job in JOBS:
        mine, theirs = (statistics.median(steps[(job, v)]) for v in versions)
        same = losses[(job, revision)] == losses[(job, args.label)]
        lines.append(f"| {job} | {mine:.2f} | {theirs:.2f} | {mine / theirs:.3f} | {'yes' if same else 'NO'} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
