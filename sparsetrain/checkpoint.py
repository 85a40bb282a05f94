"""Checkpoints: every rank's training state at a step, written atomically, found after a restart.

Layout in the run directory::

    checkpoints/step_000001000/rank0.pt ... rankN.pt   one file per rank: its compressors' state differs
    checkpoints/step_000001000/COMPLETE                written once every rank has written

Each file is written to a temporary name and renamed, and a step counts only once COMPLETE exists,
so a crash mid-write never leaves a checkpoint that looks usable. On several nodes every node keeps
its own ranks' files in its own run directory and marks them complete after a barrier; on restart
the ranks agree on the newest step that all of them have. Files hold only tensors, numbers,
strings and containers and are read with ``torch.load(weights_only=True)``. The two newest complete
checkpoints are kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINTS", "save_rank", "mark_complete", "latest", "complete_steps", "step_dir", "load_rank"]

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
KEEP = 2


def step_dir(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:09d}"


def save_rank(run_dir: Path | str, step: int, rank: int, state: dict[str, Any]) -> None:
    """Write this rank's state for ``step`` atomically (temporary file, then rename)."""
    directory = step_dir(run_dir, step)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"rank{rank}.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / f"rank{rank}.pt")


def mark_complete(run_dir: Path | str, step: int, world_size: int, ranks: range | None = None) -> None:
    """After every rank has saved (a barrier): declare ``step`` usable in this run directory, whose
    files are those of ``ranks`` (all by default), and drop older checkpoints."""
    directory = step_dir(run_dir, step)
    missing = [r for r in (ranks or range(world_size)) if not (directory / f"rank{r}.pt").exists()]
    if missing:
        raise RuntimeError(f"checkpoint {directory} lacks ranks {missing}")
    tmp = directory / (COMPLETE + ".tmp")
    tmp.write_text(f"{world_size}\n")
    os.replace(tmp, directory / COMPLETE)
    complete = _complete_dirs(run_dir)
    for old in complete[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def _complete_dirs(run_dir: Path | str) -> list[Path]:
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(d for d in root.glob("step_*") if (d / COMPLETE).exists())


def complete_steps(run_dir: Path | str) -> list[int]:
    return [checkpoint_step(d) for d in _complete_dirs(run_dir)]


def latest(run_dir: Path | str) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    complete = _complete_dirs(run_dir)
    return complete[-1] if complete else None


def checkpoint_step(directory: Path) -> int:
    return int(directory.name.split("_")[1])


def load_rank(directory: Path, rank: int, world_size: int) -> dict[str, Any]:
    """This rank's state from a complete checkpoint written by the same number of ranks."""
    saved_world = int((directory / COMPLETE).read_text())
    if saved_world != world_size:
        raise RuntimeError(
            f"checkpoint {directory} was written by {saved_world} processes, this job has {world_size}: "
            f"resume with the same dist.nproc and dist.nnodes"
        )
    return torch.load(directory / f"rank{rank}.pt", map_location="cpu", weights_only=True)
