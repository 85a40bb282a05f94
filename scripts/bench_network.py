"""Is sparse faster than dense on my link? Step time on shaped links, measured and modeled.

    python scripts/bench_network.py [--links 10gbit,1gbit,100mbit] [--steps 6] [--out results/network] [--resume]
    python scripts/bench_network.py --overlap [--links loopback,1gbit,100mbit] [--steps 12] [--warmup 3] [--repeats 3]
        [--pairs 100]

For every workload, link and compressor, runs ``sparsetrain ... net.bandwidth=<link>``: the
workers run in a private network namespace whose loopback a token bucket limits to the link rate
per host (``sparsetrain/net/shaping.py``), so every collective really takes the time such a link
takes. Reports the measured median ``time/step_ms``, the α-β model's ``time/step_model_ms`` for
the same link beside it (``net.model_bandwidth`` defaults to ``net.bandwidth``) and the speed-up
over dense. Beside them, what a user would otherwise run: plain PyTorch DDP and DDP with PyTorch's
PowerSGD hook (``scripts/ddp_resnet.py``, same model and batch) under the same shaping.

Workloads: ResNet-18 for CIFAR (synthetic batches of 32 per worker, 2 and 4 worker processes) and
the RegTop-k paper's linear regression (20 logical workers on 2 processes, d = 100).

``--overlap`` compares, on ResNet-18 with 2 workers, what overlapping the exchange with backward
buys (``compressor.scope``): plain DDP, sparsetrain dense per bucket (its default) and per model,
Top-k 0.001 and 0.01 per model (its default) and per bucket, in ``--repeats`` interleaved rounds,
pooling the steps after ``--warmup`` of every run (``overlap.md``, ``overlap.json``). Then, per
link and Top-k ratio, ``--pairs`` pairs of steps alternate the two scopes in the same processes
(``scripts/pair_scopes.py``), which cancels the drift that separate runs suffer from; Top-k's
target (per bucket at least as fast as per model at 1 Gbit/s) is judged on the median of those
paired differences, with its 95% distribution-free confidence interval. A link ``loopback`` is the
unshaped loopback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from sparsetrain.net import shaping
from sparsetrain.net.cost import parse_rate

DDP_SCRIPT = Path(__file__).with_name("ddp_resnet.py")
PAIR_SCRIPT = Path(__file__).with_name("pair_scopes.py")
RESNET = ["task=cifar10", "task.synthetic=true", "task.synthetic_samples=4096", "task.batch_size=32",
          "task.eval_samples=100", "train.epochs=null", "log.eval_every=null"]
WORKLOADS = {
    "resnet18 2w": {"overrides": [*RESNET, "dist.nproc=2"], "nproc": 2, "steps": None},
    "resnet18 4w": {"overrides": [*RESNET, "dist.nproc=4"], "nproc": 4, "steps": None},
    "linreg 20w": {"overrides": ["+experiment=paper_linreg"], "nproc": 2, "steps": 60},
}
SPARSE = ("topk", "gaussiank", "regtopk", "randomk")
RATIOS = (0.001, 0.01)
DDP_HOOKS = {"plain DDP": ["--hook", "none"], "DDP + PowerSGD (rank 4)": ["--hook", "powersgd"]}
OVERLAP = {
    "sparsetrain dense (scope=bucket)": ["compressor=dense"],
    "sparsetrain dense (scope=model)": ["compressor=dense", "compressor.scope=model"],
    "sparsetrain topk 0.001 (scope=model)": ["compressor=topk", "ratio=0.001"],
    "sparsetrain topk 0.001 (scope=bucket)": ["compressor=topk", "ratio=0.001", "compressor.scope=bucket"],
    "sparsetrain topk 0.01 (scope=model)": ["compressor=topk", "ratio=0.01"],
    "sparsetrain topk 0.01 (scope=bucket)": ["compressor=topk", "ratio=0.01", "compressor.scope=bucket"],
}
UNSHAPED = "loopback"


def median_after(values: list[float], warmup: int) -> float:
    return statistics.median(values[warmup:])


def run_checked(cmd: list[str]) -> None:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {result.returncode}:\n{result.stderr[-3000:]}")


def twice(measure_once, *args):
    """A run that fails once (a transient rendezvous or teardown failure) is run again."""
    try:
        return measure_once(*args)
    except RuntimeError as error:
        print(f"retrying after: {str(error)[-500:]}", flush=True)
        return measure_once(*args)


def run_sparsetrain(workload: dict, compressor: str | list[str], ratio: float, link: str, steps: int,
                    run_dir: Path) -> list[dict]:
    """``compressor``: a name, or the overrides that choose it (then ``ratio`` is theirs)."""
    choice = [f"compressor={compressor}", f"ratio={ratio}"] if isinstance(compressor, str) else compressor
    cmd = ["sparsetrain", *workload["overrides"], *choice, f"train.steps={steps}", "log.every=1", "ckpt.every=0",
           "log.tensorboard=false", f"hydra.run.dir={run_dir}"]
    if link != UNSHAPED:
        cmd.append(f"net.bandwidth={link}")
    run_checked(cmd)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_torchrun(script: Path, args: list[str], nproc: int, link: str, out: Path) -> dict:
    """``script`` on ``nproc`` processes over ``link``; what it wrote to ``--json out``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(script), *args, "--json", str(out)]
    if link == UNSHAPED:
        run_checked(cmd)
    else:
        shaping.run_shaped(run_checked, cmd, rate_bits=parse_rate(link), hosts=nproc)
    return json.loads(out.read_text())


