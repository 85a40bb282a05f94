"""Selection speed against the memory-bandwidth floor.

    python scripts/bench_selection.py [--sizes 270000,11173962,25557032] [--ratios 0.01,0.001]
                                      [--device cpu|cuda|all] [--repeats 9] [--json PATH]

For each device, d, ratio and gradient distribution (Gaussian; heavy-tailed Student-t with 3
degrees of freedom) it times, as medians over ``--repeats`` rounds after two warm-up rounds, each
round calling every function below once (interleaved, so machine noise hits all alike):
  * each selector as sparsetrain runs it: ``compressor.compress`` (error feedback + selection) on a
    worker whose residual already holds previous steps (and, for regtopk, last step's mask and
    aggregate), for topk, gaussiank (the paper's loop, and with ``exact_k``), regtopk, randomk,
    dgc (momentum correction, sampled threshold), and topk with float16 payload values;
  * ``torch.topk`` of |a| (the plain reference) and sparsetrain's exact top-k path alone
    (:func:`topk_magnitude_indices` of a, without error feedback);
  * the floor: one pass reading d floats (``torch.sum``);
  * on CPU, the parts: the error-feedback update alone (``e += g``, torch), gaussiank's selection
    alone (on a ready ``a``: the candidate sample, one scan with moments, the threshold loop), and
    topk and gaussiank with the native kernels switched off (``torch path``: what runs where the
    optional C extension did not build).
Columns: ``x floor`` (time / the floor), ``x torch.topk``, ``x topk`` (time / topk as run: the
RegTop-k target compares regtopk with it).
On CUDA every timing is synchronised. Writes a JSON list of records (device, d, ratio,
distribution, selector, median_ms, floor_ms, selected) and a Markdown table beside it.
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
from functools import partial
from pathlib import Path

import torch

from sparsetrain.compressors import DGC, GaussianK, RandomK, RegTopK, TopK, kernels
from sparsetrain.compressors.selection import topk_magnitude_indices

SELECTORS = {
    "topk": TopK, "gaussiank": GaussianK, "gaussiank exact_k": partial(GaussianK, exact_k=True), "regtopk": RegTopK,
    "randomk": RandomK, "dgc": DGC, "topk fp16": partial(TopK, value_dtype="float16"),
}


def gradient(d: int, distribution: str, seed: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if distribution == "gaussian":
        g = torch.randn(d, generator=gen)
    else:  # Student-t, 3 degrees of freedom: heavy tails, finite variance
        chi2 = torch.randn(3, d, generator=gen).square().sum(0)  # seeded, unlike Chi2.sample
        g = torch.randn(d, generator=gen) / torch.sqrt(chi2 / 3)
    return (g * 1e-3).to(device)


def interleaved_medians_ms(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median ms of each function, timed in rounds that call every function once, so that a
    noisy stretch of the shared machine hits all of them alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 2):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_ >= 2:  # warm-up rounds
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def prepared(cls, d: int, ratio: float, grads: list[torch.Tensor], device: torch.device):
    """A worker that has already run a few steps: non-zero residual, RegTop-k's memory."""
    compressor = cls(d, ratio, worker=1, num_workers=8, seed=0, device=device)
    for step, g in enumerate(grads, start=1):
        payload = compressor.compress(g, step)
        aggregate = torch.zeros(d, device=device).index_add_(0, payload.indices, payload.values.float()) / 8
        aggregate += g * 0.5  # other workers' contributions
        compressor.observe(aggregate)
    return compressor


def kernel_backend(device: torch.device) -> str:
    """Which native kernels the selectors' scans use on ``device``."""
    probe = torch.empty(1, device=device)
    if device.type == "cuda":
        return "Triton" if kernels.gpu(probe) else "off (torch path)"
    return "C" if kernels.native(probe) else "off (torch path)"


def torch_path(fn):
    """``fn`` with the native kernels (C on CPU, Triton on GPU) switched off."""

    def run():
        kernels.ENABLED = False
        try:
            fn()
        finally:
            kernels.ENABLED = True

    return run


