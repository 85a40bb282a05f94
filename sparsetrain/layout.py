"""Logical workers: P workers of the algorithm hosted several per process.

20 gloo processes on 2 cores spend ~50 ms per collective in scheduling alone, so the paper's
20-worker experiment runs as, say, 2 processes hosting 10 logical workers each. Worker ids are
global and contiguous per process (rank r hosts ``r*W .. r*W+W-1``), so gathering per-process
blocks in rank order yields every worker's payload in worker order, whatever the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkerLayout"]


@dataclass(frozen=True)
class WorkerLayout:
    rank: int
    processes: int
    workers_per_process: int

    @classmethod
    def create(cls, rank: int, processes: int, workers: int | None) -> "WorkerLayout":
        workers = processes if workers is None else workers
        if workers < processes or workers % processes:
            raise ValueError(
                f"dist.workers={workers} must be a multiple of the {processes} processes"
            )
        return cls(rank, processes, workers // processes)

    @property
    def num_workers(self) -> int:
        """P, the number of logical workers in the whole job."""
        return self.processes * self.workers_per_process

    @property
    def worker_ids(self) -> range:
        """Global ids of the logical workers this process hosts, in order."""
        start = self.rank * self.workers_per_process
        return range(start, start + self.workers_per_process)