def run_ddp(hook_args: list[str], nproc: int, link: str, steps: int, out: Path) -> list[float]:
    return run_torchrun(DDP_SCRIPT, [*hook_args, "--steps", str(steps)], nproc, link, out)["step_ms"]


def median_interval(values: list[float]) -> tuple[float, float]:
    """A 95% confidence interval for the median of ``values``, free of any assumption on their
    distribution: order statistics ``j`` and ``n + 1 - j`` (1-based), ``j`` the largest with
    ``P(B < j) <= 0.025`` for the count ``B ~ Binomial(n, 1/2)`` of values below the median."""
    ordered, n = sorted(values), len(values)
    below, j = 0.0, 0
    while below + math.comb(n, j) / 2**n <= 0.025:
        below += math.comb(n, j) / 2**n
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def measure(args: argparse.Namespace, tmp: Path, partial: Path) -> list[dict]:
    """Every row, measured or, with ``--resume``, read back from ``partial`` (one JSON row per line,
    appended as each is measured, so an interrupted benchmark loses at most one run)."""
    done = [json.loads(line) for line in partial.read_text().splitlines()] if args.resume and partial.exists() else []
    if not args.resume:
        partial.write_text("")
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        with partial.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['workload']} {row['link']} {row['method']} {row['ratio']}: {row['step_ms']:.0f} ms "
              f"(model {row['model_step_ms']})", flush=True)

    def measured(workload: str, link: str, method: str, ratio: float | None) -> dict | None:
        found = [r for r in done if (r["workload"], r["link"], r["method"], r["ratio"]) == (workload, link, method, ratio)]
        if found:
            rows.append(found[0])
        return found[0] if found else None

    for name, workload in WORKLOADS.items():
        steps = workload["steps"] or args.steps
        settings = [("dense", 1.0)] + [(c, r) for r in RATIOS for c in SPARSE]
        for link in args.links:
            for compressor, ratio in settings:
                key = (name, link, f"sparsetrain {compressor}", None if compressor == "dense" else ratio)
                if measured(*key):
                    continue
                run_dir = tmp / f"{name}-{link}-{compressor}-{ratio}".replace(" ", "_")
                records = twice(run_sparsetrain, workload, compressor, ratio, link, steps, run_dir)
                record({
                    "workload": name, "link": link, "method": key[2], "ratio": key[3],
                    "step_ms": median_after([r["time/step_ms"] for r in records], args.warmup),
                    "model_step_ms": median_after([r["time/step_model_ms"] for r in records], args.warmup),
                    "bytes_sent": records[-1]["comm/bytes_sent"], "exchange": records[-1].get("comm/allreduce"),
                    "steps": len(records) - args.warmup,
                })
            if name.startswith("resnet18"):
                for label, hook_args in DDP_HOOKS.items():
                    if measured(name, link, label, None):
                        continue
                    step_ms = twice(run_ddp, hook_args, workload["nproc"], link, steps, tmp / "ddp.json")
                    record({"workload": name, "link": link, "method": label, "ratio": None,
                            "step_ms": median_after(step_ms, args.warmup), "model_step_ms": None,
                            "bytes_sent": None, "exchange": None, "steps": len(step_ms) - args.warmup})
    for row in rows:
        dense = next(r for r in rows if r["workload"] == row["workload"] and r["link"] == row["link"]
                     and r["method"] == "sparsetrain dense")
        row["speedup_over_dense"] = dense["step_ms"] / row["step_ms"]
        row["model_error"] = None if row["model_step_ms"] is None else row["model_step_ms"] / row["step_ms"] - 1
    return rows


