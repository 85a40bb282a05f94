"""Start the workers with torch.distributed's elastic launcher (the library behind torchrun).

What torchrun does and the raw ``elastic_launch`` API does not, done here: a free rendezvous port
for single-node jobs and ``OMP_NUM_THREADS`` set so the workers together use the cores without
oversubscribing them. When this process already is a torchrun worker (``torchrun -m sparsetrain``,
SLURM ``srun``), nothing is launched: the worker runs in place.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from sparsetrain.worker import run_worker

__all__ = ["in_torchrun_worker", "free_port", "threads_per_process", "launch"]


def in_torchrun_worker() -> bool:
    """True when torchrun (or an elastic agent) started this process as one of its workers."""
    return "TORCHELASTIC_RUN_ID" in os.environ or {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= os.environ.keys()


def free_port() -> int:
    """A TCP port that is free on this host now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_process(nproc: int) -> int:
    """Intra-op threads per worker so that ``nproc`` workers fill the cores once: cores // nproc."""
    return max(1, available_cores() // nproc)


def launch(job: dict[str, Any], run_dir: str) -> dict[str, Any] | None:
    """Run the job on this node; returns rank 0's summary when rank 0 ran here."""
    d = job["dist"]
    if in_torchrun_worker():
        return run_worker(job, run_dir)
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(d["nproc"]))
    if d["nnodes"] == 1:
        backend, endpoint, run_id, rdzv_configs = "c10d", f"127.0.0.1:{free_port()}", uuid.uuid4().hex, {}
    else:
        # Static rendezvous, as torchrun does with --node-rank: node_rank 0 hosts the store and
        # global rank 0, so the run directory on node 0 gets the metrics and the summary.
        backend, endpoint, run_id = "static", d["rdzv_endpoint"], f"sparsetrain-{d['rdzv_endpoint']}"
        rdzv_configs = {"rank": d["node_rank"]}
    config = LaunchConfig(
        min_nodes=d["nnodes"],
        max_nodes=d["nnodes"],
        nproc_per_node=d["nproc"],
        run_id=run_id,
        rdzv_backend=backend,
        rdzv_endpoint=endpoint,
        rdzv_configs=rdzv_configs,
        max_restarts=d["max_restarts"],
        start_method="spawn",
        monitor_interval=0.1,
    )
    results = elastic_launch(config, run_worker)(job, run_dir)
    return next((r for r in results.values() if r is not None), None)
