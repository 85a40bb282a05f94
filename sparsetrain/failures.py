"""Why a run failed: every worker records its exception, the launcher names the root cause.

When one rank fails the others usually fail as a consequence: a collective whose peer died
reports "Connection reset by peer", and the elastic agent then stops the rest. torch's launcher
reports whichever failure it noticed first, often a consequence, wrapped in ``ChildFailedError``.
Instead, each worker writes its exception (type, message, traceback, time) into the directory
the launcher gives it in ``$SPARSETRAIN_FAILURES``, and :func:`root_cause` names, in this order:
the earliest failure that is not a communication error; a rank killed by a signal (it leaves no
record); the earliest communication error.
"""

from __future__ import annotations

import json
import os
import time
import traceback as tb
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

__all__ = ["FAILURES_ENV", "Failure", "describe", "record", "root_cause"]

FAILURES_ENV = "SPARSETRAIN_FAILURES"

_COMMUNICATION_SIGNS = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "timed out")


def describe(error: BaseException) -> str:
    """``Type: message`` on one line (the message's first line)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _is_communication_error(error: BaseException) -> bool:
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and any(sign in str(error).lower() for sign in _COMMUNICATION_SIGNS)


@dataclass
class Failure:
    rank: int
    time: float
    description: str
    traceback: str
    communication: bool


def record(error: BaseException, rank: int) -> None:
    """Write this rank's failure where the launcher looks (nothing when not launched by it)."""
    directory = os.environ.get(FAILURES_ENV)
    if not directory:
        return
    failure = {
        "rank": rank, "time": time.time(), "description": describe(error),
        "traceback": "".join(tb.format_exception(error)), "communication": _is_communication_error(error),
    }
    path = Path(directory) / f"rank{rank}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(failure))
    os.replace(tmp, path)


def root_cause(directory: str | Path, ranks: range, signals: dict[int, str]) -> Failure:
    """The failure to report for a job whose workers ``ranks`` (on this node) recorded theirs in
    ``directory``; ``signals`` names the signal that ended a worker, where the launcher knows it."""
    failures = sorted(
        (Failure(**json.loads(p.read_text())) for p in Path(directory).glob("rank*.json")), key=lambda f: f.time
    )
    primary = [f for f in failures if not f.communication]
    if primary:
        return primary[0]
    silent = [r for r in ranks if r not in {f.rank for f in failures}]
    if silent:
        rank = min(silent, key=lambda r: (r not in signals, r))
        how = f"killed by {signals[rank]}" if rank in signals else "ended without an error (killed, or out of memory)"
        return Failure(rank, 0.0, f"rank {rank} {how}", "", False)
    if failures:
        return failures[0]
    return Failure(-1, 0.0, "the job failed without a recorded error", "", False)
