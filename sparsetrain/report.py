"""``sparsetrain-report <run or sweep dir>``: a sweep's runs as a table and plots.

Reads every run directory below the given one (a directory holding summary.json; the given
directory itself may be a single run) and writes into it:

* ``report.md``: one row per setting (task, compressor, ratio, workers), its seeds aggregated as
  mean ± sample std: final main metric, the exchange used, total bytes on the wire, compression,
  mean select ms, mean step ms, mean modeled step ms; with ``--target``, the steps and the
  modeled seconds to reach it;
* ``report.csv``: the same quantities, one row per run (no aggregation), for further analysis;
* ``report_<metric>_vs_step.png``, ``..._vs_bytes.png`` and ``..._vs_modeled_time.png``: the main
  metric against step, against the cumulative bytes all workers sent on the wire, and against
  the modeled time, one curve per compressor (one line per seed), one panel per ratio; log scales
  where the values span more than two decades.

Traffic is what the wire carries (``comm/bytes_sent``: ring collectives, each logical worker a
host; see README). Modeled time is the α-β cost model's: ``time/step_model_ms`` is the measured
step with its measured exchange replaced by the model's, on ``net.model_bandwidth`` (less what
backward hid, with ``compressor.scope=bucket``); a logged row
stands for the steps since the previous one (``log.every``). ``--target metric=value`` (for example
``linreg/dist_to_opt=1e-3`` or ``eval/accuracy=90``) counts, for each run, the steps and the
modeled seconds until the metric first reaches the value: at least it for accuracies, at most it
for losses and distances.

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


def modeled_seconds(records: list[dict[str, Any]]) -> list[float]:
    """Cumulative modeled time at each record, each record's modeled step time standing for the
    steps since the previous record."""
    total, previous, times = 0.0, 0, []
    for r in records:
        total += (r.get("time/step_model_ms") or 0.0) * (r["step"] - previous) / 1e3
        previous = r["step"]
        times.append(total)
    return times


def time_to_target(records: list[dict[str, Any]], target: tuple[str, float] | None) -> tuple[float, float]:
    """(step, modeled seconds) at which ``target = (metric, value)`` is first reached, or NaNs."""
    if target is None:
        return math.nan, math.nan
    key, value = target
    higher_is_better = "accuracy" in key
    for r, seconds in zip(records, modeled_seconds(records)):
        if r.get(key) is not None and (r[key] >= value if higher_is_better else r[key] <= value):
            return float(r["step"]), seconds
    return math.nan, math.nan


def run_row(run: dict[str, Any], metric: str, target: tuple[str, float] | None = None) -> dict[str, Any]:
    s = run["summary"]
    steps_to_target, seconds_to_target = time_to_target(run["records"], target)
    return {
        "run": str(run["dir"]),
        "status": s.get("status", "unknown"),
        "task": s.get("task"),
        "compressor": s.get("compressor"),
        "ratio": s.get("ratio"),
        "workers": s.get("workers"),
        "seed": s.get("seed"),
        metric: s.get(metric),
        "exchange": s.get("exchange"),
        "bytes_total": s.get("comm/bytes_total"),
        "compression": s.get("comm/compression"),
        "select_ms_mean": _mean(run["records"], "time/select_ms"),
        "in_range": _mean(run["records"], "comm/in_range"),
        "step_ms_mean": _mean(run["records"], "time/step_ms"),
        "step_model_ms_mean": _mean(run["records"], "time/step_model_ms"),
        "steps_to_target": steps_to_target,
        "modeled_s_to_target": seconds_to_target,
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


def aggregate(rows: list[dict[str, Any]], metric: str, target: tuple[str, float] | None = None) -> list[dict[str, str]]:
    """One row per setting over its completed runs; seeds aggregated as mean ± sample std."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "completed":
            groups[tuple(row[k] for k in SETTING)].append(row)
    table = []
    thresholded = any(math.isfinite(row["in_range"]) for row in rows)  # Gaussian-k: its loop's outcome
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        members = groups[key]
        table.append({
            **dict(zip(SETTING, (str(k) for k in key))),
            "seeds": ",".join(str(m["seed"]) for m in members),
            f"final {metric}": _mean_std([m[metric] for m in members]),
            "exchange": "/".join(sorted({str(m["exchange"]) for m in members})),
            "wire bytes, all workers": _mean_std([m["bytes_total"] for m in members]),
            "compression": _mean_std([m["compression"] for m in members]),
            "mean select ms": _mean_std([m["select_ms_mean"] for m in members]),
            **({"steps in [2k/3, 4k/3]": _mean_std([m["in_range"] for m in members])} if thresholded else {}),
            "mean step ms": _mean_std([m["step_ms_mean"] for m in members]),
            "mean modeled step ms": _mean_std([m["step_model_ms_mean"] for m in members]),
            **({
                f"steps to {target[0]}={target[1]:g}": _mean_std([m["steps_to_target"] for m in members]),
                "modeled s to target": _mean_std([m["modeled_s_to_target"] for m in members]),
            } if target else {}),
        })
    return table


