"""Reproduce the RegTop-k paper's linear-regression result: Top-k stalls, RegTop-k converges.

    python scripts/linreg_sweep.py [--compressors dense,topk,regtopk,gaussiank,dgc] [--ratios 0.4,0.5,0.6,0.7]
                                   [--half topk,regtopk] [--steps 2500] [--out results/linreg]

Runs one Hydra multirun, ``sparsetrain -m +experiment=paper_linreg compressor=... ratio=...``, a
second one of RegTop-k with the authors' script's step guard (``train.reject_factor=100``: skip a
step whose aggregate's squared norm exceeds 100x the last accepted one; ALGORITHMS.md), and a third
of the ``--half`` compressors with half-precision payload values (``compressor.value_dtype=float16``,
labelled "<compressor> fp16"), then writes
into ``--out``: ``dist_to_opt.png`` (log10 ||x_t - x*||^2 against step, one curve per compressor,
one panel per ratio), ``final_distances.md`` (final, minimum and last-500-step median distances,
with the command, machine and date that made them) and ``final_distances.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

GUARDED = "regtopk + authors' guard"


def load_runs(sweep_dir: Path) -> list[dict]:
    runs = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        records = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").read_text().splitlines()]
        label = GUARDED if summary.get("reject_factor") else summary["compressor"]
        if summary.get("value_dtype", "float32") == "float16":
            label += " fp16"
        runs.append({"summary": summary, "label": label, "steps": [r["step"] for r in records],
                     "dist": [r["linreg/dist_to_opt"] for r in records],
                     "rejected": records[-1].get("train/rejected_steps")})
    return runs


def plot(runs: list[dict], ratios: list[float], compressors: list[str], path: Path) -> None:
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.2 * len(ratios), 3.8), sharey=True, squeeze=False)
    for ax, ratio in zip(axes[0], ratios):
        for name in compressors:
            for run in runs:
                if run["label"] == name and np.isclose(run["summary"]["ratio"], ratio):
                    label = name if name != "dense" else "dense (no compression)"
                    style = {"ls": ":", "lw": 1.6} if name == GUARDED else {"lw": 1.2}
                    ax.plot(run["steps"], np.log10(np.maximum(run["dist"], 1e-300)), label=label, **style)
        ax.set_title(f"k/d = {ratio}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(r"$\log_{10}\,\|x_t - x^*\|^2$")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle("Distributed linear regression, 20 workers, d = 100 (RegTop-k paper, Sec. 5.1)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressors", default="dense,topk,regtopk,gaussiank,dgc")
    parser.add_argument("--half", default="topk,regtopk", help="also with float16 payload values ('' for none)")
    parser.add_argument("--ratios", default="0.4,0.5,0.6,0.7")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--out", default="results/linreg")
    args = parser.parse_args()
    compressors = args.compressors.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    common = ["+experiment=paper_linreg", f"ratio={args.ratios}", f"train.steps={args.steps}", "log.tensorboard=false"]
    sweeps = {"main": [f"compressor={args.compressors}"]}
    if "regtopk" in compressors:
        sweeps["guarded"] = ["compressor=regtopk", "train.reject_factor=100"]
        compressors.append(GUARDED)
    if args.half:
        sweeps["half"] = [f"compressor={args.half}", "compressor.value_dtype=float16"]
        compressors += [f"{name} fp16" for name in args.half.split(",")]
    commands, runs = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in sweeps.items():
            cmd = ["sparsetrain", "-m", *common, *overrides]
            subprocess.run([*cmd, f"hydra.sweep.dir={Path(tmp) / name}"], check=True)
            commands.append(" ".join(shlex.quote(c) for c in cmd))
            runs += load_runs(Path(tmp) / name)
    wall = time.perf_counter() - started
    plot(runs, ratios, compressors, out / "dist_to_opt.png")

    table: dict[str, dict[float, dict]] = {name: {} for name in compressors}
    for run in runs:
        dist = np.array(run["dist"])
        table[run["label"]][run["summary"]["ratio"]] = {
            "final": float(dist[-1]), "min": float(dist.min()),
            "median_last_500": float(np.median(dist[-500:])), "rejected_steps": run["rejected"],
        }
    (out / "final_distances.json").write_text(
        json.dumps({k: {str(r): v for r, v in d.items()} for k, d in table.items()}, indent=2) + "\n")
    lines = [
        "# Linear regression: final ||x_T - x*||^2 after {} steps".format(args.steps),
        "",
        f"Made by `python {' '.join(shlex.quote(a) for a in sys.argv)}` on {datetime.date.today()}, "
        f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"CPU/gloo, float32), which ran " + " and ".join(f"`{c}`" for c in commands) + f" ({wall:.0f} s for "
        f"{len(runs)} runs). Setting: `+experiment=paper_linreg` (20 workers on 2 processes, d = 100, "
        "500 samples per worker, lr 0.01, RegTop-k mu = 4, Q = 1e8; Gaussian-k as its authors run it; DGC with its "
        "own momentum 0.9, as `train.momentum` is 0 here). Plot: `dist_to_opt.png`. "
        f"\"{GUARDED}\" adds `train.reject_factor=100` (the authors' script's step rejection; "
        "the number of rejected steps is in parentheses).",
        "",
        "Each cell: final distance at the last step / minimum over the run / median over the last 500 steps.",
        "",
        "| compressor | " + " | ".join(f"k/d = {r}" for r in ratios) + " |",
        "| --- |" + " ---: |" * len(ratios),
    ]
    for name in compressors:
        cells = []
        for r in ratios:
            c = table[name][r]
            rejected = f" ({int(c['rejected_steps'])} rejected)" if c["rejected_steps"] is not None else ""
            cells.append(f"{c['final']:.2e} / {c['min']:.2e} / {c['median_last_500']:.2e}{rejected}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "final_distances.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
