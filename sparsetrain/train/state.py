"""Save this rank's training state at a step, and restore the newest one every rank can read.

:mod:`sparsetrain.checkpoint` holds the files' layout; this module holds the protocol. Saving:
every rank writes its file, a barrier, then each node's first rank marks the step complete.
Restoring (where :meth:`~sparsetrain.train.loop.Trainer.run` starts): every rank proposes the
newest complete step whose file it can read, the ranks agree on the smallest proposal, and if a
rank cannot read that step either, they all try older ones, until every rank holds the same step.
An unreadable file (truncated by a crash mid-copy, say) costs one warning line, not the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from sparsetrain import checkpoint
from sparsetrain.layout import WorkerLayout

__all__ = ["save", "restore"]


def save(run_dir: Path, step: int, layout: WorkerLayout, local_world_size: int, state: dict[str, Any]) -> None:
    checkpoint.save_rank(run_dir, step, layout.rank, state)
    if layout.processes > 1:
        dist.barrier()
    if layout.rank % local_world_size == 0:  # each node's first rank marks that node's files
        node_ranks = range(layout.rank, layout.rank + local_world_size)
        checkpoint.mark_complete(run_dir, step, layout.processes, node_ranks)


def restore(run_dir: Path, layout: WorkerLayout, device: torch.device, load: Callable[[dict[str, Any]], None]) -> int:
    """Load (with ``load``) the newest checkpoint every rank can read; returns its step, 0 if none."""
    candidates = sorted(checkpoint.complete_steps(run_dir), reverse=True)
    while True:
        proposal, state = _newest_readable(run_dir, layout, candidates)
        agreed = _all_min(proposal, layout, device)
        readable = True
        if agreed not in (proposal, 0):  # an older step than this rank's newest: read that one
            state = _read(run_dir, layout, agreed)
            readable = state is not None
        if _all_min(int(readable), layout, device):
            break
        candidates = [s for s in candidates if s < agreed]  # some rank cannot read it: all go older
    if agreed:
        load(state)
    return agreed


def _read(run_dir: Path, layout: WorkerLayout, step: int) -> dict[str, Any] | None:
    try:
        return checkpoint.load_rank(checkpoint.step_dir(run_dir, step), layout.rank, layout.processes)
    except checkpoint.CheckpointUnreadable as error:
        print(f"sparsetrain: warning: checkpoint {error}; falling back to an older one", file=sys.stderr)
        return None


def _newest_readable(run_dir: Path, layout: WorkerLayout, candidates: list[int]) -> tuple[int, dict[str, Any] | None]:
    """The newest of ``candidates`` whose file this rank reads, and its state; unreadable ones
    are dropped from ``candidates``."""
    for step in list(candidates):
        state = _read(run_dir, layout, step)
        if state is not None:
            return step, state
        candidates.remove(step)
    return 0, None


def _all_min(value: int, layout: WorkerLayout, device: torch.device) -> int:
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    if layout.processes > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor)
