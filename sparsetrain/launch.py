"""Everything about torchrun: its environment, and starting the workers with its elastic launcher.

:class:`TorchrunEnv` is the one reader of the variables torchrun (or the elastic agent) sets for
a worker. :func:`launch` does what torchrun does and the raw ``elastic_launch`` API does not: a
free rendezvous port for single-node jobs, ``OMP_NUM_THREADS`` so that the workers together use
the cores without oversubscribing them, and a multi-node rendezvous that waits for the other
nodes in Python, so that Ctrl-C stops it at once and ``dist.join_timeout_s`` ends it with one
line (torch's static rendezvous blocks in C++, deaf to signals, for 10 minutes). A failed job
raises :class:`JobFailed` with its root cause (:mod:`sparsetrain.failures`) instead of torch's
``ChildFailedError``. When this process already is a torchrun worker (``torchrun -m sparsetrain``,
SLURM ``srun``), nothing is launched: the worker runs in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import RendezvousParameters, rendezvous_handler_registry
from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous
from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from sparsetrain import failures
from sparsetrain.config import JobConfig
from sparsetrain.net import shaping
from sparsetrain.net.cost import parse_rate

__all__ = ["TorchrunEnv", "JobFailed", "in_torchrun_worker", "free_port", "threads_per_process", "launch"]


@dataclass(frozen=True)
class TorchrunEnv:
    """The variables torchrun sets for each worker process (defaults: a single process)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    group_rank: int
    restart_count: int
    run_id: str | None
    master_addr: str
    master_port: int | None
    agent_store: bool

    @classmethod
    def read(cls) -> "TorchrunEnv":
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
            group_rank=int(env.get("GROUP_RANK", 0)),
            restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
            run_id=env.get("TORCHELASTIC_RUN_ID") if env.get("TORCHELASTIC_RUN_ID") not in (None, "none") else None,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env["MASTER_PORT"]) if "MASTER_PORT" in env else None,
            agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
        )


class JobFailed(Exception):
    """The job's workers failed; ``failure`` is the root cause (:func:`sparsetrain.failures.root_cause`)."""

    def __init__(self, failure: failures.Failure) -> None:
        super().__init__(failure.description)
        self.failure = failure

    def __reduce__(self):  # pickled whole (from a shaped launcher's process)
        return JobFailed, (self.failure,)


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


class PatientStaticRendezvous(StaticTCPRendezvous):
    """torch's static rendezvous (node 0 hosts the store; torchrun's ``--node-rank``), but the
    wait for the other nodes runs in Python: Ctrl-C interrupts it, and after ``join_timeout``
    seconds it ends with one line naming the endpoint and the missing nodes."""

    def __init__(self, *args: Any, join_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.join_timeout = join_timeout

    def get_backend(self) -> str:
        return "sparsetrain-static"

    def next_rendezvous(self):
        if self._store is None:
            self._store = self._join()
        return super().next_rendezvous()

    def _join(self) -> dist.TCPStore:
        endpoint = f"{self.master_addr}:{self.master_port}"
        deadline = time.monotonic() + self.join_timeout
        announced = False
        store = None
        with _interrupts_noted() as interrupted:
            while store is None:
                try:
                    store = dist.TCPStore(
                        self.master_addr, self.master_port, self.world_size, self.rank == 0,
                        timeout=timedelta(seconds=2), wait_for_workers=False, multi_tenant=True,
                    )
                except (RuntimeError, dist.DistError):  # node 0 is not listening yet
                    if interrupted:  # Ctrl-C during the C++ connect, which may report it as an error
                        raise KeyboardInterrupt from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"node {self.rank} found no rendezvous at dist.rdzv_endpoint={endpoint} within "
                            f"dist.join_timeout_s={self.join_timeout:g}: start node 0 there, or raise "
                            f"dist.join_timeout_s"
                        ) from None
        store.set_timeout(self.timeout)
        joined = store.add(f"{self.run_id}/joined", 1)
        while joined < self.world_size:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {joined} of dist.nnodes={self.world_size} nodes joined at dist.rdzv_endpoint={endpoint} "
                    f"within dist.join_timeout_s={self.join_timeout:g}: start the others (each with its own "
                    f"dist.node_rank), or raise dist.join_timeout_s"
                )
            if not announced and time.monotonic() > deadline - self.join_timeout + 5:
                print(f"sparsetrain: waiting for {self.world_size - joined} more node(s) at {endpoint} "
                      f"(dist.join_timeout_s={self.join_timeout:g})", file=sys.stderr, flush=True)
                announced = True
            time.sleep(0.1)
            joined = store.add(f"{self.run_id}/joined", 0)
        return store