def _markdown(table: list[dict[str, str]]) -> list[str]:
    if not table:
        return ["(no completed runs)"]
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
    return lines


X_LABELS = {
    "step": "step",
    "comm/bytes_total": "cumulative bytes on the wire, all workers (B)",
    "modeled_s": "modeled time (s): measured compute + the cost model's exchange",
}


def plot(runs: list[dict[str, Any]], metric: str, x_key: str, path: Path) -> None:
    """The main metric against ``x_key`` (a key of :data:`X_LABELS`): a panel per ratio, a colour
    per compressor."""
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
            xs = modeled_seconds(run["records"]) if x_key == "modeled_s" else [r.get(x_key) for r in run["records"]]
            points = [(x, r[metric]) for x, r in zip(xs, run["records"]) if r.get(metric) is not None and x]
            label = s["compressor"] if s["compressor"] not in labelled else None
            labelled.add(s["compressor"])
            ax.plot(*zip(*points), color=colours[s["compressor"]], label=label, lw=1.2)
        ax.set_title(f"ratio (k/d) = {ratio}")
        if x_key == "comm/bytes_total":
            ax.set_xscale("log")
        ax.set_xlabel(X_LABELS[x_key])
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(UNITS.get(metric, metric))
    fig.suptitle(f"{metric}: one line per run (seeds share a colour)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_target(text: str) -> tuple[str, float]:
    """``metric=value`` -> (metric, value); ValueError naming the form otherwise."""
    key, _, value = text.partition("=")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise ValueError(f"--target {text!r} is not metric=value, e.g. linreg/dist_to_opt=1e-3") from None


def write_report(root: Path, target: tuple[str, float] | None = None) -> list[Path]:
    """Write report.md, report.csv and the PNGs into ``root``; returns their paths."""
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (holding {SUMMARY}) at or below {root}")
    metric = main_metric(runs)
    if target is not None and not any(target[0] in r for run in runs for r in run["records"]):
        raise ValueError(f"--target {target[0]}: no run logged that metric")
    rows = [run_row(run, metric, target) for run in runs]
    table = aggregate(rows, metric, target)
    written = []

    csv_path = root / "report.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written.append(csv_path)

    slug = metric.replace("/", "_")
    for x_key, name in (("step", "step"), ("comm/bytes_total", "bytes"), ("modeled_s", "modeled_time")):
        path = root / f"report_{slug}_vs_{name}.png"
        plot(runs, metric, x_key, path)
        written.append(path)

    failed = [r for r in rows if r["status"] != "completed"]
    md = [
        f"# sparsetrain report: {root}",
        "",
        f"{len(rows)} runs, main metric `{metric}`. Seeds of the same setting are aggregated as "
        "mean ± sample std; per-run values are in report.csv. Wire bytes: what all workers sent over "
        "the run as the collectives put it on the wire (ring algorithms, each logical worker a host); "
        "compression: a dense all-reduce's wire bytes over the run's, at the last step. Modeled step: "
        "the measured step with its exchange replaced by the alpha-beta model's on net.model_bandwidth. "
        "Made by `sparsetrain-report`.",
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
    parser.add_argument("--target", help="metric=value: steps and modeled seconds to reach it, e.g. eval/accuracy=90")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        print(f"sparsetrain-report: error: {args.path} is not a directory", file=sys.stderr)
        sys.exit(2)
    try:
        written = write_report(args.path, parse_target(args.target) if args.target else None)
    except (FileNotFoundError, ValueError) as error:
        print(f"sparsetrain-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
