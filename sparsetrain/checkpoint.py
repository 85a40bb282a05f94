"""Checkpoints: every rank's training state at a step, written atomically, found after a restart.

Layout in the run directory::

    checkpoints/step_000001000/rank0.pt ... rankN.pt   one file per rank: its compressors' state differs
    checkpoints/step_000001000/COMPLETE                written once every rank has written

Each file is written to a temporary name and renamed, and a step counts only once COMPLETE exists,
so a crash mid-write never leaves a checkpoint that looks usable. On several nodes every node keeps
its own ranks' files in its own run directory and marks them complete after a barrier; on restart
the ranks agree on the newest step that all of them have. Files hold only tensors, numbers,
strings and containers and are read with ``torch.load(weights_only=True)``. The two newest complete
checkpoints are kept, so a newest one that turns out unreadable (a truncated file) leaves an older
one to fall back on (:mod:`sparsetrain.train.state`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINTS", "CheckpointUnreadable", "save_rank", "mark_complete", "latest", "complete_steps", "step_dir",
    "load_rank",
]

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
KEEP = 2


def step_dir(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:09d}"


class CheckpointUnreadable(Exception):
    """This rank's file of a complete checkpoint cannot be read (truncated, corrupt, missing)."""


def save_rank(run_dir: Path | str, step: int, rank: int, state: dict[str, Any]) -> None:
    """Write this rank's state for ``step`` atomically (temporary file, then rename). A failed
    write (a full disk, say) leaves no temporary file and raises an OSError naming the path."""
    directory = step_dir(run_dir, step)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rank{rank}.pt"
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch's zip writer reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1]
        raise OSError(f"writing checkpoint {path} failed: {reason}") from None


def mark_complete(run_dir: Path | str, step: int, world_size: int, ranks: range | None = None) -> None:
    """After every rank has saved (a barrier): declare ``step`` usable in this run directory, whose
    files are those of ``ranks`` (all by default), and drop older checkpoints."""
    directory = step_dir(run_dir, step)
    missing = [r for r in (ranks or range(world_size)) if not (directory / f"rank{r}.pt").exists()]
    if missing:
        raise RuntimeError(f"checkpoint {directory} lacks ranks {missing}")
    tmp = directory / (COMPLETE + ".tmp")
    try:
        tmp.write_text(f"{world_size}\n")
        os.replace(tmp, directory / COMPLETE)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
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
    """This rank's state from a complete checkpoint written by the same number of ranks; raises
    :class:`CheckpointUnreadable` when its file cannot be read."""
    saved_world = int((directory / COMPLETE).read_text())
    if saved_world != world_size:
        raise RuntimeError(
            f"checkpoint {directory} was written by {saved_world} processes, this job has {world_size}: "
            f"resume with the same dist.nproc and dist.nnodes"
        )
    path = directory / f"rank{rank}.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointUnreadable(f"{path} cannot be read ({reason})") from error