@contextlib.contextmanager
def _interrupts_noted():
    """A list that receives SIGINT while the block runs (the handler before it still runs), so a
    Ctrl-C that C++ turned into an ordinary error is not mistaken for a refused connection."""
    interrupted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum, frame):
        interrupted.append(signum)
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _patient_static(params: RendezvousParameters) -> PatientStaticRendezvous:
    host, port = parse_rendezvous_endpoint(params.endpoint, -1)
    return PatientStaticRendezvous(
        host, port, int(params.config["rank"]), params.max_nodes, params.run_id, int(params.config["timeout"]),
        join_timeout=float(params.config["join_timeout"]),
    )


rendezvous_handler_registry.register("sparsetrain-static", _patient_static)


def _quiet_elastic_logs() -> None:
    """torch's launcher logs every worker's traceback and its own shut-down; the root cause is
    reported once instead (``HYDRA_FULL_ERROR=1`` keeps them)."""
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        prefixes = ("torch.distributed.elastic", "torch.multiprocessing.spawn", "torch.distributed.launcher")
        for name in list(logging.root.manager.loggerDict):  # torch sets each module logger's own level
            if name.startswith(prefixes):
                logging.getLogger(name).setLevel(logging.CRITICAL)


def launch(job: JobConfig, run_dir: str, entrypoint: Callable[[JobConfig, str], Any]) -> Any:
    """Run ``entrypoint(job, run_dir)`` on every worker of this node; returns rank 0's result
    when rank 0 ran here (else None), or raises :class:`JobFailed`. With ``net.bandwidth`` the
    launcher runs in a process of its own on a shaped link (:mod:`sparsetrain.net.shaping`), and
    rank 0's result gains ``loopback_bytes``, the traffic the link carried."""
    if in_torchrun_worker():
        return entrypoint(job, run_dir)
    if job.net.bandwidth is None:
        return _launch_here(job, run_dir, entrypoint)
    result, carried = shaping.run_shaped(
        _launch_here, job, run_dir, entrypoint, rate_bits=parse_rate(job.net.bandwidth), hosts=job.dist.nproc
    )
    return None if result is None else {**result, "loopback_bytes": carried}


def _launch_here(job: JobConfig, run_dir: str, entrypoint: Callable[[JobConfig, str], Any]) -> Any:
    d = job.dist
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(d.nproc))
    if d.nnodes == 1:
        backend, endpoint, run_id, rdzv_configs = "c10d", f"127.0.0.1:{free_port()}", uuid.uuid4().hex, {}
    else:  # node_rank 0 hosts the store and global rank 0, so its run directory gets the metrics
        backend, endpoint, run_id = "sparsetrain-static", d.rdzv_endpoint, f"sparsetrain-{d.rdzv_endpoint}"
        rdzv_configs = {"rank": d.node_rank, "timeout": int(d.timeout_s), "join_timeout": d.join_timeout_s}
    config = LaunchConfig(
        min_nodes=d.nnodes, max_nodes=d.nnodes, nproc_per_node=d.nproc, run_id=run_id, rdzv_backend=backend,
        rdzv_endpoint=endpoint, rdzv_configs=rdzv_configs, max_restarts=d.max_restarts, start_method="spawn",
        monitor_interval=0.1,
    )
    _quiet_elastic_logs()
    with tempfile.TemporaryDirectory(prefix="sparsetrain-failures-") as records:
        os.environ[failures.FAILURES_ENV] = records
        try:
            results = elastic_launch(config, entrypoint)(job, run_dir)
        except ChildFailedError as error:
            signals = {
                rank: failure.signal_name() for rank, failure in error.failures.items() if failure.exitcode < 0
            }
            first = d.node_rank * d.nproc
            raise JobFailed(failures.root_cause(records, range(first, first + d.nproc), signals)) from None
        finally:
            os.environ.pop(failures.FAILURES_ENV, None)
    return next((r for r in results.values() if r is not None), None)
