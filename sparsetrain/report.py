"""``sparsetrain-report <run or sweep dir>``: a sweep's runs as a table and plots.

Reads every run directory below the given one (a directory holding summary.json; the given
directory itself may be a single run) and writes into it:

* ``report.md``: one row per setting (task, compressor, ratio, workers), its seeds aggregated as
  mean ± sample std: final main metric, total bytes, compression, mean select ms, mean step ms;
* ``report.csv``: the same quantities, one row per run (no aggregation), for further analysis;
* ``report_<metric>_vs_step.png`` and ``report_<metric>_vs_bytes.png``: the main metric against
  step and against cumulative bytes sent by all workers, one curve per compressor (one line per
  seed), one panel per ratio; log scales where the values span more than two decades.

The main metric is ``eval/accuracy`` when runs have it, else ``linreg/dist_to_opt``, else
``train/loss``. Runs whose status is not "completed" are listed with their status, not plotted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from sparsetrain.metrics import read_metrics
from sparsetrain.summary import SUMMARY

__all__ = ["find_runs", "main_metric", "write_report", "main"]

MAIN_METRICS = ("eval/accuracy", "linreg/dist_to_opt", "train/loss")
SETTING = ("task", "compressor", "ratio", "workers")
UNITS = {"eval/accuracy": "test accuracy (%)", "linreg/dist_to_opt": r"$\|x_t - x^*\|^2$", "train/loss": "training loss"}


def find_runs(root: Path) -> list[dict[str, Any]]:
    """Every run at or below ``root``: its directory, summary and metric records, in path order."""
    runs = []
    for summary_path in sorted(root.rglob(SUMMARY)):
        run_dir = summary_path.parent
        runs.append({"dir": run_dir, "summary": json.loads(summary_path.read_text()), "records": read_metrics(run_dir)})
    return runs


def main_metric(runs: list[dict[str, Any]]) -> str:
    for key in MAIN_METRICS:
        if any(key in run["summary"] for run in runs):
            return key
    raise ValueError("the runs have none of " + ", ".join(MAIN_METRICS))


def _mean(records: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.fmean(values) if values else math.nan


def run_row(run: dict[str, Any], metric: str) -> dict[str, Any]:
    s = run["summary"]
    return {
        "run": str(run["dir"]),
        "status": s.get("status", "unknown"),
        "task": s.get("task"),
        "compressor": s.get("compressor"),
        "ratio": s.get("ratio"),
        "workers": s.get("workers"),
        "seed": s.get("seed"),
        metric: s.get(metric),
        "bytes_total": s.get("comm/bytes_total"),
        "compression": s.get("comm/compression"),
        "select_ms_mean": _mean(run["records"], "time/select_ms"),
        "step_ms_mean": _mean(run["records"], "time/step_ms"),
    }


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    fmt = "{:.4g}"
    if len(values) == 1:
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(statistics.stdev(values))}"


def aggregate(rows: list[dict[str, Any]], metric: str) -> list[dict[str, str]]:
    """One row per setting over its completed runs; seeds aggregated as mean ± sample std."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "completed":
            groups[tuple(row[k] for k in SETTING)].append(row)
    table = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        members = groups[key]
        table.append({
            **dict(zip(SETTING, (str(k) for k in key))),
            "seeds": ",".join(str(m["seed"]) for m in members),
            f"final {metric}": _mean_std([m[metric] for m in members]),
            "total bytes": _mean_std([m["bytes_total"] for m in members]),
            "compression": _mean_std([m["compression"] for m in members]),
            "mean select ms": _mean_std([m["select_ms_mean"] for m in members]),
            "mean step ms": _mean_std([m["step_ms_mean"] for m in members]),
        })
    return table


def _markdown(table: list[dict[str, str]]) -> list[str]:
    if not table:
        return ["(no completed runs)"]
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
    return lines


def plot(runs: list[dict[str, Any]], metric: str, x_key: str, path: Path) -> None:
    """The main metric against ``x_key`` (step or bytes): a panel per ratio, a colour per compressor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in runs if r["summary"].get("status") == "completed" and r["records"]]
    ratios = sorted({r["summary"]["ratio"] for r in done})
    compressors = sorted({r["summary"]["compressor"] for r in done})
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(compressors)}
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.5 * len(ratios), 3.8), squeeze=False, sharey=True)
    values = [r[metric] for run in done for r in run["records"] if r.get(metric) is not None]
    log_y = bool(values) and min(values) > 0 and max(values) / min(values) > 100
    for ax, ratio in zip(axes[0], ratios):
        labelled = set()
        for run in done:
            s = run["summary"]
            if s["ratio"] != ratio:
                continue
            points = [(r[x_key], r[metric]) for r in run["records"] if r.get(metric) is not None and r.get(x_key)]
            label = s["compressor"] if s["compressor"] not in labelled else None
            labelled.add(s["compressor"])
            ax.plot(*zip(*points), color=colours[s["compressor"]], label=label, lw=1.2)
        ax.set_title(f"ratio (k/d) = {ratio}")
        if x_key == "comm/bytes_total":
            ax.set_xscale("log")
            ax.set_xlabel("cumulative bytes sent, all workers (B)")
        else:
            ax.set_xlabel("step")
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(UNITS.get(metric, metric))
    fig.suptitle(f"{metric}: one line per run (seeds share a colour)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(root: Path) -> list[Path]:
    """Write report.md, report.csv and the PNGs into ``root``; returns their paths."""
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (holding {SUMMARY}) at or below {root}")
    metric = main_metric(runs)
    rows = [run_row(run, metric) for run in runs]
    table = aggregate(rows, metric)
    written = []

    csv_path = root / "report.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written.append(csv_path)

    slug = metric.replace("/", "_")
    for x_key, name in (("step", "step"), ("comm/bytes_total", "bytes")):
        path = root / f"report_{slug}_vs_{name}.png"
        plot(runs, metric, x_key, path)
        written.append(path)

    failed = [r for r in rows if r["status"] != "completed"]
    md = [
        f"# sparsetrain report: {root}",
        "",
        f"{len(rows)} runs, main metric `{metric}`. Seeds of the same setting are aggregated as "
        "mean ± sample std; per-run values are in report.csv. Total bytes: payload bytes sent by all "
        "workers over the run. Made by `sparsetrain-report`.",
        "",
        *_markdown(table),
    ]
    if failed:
        md += ["", "Runs that did not complete:", ""] + [f"- {r['run']}: {r['status']}" for r in failed]
    md += ["", "Plots: " + ", ".join(f"`{p.name}`" for p in written if p.suffix == ".png")]
    md_path = root / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    return [md_path, *written]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sparsetrain-report", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run directory or a sweep directory holding runs")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        print(f"sparsetrain-report: error: {args.path} is not a directory", file=sys.stderr)
        sys.exit(2)
    try:
        written = write_report(args.path)
    except (FileNotFoundError, ValueError) as error:
        print(f"sparsetrain-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
