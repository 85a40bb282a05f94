"""sparsetrain's DDP hook against plain DDP: ResNet-18 for CIFAR, 2 CPU processes, per link.

    python scripts/bench_ddp.py [--rounds 3] [--steps 10] [--links loopback,100mbit] [--out results/ddp]

Runs ``scripts/ddp_resnet.py`` under torchrun (2 gloo processes, batch 32 each, synthetic data)
with DDP's own all-reduce, with sparsetrain's Top-k hook at ratio 0.001 (DDP's 25 MB buckets, each
compressed on its own) and with the hook on one bucket, on the machine's loopback and on shaped
links (``sparsetrain.net.shaping``: a private network namespace whose loopback a token bucket
limits to 2 x the rate, i.e. the rate per host). The settings alternate run by run for ``--rounds``
rounds. Reports the median step time over every step after the first two of each run, and its
ratio to plain DDP on the same link.
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

from sparsetrain.net import shaping
from sparsetrain.net.cost import parse_rate

SCRIPT = Path(__file__).with_name("ddp_resnet.py")
HOOKS = {
    "plain DDP": ["--hook", "none"],
    "sparsetrain topk 0.001, per bucket": ["--hook", "topk", "--ratio", "0.001"],
    "sparsetrain topk 0.001, one bucket": ["--hook", "topk", "--ratio", "0.001", "--one-bucket"],
}


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def measure(link: str, hook_args: list[str], steps: int, out: Path) -> list[float]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(SCRIPT),
               *hook_args, "--steps", str(steps), "--json", str(out)]
    if link == "loopback":
        run(command)
    else:
        shaping.run_shaped(run, command, rate_bits=parse_rate(link), hosts=2)
    return json.loads(out.read_text())["step_ms"][2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--links", default="loopback,100mbit")
    parser.add_argument("--out", default="results/ddp")
    args = parser.parse_args()
    links = args.links.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for link in links:
                for label, hook_args in HOOKS.items():
                    steps = measure(link, hook_args, args.steps, Path(tmp) / "steps.json")
                    times.setdefault((link, label), []).extend(steps)
                    print(f"round {round_} {link} {label}: median {statistics.median(steps):.0f} ms", flush=True)
    rows = []
    for link in links:
        plain = statistics.median(times[(link, "plain DDP")])
        for label in HOOKS:
            median = statistics.median(times[(link, label)])
            rows.append({"link": link, "hook": label, "median_step_ms": median, "ratio_to_plain_ddp": median / plain,
                         "steps": len(times[(link, label)])})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    command = f"python {' '.join(shlex.quote(a) for a in sys.argv)}"
    lines = [
        "# sparsetrain's DDP hook against plain DDP (ResNet-18 for CIFAR, 2 CPU processes)",
        "",
        f"Made by `{command}` on {datetime.date.today()} ({platform.node()}: {machine}, "
        f"Python {platform.python_version()}, torch {torch.__version__}). `scripts/ddp_resnet.py` under torchrun: "
        f"2 gloo processes, batch 32 each, synthetic CIFAR-shaped data, SGD with Nesterov momentum 0.9 and weight "
        f"decay 5e-4 (sparsetrain's cifar10 recipe); {args.rounds} rounds, settings alternating run by run; median "
        "wall time per step, timed as sparsetrain's `time/step_ms` (from making the batch to the end of the "
        "update, waiting for the other rank included), over every step after the first two of each run. Links "
        "other than loopback: a private network namespace whose loopback a token bucket limits to the rate per "
        "host (`sparsetrain/net/shaping.py`).",
        "",
        "| link | hook | median step (ms) | / plain DDP | steps |",
        "| --- | --- | ---: | ---: | ---: |",
        *(f"| {r['link']} | {r['hook']} | {r['median_step_ms']:.0f} | {r['ratio_to_plain_ddp']:.3f} | {r['steps']} |"
          for r in rows),
    ]
    (out / "ddp_hooks.md").write_text("\n".join(lines) + "\n")
    (out / "ddp_hooks.json").write_text(json.dumps({"command": command, "date": str(datetime.date.today()),
                                                    "machine": machine, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