def measure_overlap(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Per link, ``--repeats`` rounds of every method in turn; each method's steps after the
    warm-up of every round pooled into one median (and sparsetrain's exchange split beside it)."""
    workload = WORKLOADS["resnet18 2w"]
    pooled: dict[tuple[str, str], dict[str, list[float]]] = {}
    for link in args.links:
        for round_ in range(args.repeats):
            ddp = twice(run_ddp, DDP_HOOKS["plain DDP"], workload["nproc"], link, args.steps, tmp / "ddp.json")
            pooled.setdefault((link, "plain DDP"), {}).setdefault("step_ms", []).extend(ddp[args.warmup:])
            for index, (method, overrides) in enumerate(OVERLAP.items()):
                run_dir = tmp / f"overlap-{link}-{round_}-{index}"
                records = twice(run_sparsetrain, workload, overrides, 0, link, args.steps, run_dir)
                into = pooled.setdefault((link, method), {})
                for key in ("step_ms", "comm_ms", "comm_total_ms", "select_ms"):
                    into.setdefault(key, []).extend(r[f"time/{key}"] for r in records[args.warmup:])
            print(f"{link} round {round_ + 1}: " + ", ".join(
                f"{m}: {statistics.median(v['step_ms']):.0f}" for (lk, m), v in pooled.items() if lk == link), flush=True)
    rows = []
    for (link, method), values in pooled.items():
        medians = {key: statistics.median(v) for key, v in values.items()}
        rows.append({"link": link, "method": method, **medians, "steps": len(values["step_ms"])})
    for row in rows:
        ddp = next(r for r in rows if r["link"] == row["link"] and r["method"] == "plain DDP")
        row["over_ddp"] = row["step_ms"] / ddp["step_ms"]
    return rows


def measure_pairs(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Per link and Top-k ratio, ``--pairs`` pairs of steps alternating the scopes in one job."""
    workload = WORKLOADS["resnet18 2w"]
    rows = []
    for link in args.links:
        for ratio in RATIOS:
            job = [*workload["overrides"], "compressor=topk", f"ratio={ratio}"]
            paired = twice(run_torchrun, PAIR_SCRIPT, ["--pairs", str(args.pairs), *job], workload["nproc"], link,
                           tmp / "pairs.json")
            differences = paired["bucket_minus_model_ms"]
            rows.append({
                "link": link, "ratio": ratio, "pairs": len(differences),
                **{f"{scope}_ms": median for scope, median in paired["median_ms"].items()},
                "difference_ms": paired["median_difference_ms"], "difference_ci95_ms": median_interval(differences),
                "cpu_difference_ms": paired["median_cpu_difference_ms"], "warmup_pairs": paired["warmup"],
            })
            print(f"{link} topk {ratio} paired: {rows[-1]}", flush=True)
    return rows


def overlap_targets(rows: list[dict], paired: list[dict]) -> list[str]:
    def row(link: str, method: str) -> dict:
        return next(r for r in rows if (r["link"], r["method"]) == (link, method))

    links = list(dict.fromkeys(r["link"] for r in rows))
    ratios = [row(link, "sparsetrain dense (scope=bucket)")["over_ddp"] for link in links]
    lines = [f"- sparsetrain dense at most 1.05x plain DDP's step time: "
             + ", ".join(f"{link} {ratio:.3f}x" for link, ratio in zip(links, ratios))
             + f": **{'met' if max(ratios) <= 1.05 else 'not met'}**."]
    judged = [p for p in paired if (p["link"], p["ratio"]) == ("1gbit", 0.001)]
    if judged:
        p = judged[0]
        low, high = p["difference_ci95_ms"]
        lines.append(f"- Top-k 0.001 with scope=bucket at least as fast as scope=model at 1 Gbit/s, paired steps: "
                     f"bucket minus model {p['difference_ms']:+.1f} ms per step, median of {p['pairs']} pairs "
                     f"(95% interval {low:+.1f} to {high:+.1f}; medians {p['bucket_ms']:.0f} and {p['model_ms']:.0f} ms): "
                     f"**{'met' if p['difference_ms'] <= 0 else 'not met'}**.")
    return lines


def render_overlap(measured: dict, out: Path) -> None:
    """``overlap.md`` from what ``overlap.json`` holds."""
    lines = [
        "# Overlapping the exchange with backward: sparsetrain against plain DDP",
        "",
        f"Made by `{measured['command']}` on {measured['date']} ({platform.node()}: {measured['machine']}, Python "
        f"{platform.python_version()}, torch {torch.__version__}). ResNet-18 for CIFAR, synthetic batches of 32 per "
        f"worker, 2 worker processes; {measured['repeats']} interleaved rounds per link, each running every method "
        f"for {measured['steps']} steps; medians over the steps after the first {measured['warmup']} of every run, "
        "pooled. Links: per host, a token bucket on a private namespace's loopback (`loopback`: unshaped). "
        "`comm_ms`: the exchange backward did not hide; `comm_total_ms`: the time some collective was in flight "
        "(equal for scope=model, which exchanges after backward).",
        "",
        "## Targets",
        "",
        *overlap_targets(measured["rows"], measured["paired"]),
        "",
        "## Reading it",
        "",
        "- Per bucket, a compressor selects over the same entries as per model, cut in buckets (backward adds "
        "each gradient straight into the bucket's residual, where per model it is first copied into the flat "
        "gradient), and hides the part of its exchange that travels while backward goes on. Here each process "
        "computes on one thread of its own core, so what a bucket computes during backward (its selection, its "
        "collective's start and completion) delays backward by as much: only the transfer and the wait for the "
        "other process can be hidden. Top-k 0.001 sends 89 KB per worker: about 1 ms at 1 Gbit/s, little to "
        "hide. Top-k 0.01 sends 894 KB: on a slow link there is transfer to hide.",
        "- Separate runs of one method after another drift by more than the two scopes differ (the rounds' "
        "medians cross over); the paired steps below alternate both scopes in the same processes.",
        "",
        "| link | method | median step (ms) | x plain DDP | comm_ms | comm_total_ms | select_ms | steps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in measured["rows"]:
        split = [ms(r[key]) if key in r else "" for key in ("comm_ms", "comm_total_ms", "select_ms")]
        lines.append(f"| {r['link']} | {r['method']} | {ms(r['step_ms'])} | {r['over_ddp']:.3f} | {' | '.join(split)} | "
                     f"{r['steps']} |")
    lines += [
        "",
        "## Top-k per bucket against per model, paired steps",
        "",
        f"`scripts/pair_scopes.py`: one job per link and ratio, {measured['pairs']} pairs of steps after "
        f"{measured['paired'][0]['warmup_pairs']} pairs of warm-up, each pair one step per scope in the same two "
        "processes (the order swapping from pair to pair), without per-step logging. The difference is bucket minus "
        "model, per pair (negative: per bucket is faster); its median, with a 95% interval from the order "
        "statistics. CPU: the same paired difference in each process's CPU time per step (all its threads), "
        "process 0 / process 1: with both cores busy, CPU work that per bucket adds (its collectives, their "
        "callbacks, the hooks) shows in the step time.",
        "",
        "| link | ratio | scope=model (ms) | scope=bucket (ms) | bucket - model (ms) | 95% interval (ms) | CPU, bucket - model (ms) | pairs |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for p in measured["paired"]:
        low, high = p["difference_ci95_ms"]
        cpu = " / ".join(f"{d:+.1f}" for d in p["cpu_difference_ms"])
        lines.append(f"| {p['link']} | {p['ratio']} | {ms(p['model_ms'])} | {ms(p['bucket_ms'])} | "
                     f"{p['difference_ms']:+.1f} | {low:+.1f} to {high:+.1f} | {cpu} | {p['pairs']} |")
    (out / "overlap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each with the numbers it is judged on."""
    def row(workload, link, method, ratio=None):
        return next(r for r in rows if (r["workload"], r["link"], r["method"], r["ratio"]) == (workload, link, method, ratio))

    lines = []
    if "100mbit" in {r["link"] for r in rows}:
        topk, dense = row("resnet18 2w", "100mbit", "sparsetrain topk", 0.001), row("resnet18 2w", "100mbit", "sparsetrain dense")
        share = topk["step_ms"] / dense["step_ms"]
        lines.append(f"- ResNet-18, 2 workers, 100 Mbit/s: Top-k 0.001 takes {share:.3f} of dense's step time "
                     f"(target <= 0.25): **{'met' if share <= 0.25 else 'not met'}**.")
    checked = [r for r in rows if r["workload"].startswith("resnet18") and r["link"] in ("1gbit", "100mbit")
               and r["method"] in ("sparsetrain dense", "sparsetrain topk")]
    worst = max(checked, key=lambda r: abs(r["model_error"]), default=None)
    if worst is not None:
        within = sum(abs(r["model_error"]) <= 0.2 for r in checked)
        lines.append(f"- Model within 20% of measured at 1 Gbit/s and 100 Mbit/s, ResNet-18, dense and Top-k: {within} of "
                     f"{len(checked)} rows; worst {100 * worst['model_error']:+.0f}% ({worst['workload']}, {worst['link']}, "
                     f"{worst['method']} {worst['ratio'] or ''}): **{'met' if within == len(checked) else 'not met'}**.")
    return lines


def plot(rows: list[dict], links: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4), squeeze=False)
    rates = [parse_rate(link) / 1e9 for link in links]
    for ax, workload in zip(axes[0], workloads):
        methods = dict.fromkeys((r["method"], r["ratio"]) for r in rows if r["workload"] == workload
                                and (r["ratio"] in (None, 0.001)))
        for method, ratio in methods:
            series = [next(r for r in rows if (r["workload"], r["link"], r["method"], r["ratio"]) == (workload, link, method, ratio))
                      for link in links]
            line, = ax.plot(rates, [r["step_ms"] for r in series], marker="o", label=method.replace("sparsetrain ", ""))
            if series[0]["model_step_ms"] is not None:
                ax.plot(rates, [r["model_step_ms"] for r in series], linestyle=":", color=line.get_color())
        ax.set(xscale="log", yscale="log", xlabel="link per host (Gbit/s)", ylabel="median step (ms)",
               title=f"{workload} (ratio 0.001; dotted: model)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", default="10gbit,1gbit,100mbit", type=lambda s: s.split(","))
    parser.add_argument("--steps", type=int, default=6, help="steps per ResNet-18 run (linreg: 60)")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of every run")
    parser.add_argument("--out", default="results/network")
    parser.add_argument("--resume", action="store_true", help="keep the rows an interrupted run measured")
    parser.add_argument("--overlap", action="store_true", help="scope=bucket against scope=model and plain DDP")
    parser.add_argument("--repeats", type=int, default=3, help="--overlap: interleaved rounds per link")
    parser.add_argument("--pairs", type=int, default=100, help="--overlap: paired steps per link and Top-k ratio")
    args = parser.parse_args()
    if shaping.unavailable() is not None:
        sys.exit(f"bench_network: no shaped links here: {shaping.unavailable()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    command = f"python {' '.join(shlex.quote(a) for a in sys.argv)}"
    if args.overlap:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure_overlap(args, Path(tmp))
            paired = measure_pairs(args, Path(tmp))
        measured = {"command": command, "date": str(datetime.date.today()), "machine": machine, "steps": args.steps,
                    "warmup": args.warmup, "repeats": args.repeats, "rows": rows, "pairs": args.pairs,
                    "paired": paired}
        (out / "overlap.json").write_text(json.dumps(measured, indent=2) + "\n")
        render_overlap(measured, out)
        return
    partial = out / "network.partial.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp), partial)
    (out / "network.json").write_text(json.dumps({"command": command, "date": str(datetime.date.today()),
                                                  "machine": machine, "warmup": args.warmup, "links": args.links,
                                                  "rows": rows}, indent=2) + "\n")
    render(json.loads((out / "network.json").read_text()), out)
    partial.unlink()


def ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def render(measured: dict, out: Path) -> None:
    """``network.md`` and ``network.png`` from what ``network.json`` holds."""
    rows = measured["rows"]
    lines = [
        "# Step time on a bandwidth-limited link: measured, modeled, and against dense and DDP",
        "",
        f"Made by `{measured['command']}` on {measured['date']} ({platform.node()}: {measured['machine']}, Python "
        f"{platform.python_version()}, torch {torch.__version__}). Each row is one run, `sparsetrain <workload> "
        f"compressor=<c> ratio=<r> net.bandwidth=<link>` (or `scripts/ddp_resnet.py` under the same shaping): "
        f"median over the steps after the first {measured['warmup']}. Link: per host, a token bucket on a private "
        "namespace's loopback at workers x rate. Model: the α-β ring model at the same rate and 10 µs "
        "(`time/step_model_ms` = measured step - measured exchange + modeled exchange). Workloads: ResNet-18 "
        "for CIFAR, synthetic batches of 32 per worker, one worker per CPU process (2 and 4 processes on this "
        "2-core machine, so the 4-worker compute is slower); linreg: the RegTop-k paper's linear regression, "
        "d = 100, 20 logical workers on 2 processes (a logical worker counts as a host).",
        "",
        "## Targets",
        "",
        *targets(rows),
        "",
        "## Reading it",
        "",
        "- One run per row, and few steps per ResNet-18 run: rows within about 10% of each other (the "
        "compute-bound rows at 10 Gbit/s) are within this shared machine's noise. The bandwidth-bound rows "
        "(dense and plain DDP at 1 Gbit/s and 100 Mbit/s) are not.",
        "- sparsetrain's dense run all-reduces each bucket as backward fills it, as plain DDP does "
        "(`compressor.scope=bucket`, dense's default); the sparse rows select from the whole model after "
        "backward (`scope=model`, the papers'). `overlap.md` compares both scopes with plain DDP.",
        "- linreg's steps take a millisecond or two, spent in hosting 20 workers per step, not on the link "
        "(760 bytes per worker for dense): the model, which counts 20 hosts with 10 µs latency, leaves out "
        "that per-collective overhead, hence its shortfall there. The model targets are judged on ResNet-18.",
        "",
        "| workload | link | method | ratio | median step (ms) | model (ms) | model error | speed-up over dense | bytes sent per worker | steps |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        model = "" if r["model_step_ms"] is None else ms(r["model_step_ms"])
        error = "" if r["model_error"] is None else f"{100 * r['model_error']:+.0f}%"
        sent = "" if r["bytes_sent"] is None else f"{r['bytes_sent']:.0f}"
        lines.append(f"| {r['workload']} | {r['link']} | {r['method']} | {r['ratio'] or ''} | {ms(r['step_ms'])} | "
                     f"{model} | {error} | {r['speedup_over_dense']:.2f} | {sent} | {r['steps']} |")
    (out / "network.md").write_text("\n".join(lines) + "\n")
    plot(rows, measured["links"], out / "network.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
