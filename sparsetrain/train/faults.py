"""Fault injection for tests (``fault.*``), installed around the task so the loop knows nothing of it.

* ``fault.kill_rank`` dies abruptly (SIGKILL, no clean-up) when it starts step ``fault.at_step``,
  once per run directory (a marker file), so an elastic restart then runs through;
* ``fault.nonfinite_at_step``: rank 0's first hosted worker computes a NaN in its gradient: in
  its first parameter's gradient during backward where the task has a network (before a bucket
  that backward exchanges, ``compressor.scope=bucket``), else in ``flat_grad[0]``.

Both wrap ``task.local_gradient`` of the process concerned; nothing is installed otherwise.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sparsetrain.config import FaultConfig
from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.base import Task

__all__ = ["install_faults"]


def install_faults(fault: FaultConfig, task: Task, layout: WorkerLayout, run_dir: Path) -> None:
    kill = fault.at_step is not None and fault.kill_rank == layout.rank
    poison = fault.nonfinite_at_step is not None and layout.rank == 0
    if not (kill or poison):
        return
    local_gradient = task.local_gradient

    def faulty_local_gradient(local_worker: int, step: int, accumulate: bool = False):
        if kill and step == fault.at_step and local_worker == 0:
            marker = run_dir / f"fault_injected_rank{layout.rank}"
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if not (poison and step == fault.nonfinite_at_step and local_worker == 0):
            return local_gradient(local_worker, step, accumulate)
        if task.model is None:
            loss = local_gradient(local_worker, step, accumulate)
            task.flat_grad[0] = float("nan")
            return loss
        handle = next(task.model.parameters()).register_hook(lambda grad: grad.clone().fill_(float("nan")))
        try:
            return local_gradient(local_worker, step, accumulate)
        finally:
            handle.remove()

    task.local_gradient = faulty_local_gradient
