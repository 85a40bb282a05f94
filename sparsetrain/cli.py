"""``sparsetrain``: check the command line, launch the workers, write the summary, print one line.

    sparsetrain task=linreg compressor=topk ratio=0.4          # one run, 2 CPU workers or 1 per GPU
    sparsetrain -m compressor=dense,topk ratio=0.5,0.6         # a Hydra multirun sweep
    torchrun --nproc-per-node 2 -m sparsetrain task=linreg     # already under torchrun: no relaunch

Every job of the command (each point of a sweep) is composed and checked first
(:mod:`sparsetrain.compose`): a bad value is one line and exit code 2, before anything runs. The
Hydra app then runs in the launching process only, so there is one run directory per job; the
workers receive the checked :class:`~sparsetrain.config.JobConfig`. A job that fails ends with one
line naming its root cause and exit code 1 (130 when interrupted); ``HYDRA_FULL_ERROR=1`` shows the
traceback as well.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException

from sparsetrain import components, rundir
from sparsetrain.compose import JOB, check_command_line, register_schemas, resumed_job
from sparsetrain.errors import ConfigError
from sparsetrain.failures import describe
from sparsetrain.launch import JobFailed, TorchrunEnv, in_torchrun_worker, launch
from sparsetrain.metrics import write_json_atomic
from sparsetrain.summary import summary_line, write_summary
from sparsetrain.validation import check_job
from sparsetrain.worker import run_worker

__all__ = ["main"]

_FAILED_JOBS: list[str] = []
"""Jobs of this process's sweep that failed (each already reported on its own line)."""


def _torchrun_layout(job: dict[str, Any]) -> None:
    """Under torchrun the process layout is torchrun's, whatever the config says."""
    env, d = TorchrunEnv.read(), job["dist"]
    d["nproc"] = env.local_world_size
    d["nnodes"] = max(1, env.world_size // env.local_world_size)
    d["node_rank"] = env.group_rank
    d["rdzv_endpoint"] = d["rdzv_endpoint"] or f"{env.master_addr}:{env.master_port}"


def _refuse(error: ConfigError, run_dir: str | None) -> None:
    if run_dir is not None:
        rundir.discard_if_empty(run_dir)
    print(f"sparsetrain: error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="pkg://sparsetrain.conf", config_name="config")
def app(cfg: DictConfig) -> dict[str, Any] | None:
    run_dir = HydraConfig.get().runtime.output_dir
    raw = OmegaConf.to_container(cfg, resolve=True)
    resume = raw.get("resume")
    try:
        if resume:
            run_dir = str(Path(resume).resolve())
            job = resumed_job(run_dir)
        else:
            if in_torchrun_worker():
                _torchrun_layout(raw)
            job = check_job(raw, list(HydraConfig.get().overrides.task))
        task_options = {k: v for k, v in job.task.items() if k != "_target_"}
        components.component_class(job.task["_target_"]).prepare(task_options, num_workers=job.dist.workers)
        job.task.update(task_options)
    except ConfigError as error:
        _refuse(error, None if resume else run_dir)
    first_process = TorchrunEnv.read().rank == 0
    if not resume and first_process:
        write_json_atomic(Path(run_dir) / JOB, dataclasses.asdict(job))
    try:
        outcome = launch(job, run_dir, run_worker)
    except (JobFailed, KeyboardInterrupt, SignalException, Exception) as error:
        cause, trace = _cause(error)
        if first_process:
            write_summary(run_dir, job, None, error=cause, traceback=trace)
        if os.environ.get("HYDRA_FULL_ERROR") == "1" and trace:
            print(trace, file=sys.stderr)
        print(f"sparsetrain: error: {cause}; the run directory keeps what was logged: {run_dir}", file=sys.stderr)
        interrupted = isinstance(error, (KeyboardInterrupt, SignalException))
        if HydraConfig.get().mode == RunMode.MULTIRUN and not interrupted:
            _FAILED_JOBS.append(f"{run_dir}: {cause}")  # the sweep goes on; main() reports it at the end
            return None
        sys.exit(130 if interrupted else 1)
    if outcome is None:  # another node hosts rank 0 and writes the summary
        return None
    summary = write_summary(run_dir, job, outcome)
    print(summary_line(summary, run_dir), flush=True)
    return summary


def _cause(error: BaseException) -> tuple[str, str]:
    """The failure's one-line root cause and its traceback (empty where unknown)."""
    if isinstance(error, JobFailed):
        return error.failure.description, error.failure.traceback
    if isinstance(error, SignalException):
        return f"interrupted by {error.sigval.name}", ""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by SIGINT", ""
    return describe(error), "".join(traceback.format_exception(error))


def main() -> None:
    register_schemas()
    rundir.register_resolvers()
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as error:
        _refuse(error, None)
    app()
    if _FAILED_JOBS:
        print(f"sparsetrain: error: {len(_FAILED_JOBS)} job(s) of the sweep failed, the first {_FAILED_JOBS[0]}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
