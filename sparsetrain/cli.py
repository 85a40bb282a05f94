"""``sparsetrain``: compose the Hydra config, validate it, launch the workers, print a summary.

    sparsetrain task=linreg compressor=topk ratio=0.4          # one run, 2 CPU workers or 1 per GPU
    sparsetrain -m compressor=dense,topk ratio=0.5,0.6         # a Hydra multirun sweep
    torchrun --nproc-per-node 2 -m sparsetrain task=linreg     # already under torchrun: no relaunch

The Hydra app runs in the launching process only, so there is one run directory per job (Hydra's
output dir); the workers receive the resolved config as plain data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sparsetrain import checkpoint
from sparsetrain.components import component_class
from sparsetrain.launch import in_torchrun_worker, launch
from sparsetrain.metrics import SUMMARY, write_json_atomic, read_metrics
from sparsetrain.validation import ConfigError, resolve_job

__all__ = ["main"]


JOB = "job.json"
"""The resolved job as launched, saved in the run directory so that ``resume=`` can continue it."""


def _run_dir(resume: str | None) -> str:
    """The run directory: the resumed one; else outputs/<date>/<time>, or outputs/torchrun-<run id>
    when every rank runs this app under torchrun (a shared ``--standalone`` or ``--rdzv-id`` run id
    gives all ranks the same directory where their clocks might not)."""
    if resume:
        return str(Path(resume).resolve())
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if in_torchrun_worker() and run_id != "none":
        return f"outputs/torchrun-{run_id}"
    return datetime.now().strftime("outputs/%Y-%m-%d/%H-%M-%S")


OmegaConf.register_new_resolver("sparsetrain_run_dir", _run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver(
    "sparsetrain_output_subdir", lambda resume: ".hydra_resume" if resume else ".hydra", replace=True
)


def _resumed_job(run_dir: str) -> dict[str, Any]:
    """The job a ``resume=<run dir>`` continues: the one saved at its launch, if it has a checkpoint."""
    saved = Path(run_dir) / JOB
    if not saved.exists() or checkpoint.latest(run_dir) is None:
        raise ConfigError(
            f"resume={run_dir} holds no checkpoint (checkpoints/step_*/COMPLETE and {JOB}): "
            f"pass the directory of a run started with ckpt.every > 0"
        )
    return json.loads(saved.read_text())


def _torchrun_layout(job: dict[str, Any]) -> None:
    """Under torchrun the process layout is torchrun's, whatever the config says."""
    d = job["dist"]
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    d["nproc"] = local
    d["nnodes"] = max(1, int(os.environ.get("WORLD_SIZE", local)) // local)
    d["node_rank"] = int(os.environ.get("GROUP_RANK", 0))
    d["rdzv_endpoint"] = d["rdzv_endpoint"] or "torchrun"


def _discard_empty_run_dir(run_dir: str) -> None:
    """Remove a run directory that a refused job leaves holding only Hydra's files (.hydra/ and
    its log), and the parents it leaves empty below the working directory, so that nothing looks
    like a run that happened."""
    path = Path(run_dir).resolve()
    if not (path.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in path.iterdir())):
        return
    shutil.rmtree(path, ignore_errors=True)
    cwd = Path.cwd().resolve()
    for parent in path.parents:  # outputs/<date>/ left empty, up to the working directory
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def _summary_line(summary: dict[str, Any], run_dir: str) -> str:
    metrics = {k: v for k, v in summary.items() if k == "train/loss" or k.split("/")[0] in ("linreg", "eval")}
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    synthetic = " data=SYNTHETIC" if summary.get("data", "").startswith("SYNTHETIC") else ""
    return (
        f"sparsetrain: {summary['status']} {summary['task']}{synthetic} {summary['compressor']} ratio={summary['ratio']} "
        f"workers={summary['workers']} steps={summary['steps']} {shown} "
        f"compression={summary.get('comm/compression') or 0:.4g} wall={summary.get('wall_s', 0):.1f}s run_dir={run_dir}"
    )


def _record_failure(run_dir: str, job: dict[str, Any], error: BaseException) -> None:
    """Make sure a failed job's directory says so, keeping every metric it logged."""
    path = Path(run_dir) / SUMMARY
    if path.exists():
        return
    records = read_metrics(run_dir)
    from sparsetrain.worker import run_summary

    write_json_atomic(
        path,
        {**run_summary(job), **(records[-1] if records else {}), "status": "failed", "error": str(error).strip()},
    )


@hydra.main(version_base="1.3", config_path="pkg://sparsetrain.conf", config_name="config")
def app(cfg: DictConfig) -> dict[str, Any] | None:
    run_dir = HydraConfig.get().runtime.output_dir
    job = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(job, dict)
    if in_torchrun_worker():
        _torchrun_layout(job)
    resume = job.get("resume")
    if resume:
        run_dir = str(Path(resume).resolve())
    try:
        job = _resumed_job(run_dir) if resume else resolve_job(job)
        component_class(job["task"]).prepare(job["task"], num_workers=job["dist"]["workers"])
    except ConfigError as error:
        if not resume:
            _discard_empty_run_dir(run_dir)
        print(f"sparsetrain: error: {error}", file=sys.stderr)
        sys.exit(2)
    if not resume and os.environ.get("RANK", "0") == "0":
        write_json_atomic(Path(run_dir) / JOB, job)
    started = time.perf_counter()
    try:
        summary = launch(job, run_dir)
    except Exception as error:
        _record_failure(run_dir, job, error)
        print(f"sparsetrain: error: the job failed ({type(error).__name__}); see {run_dir}", file=sys.stderr)
        raise
    if summary is not None:
        summary["launch_wall_s"] = time.perf_counter() - started
        print(_summary_line(summary, run_dir), flush=True)
    return summary


def main() -> None:
    app()


if __name__ == "__main__":
    main()
