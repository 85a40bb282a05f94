"""What each rank runs: join the process group, train, and hand rank 0's outcome to the launcher.

Entered from the elastic launcher that ``sparsetrain`` starts (:func:`sparsetrain.launch.launch`)
or in place when the process already is a torchrun worker. The job arrives as the checked
:class:`~sparsetrain.config.JobConfig`; workers never compose Hydra configs. A failure is recorded
for the launcher (:mod:`sparsetrain.failures`) before it propagates.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sparsetrain import failures
from sparsetrain.config import JobConfig
from sparsetrain.launch import TorchrunEnv
from sparsetrain.layout import WorkerLayout
from sparsetrain.train.loop import Trainer

__all__ = ["run_worker"]


def _attempt_store(env: TorchrunEnv, timeout: timedelta) -> dist.Store:
    """The rendezvous store for this attempt, under a prefix of its own.

    After an elastic restart the agent's store still holds the previous attempt's keys; gloo then
    reads a dead rank's address and fails with "connectFullMesh ... Connection refused" (seen here
    with c10d rendezvous, torch 2.14). Prefixing the keys with the restart count keeps the attempts
    apart.
    """
    base = dist.TCPStore(
        env.master_addr, env.master_port, env.world_size, is_master=env.rank == 0 and not env.agent_store,
        timeout=timeout, multi_tenant=True,
    )
    return dist.PrefixStore(f"sparsetrain/attempt_{env.restart_count}", base)


def run_worker(job: JobConfig, run_dir: str) -> dict[str, Any] | None:
    """Train this rank's share of the job; rank 0 returns the run's outcome (k, d, steps, wall
    time and the final metrics), the other ranks None."""
    started = time.perf_counter()
    env = TorchrunEnv.read()
    if job.dist.device == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    torch.manual_seed(job.seed)
    timeout = timedelta(seconds=job.dist.timeout_s)
    dist.init_process_group(
        backend=job.dist.backend, store=_attempt_store(env, timeout), rank=env.rank, world_size=env.world_size,
        timeout=timeout, device_id=device if device.type == "cuda" else None,
    )
    try:
        layout = WorkerLayout.create(env.rank, env.world_size, job.dist.workers)
        trainer = Trainer(job, Path(run_dir), layout, device, local_world_size=env.local_world_size)
        metrics = trainer.run()
        dist.barrier()
    except BaseException as error:
        failures.record(error, env.rank)
        raise
    finally:
        dist.destroy_process_group()
    if env.rank != 0:
        return None
    return {
        "k": trainer.parts.gradients.k, "dim": trainer.parts.task.dim, "steps": trainer.parts.steps,
        "steps_per_epoch": trainer.parts.steps_per_epoch, "wall_s": time.perf_counter() - started,
        "exchange": "+".join(sorted(trainer.exchanges)), **metrics,
    }
