"""Two ``compressor.scope`` settings timed step by step in the same two processes, alternating.

    torchrun --standalone --nproc-per-node 2 scripts/pair_scopes.py --pairs 100 --json out.json \
        task=cifar10 task.synthetic=true task.batch_size=32 dist.nproc=2 compressor=topk ratio=0.001

Separate runs of one setting after the other drift apart on a shared machine (10-15% over tens of
minutes here) by more than the two scopes differ. Here both run in the same trainer, built from
the ``sparsetrain`` overrides given: one task, one optimizer, and two ways of making the averaged
gradient, ``scope=model`` and ``scope=bucket`` (:mod:`sparsetrain.train.gradients`), each with its
own compressors (the trainer's own for the job's scope, one more for the other). Every pair of steps runs one of each, the order swapping from pair to pair, so
drift and the order within a pair cancel; each step is the trainer's own
:meth:`~sparsetrain.train.loop.Trainer.step`, timed as ``time/step_ms`` is, without the per-step
logging. Rank 0 writes every step's time per scope and the paired differences (bucket minus model)
to ``--json``, and beside them each process's CPU time per step (all its threads: the collectives'
and their callbacks' as well as the compute's), which says whether a difference in time is work
done or waiting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from sparsetrain.compose import register_schemas
from sparsetrain.layout import WorkerLayout
from sparsetrain.train.gradients import OverlappedGradients, build_gradients
from sparsetrain.train.guards import NonfiniteGuard
from sparsetrain.train.loop import Trainer
from sparsetrain.validation import check_job

SCOPES = ("model", "bucket")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="pairs of steps timed, after --warmup pairs")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="+", help="the sparsetrain job, as its command line gives it")
    parser.add_argument("--json")
    args = parser.parse_args()

    overrides = [*args.overrides, f"train.steps={2 * (args.pairs + args.warmup)}"]
    register_schemas()
    with initialize_config_module(config_module="sparsetrain.conf", version_base="1.3"):
        job = check_job(OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(job.seed)
    layout = WorkerLayout.create(rank, world, job.dist.workers)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(job, Path(run_dir), layout, device, local_world_size=world)
    parts = trainer.parts
    ways = {job.compressor["scope"]: (parts.gradients, trainer.nonfinite)}  # the job's own, and the other
    for scope in set(SCOPES) - set(ways):
        gradients = build_gradients({**job.compressor, "scope": scope}, job.ratio, job.exchange, parts.task, layout,
                                    job.seed, device)
        ways[scope] = (gradients, NonfiniteGuard(job.train.nonfinite, gradients.all_compressors, parts.task.flat_params))
    assert isinstance(ways["bucket"][0], OverlappedGradients), "this job runs flat whatever the scope"
    times: dict[str, list[float]] = {scope: [] for scope in SCOPES}
    cpu: dict[str, list[float]] = {scope: [] for scope in SCOPES}
    split: dict[str, dict[str, list[float]]] = {scope: {"select_ms": [], "comm_ms": []} for scope in SCOPES}
    dist.barrier()
    step = 0
    for pair in range(args.warmup + args.pairs):
        for scope in SCOPES if pair % 2 == 0 else SCOPES[::-1]:
            step += 1
            parts.gradients, trainer.nonfinite = ways[scope]
            started, cpu_started = time.perf_counter(), time.process_time()
            result = trainer.step(step)
            elapsed, cpu_elapsed = 1e3 * (time.perf_counter() - started), 1e3 * (time.process_time() - cpu_started)
            if pair >= args.warmup:
                times[scope].append(elapsed)
                cpu[scope].append(cpu_elapsed)
                split[scope]["select_ms"].append(result.select_ms)
                split[scope]["comm_ms"].append(result.comm_ms)
    cpu_per_process: list[dict[str, list[float]]] = [{} for _ in range(world)]
    dist.all_gather_object(cpu_per_process, cpu)
    if rank == 0:
        differences = [b - m for m, b in zip(times["model"], times["bucket"])]
        report = {
            "overrides": overrides, "warmup": args.warmup, "step_ms": times, "split": split,
            "bucket_minus_model_ms": differences,
            "median_ms": {scope: statistics.median(v) for scope, v in times.items()},
            "median_difference_ms": statistics.median(differences),
            "cpu_ms": cpu_per_process,
            "median_cpu_difference_ms": [
                statistics.median(b - m for m, b in zip(c["model"], c["bucket"])) for c in cpu_per_process],
        }
        print(json.dumps({k: report[k] for k in ("median_ms", "median_difference_ms", "median_cpu_difference_ms")}))
        if args.json:
            Path(args.json).write_text(json.dumps(report) + "\n")
    dist.barrier()  # drain gloo's worker threads before exit (pytorch/pytorch#190489)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