def bench(device: torch.device, d: int, ratio: float, distribution: str, repeats: int) -> list[dict]:
    grads = [gradient(d, distribution, seed, device) for seed in range(4)]
    g = grads[-1]
    k = max(1, int(ratio * d))
    rows = {
        "floor": (lambda: torch.sum(g), 0),
        "torch.topk": (lambda: torch.topk(g.abs(), k, sorted=False), k),
        "exact top-k path": (lambda: topk_magnitude_indices(g, k), k),
    }
    variants = [(name, cls, True) for name, cls in SELECTORS.items()]
    if kernels.ENABLED:
        variants += [("topk (torch path)", TopK, False), ("gaussiank (torch path)", GaussianK, False)]
    for name, cls, native in variants:
        compressor = prepared(cls, d, ratio, grads[:2], device)
        counts = []
        step = iter(range(3, 10**9))

        def run(compressor=compressor, counts=counts, step=step):
            t = next(step)  # a different gradient each step, as in training
            counts.append(compressor.compress(grads[t % len(grads)], t).count)

        rows[name] = (run if native else torch_path(run), counts)
    residual = prepared(GaussianK, d, ratio, grads[:2], device).residual
    acc = residual + g
    gaussiank = GaussianK(d, ratio)
    counts = []
    rows["error feedback alone (e += g)"] = (lambda: residual.add_(g), 0)
    rows["gaussiank selection alone"] = (lambda: counts.append(gaussiank.select(acc, 3).numel()), counts)
    medians = interleaved_medians_ms({name: fn for name, (fn, _) in rows.items()}, repeats, device)
    floor = medians.pop("floor")
    records = []
    for selector, ms in medians.items():
        count = rows[selector][1]
        selected = count if isinstance(count, int) else int(statistics.median(count))
        records.append(dict(device=device.type, d=d, ratio=ratio, distribution=distribution, selector=selector,
                            median_ms=ms, floor_ms=floor, selected=selected, k=k))
        print(f"{device.type} d={d} ratio={ratio} {distribution:9s} {selector:17s} {ms:8.2f} ms "
              f"({ms / floor:5.1f}x floor) selected {selected}", flush=True)
    return records


def table(records: list[dict]) -> list[str]:
    lines = []
    groups = sorted({(r["device"], r["d"], r["ratio"], r["distribution"]) for r in records},
                    key=lambda g: (g[0], g[1], -g[2], g[3]))
    lines += ["| device | d | ratio | distribution | selector | median ms | x floor | x torch.topk | x topk | selected (k) |",
              "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for device, d, ratio, dist in groups:
        rows = [r for r in records if (r["device"], r["d"], r["ratio"], r["distribution"]) == (device, d, ratio, dist)]
        reference = next(r["median_ms"] for r in rows if r["selector"] == "torch.topk")
        topk = next(r["median_ms"] for r in rows if r["selector"] == "topk")
        floor = rows[0]["floor_ms"]
        lines.append(f"| {device} | {d:,} | {ratio} | {dist} | floor (torch.sum) | {floor:.2f} | 1.0 | | | |")
        for r in rows:
            lines.append(f"| {device} | {d:,} | {ratio} | {dist} | {r['selector']} | {r['median_ms']:.2f} | "
                         f"{r['median_ms'] / floor:.1f} | {r['median_ms'] / reference:.2f} | "
                         f"{r['median_ms'] / topk:.2f} | {r['selected']} ({r['k']}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="270000,11173962,25557032")
    parser.add_argument("--ratios", default="0.01,0.001")
    parser.add_argument("--distributions", default="gaussian,student_t3")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda when available)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", default="results/selection/selection.json")
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [torch.device(d) for d in devices if d != "cuda" or torch.cuda.is_available()]
    records = []
    for device in devices:
        for d in (int(s) for s in args.sizes.split(",")):
            for ratio in (float(r) for r in args.ratios.split(",")):
                for distribution in args.distributions.split(","):
                    records += bench(device, d, ratio, distribution, args.repeats)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1) + "\n")
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    backend = "; ".join(f"{device}: {kernel_backend(device)}" for device in devices)
    header = [
        "# Selection time against the memory-bandwidth floor",
        "",
        f"Made by `python {' '.join(shlex.quote(a) for a in sys.argv)}` on {datetime.date.today()}, "
        f"{platform.node()} ({os.cpu_count()} cores{gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads; native kernels: {backend}). Median of {args.repeats} interleaved rounds (every selector once per round) after 2 warm-up rounds; CUDA timings "
        "synchronised. Selectors are timed as sparsetrain runs them (`compress`: error feedback + selection) "
        "on a worker with 2 previous steps of state. `x floor`: time / one `torch.sum` pass over d floats.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(header + table(records)) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
