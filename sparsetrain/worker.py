"""What each rank runs: join the process group, train, and (rank 0) write the run's summary.

Entered either from the elastic launcher that ``sparsetrain`` starts (:mod:`sparsetrain.launch`)
or directly when the process already is a torchrun worker. The job arrives as the resolved config
in plain data; workers never compose Hydra configs.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sparsetrain.components import component_class
from sparsetrain.layout import WorkerLayout
from sparsetrain.metrics import SUMMARY, read_metrics, write_json_atomic
from sparsetrain.trainer import Trainer

__all__ = ["run_worker", "run_summary"]


def run_summary(job: dict[str, Any]) -> dict[str, Any]:
    """The resolved config's main choices, recorded in summary.json."""
    d = job["dist"]
    return {
        "task": job["task"].get("name", job["task"]["_target_"]),
        "data": component_class(job["task"]).describe_data(job["task"]),
        "compressor": job["compressor"].get("name", job["compressor"]["_target_"]),
        "compressor_target": job["compressor"]["_target_"],
        "ratio": job["ratio"],
        "seed": job["seed"],
        "workers": d["workers"],
        "processes": d["nproc"] * d["nnodes"],
        "device": d["device"],
        "backend": d["backend"],
        "epochs": job["train"].get("epochs"),
        "steps": job["train"].get("steps"),
        "lr": job["train"]["lr"],
        "momentum": job["train"]["momentum"],
        "weight_decay": job["train"]["weight_decay"],
        "reject_factor": job["train"].get("reject_factor"),
        **({"mu": job["compressor"]["mu"]} if "mu" in job["compressor"] else {}),
    }


def _attempt_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store for this attempt, under a prefix of its own.

    After an elastic restart the agent's store still holds the previous attempt's keys; gloo then
    reads a dead rank's address and fails with "connectFullMesh ... Connection refused" (seen here
    with c10d rendezvous, torch 2.14). Prefixing the keys with the restart count keeps the attempts
    apart.
    """
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    base = dist.TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=rank == 0 and not agent_hosts_store,
        timeout=timeout,
        multi_tenant=True,
    )
    return dist.PrefixStore(f"sparsetrain/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)


def run_worker(job: dict[str, Any], run_dir: str) -> dict[str, Any] | None:
    """Train this rank's share of the job; rank 0 returns the summary, the others None."""
    started = time.perf_counter()
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    d = job["dist"]
    if d["device"] == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    torch.manual_seed(job["seed"])
    timeout = timedelta(seconds=d.get("timeout_s", 600))
    dist.init_process_group(
        backend=d["backend"],
        store=_attempt_store(rank, world_size, timeout),
        rank=rank,
        world_size=world_size,
        timeout=timeout,
        device_id=device if device.type == "cuda" else None,
    )
    layout = WorkerLayout.create(rank, world_size, d["workers"])
    summary = run_summary(job)
    try:
        trainer = Trainer(job, run_dir, layout, device)
        trainer.run()
        dist.barrier()
        summary.update(
            status="completed",
            k=trainer.k,
            dim=trainer.task.dim,
            steps=trainer.steps,
            steps_per_epoch=trainer.steps_per_epoch,
            wall_s=time.perf_counter() - started,
        )
        trainer.close(summary)
    except BaseException as error:
        if rank == 0:
            records = read_metrics(run_dir)  # what was measured before the failure stays visible
            summary.update({k: v for k, v in (records[-1] if records else {}).items() if k != "step"})
            summary.update(status="failed", error=f"{type(error).__name__}: {error}")
            summary["traceback"] = traceback.format_exc()
            write_json_atomic(Path(run_dir) / SUMMARY, summary)
        raise
    finally:
        dist.destroy_process_group()
    if rank == 0:
        return {**summary, **trainer.last_metrics}
    return None
