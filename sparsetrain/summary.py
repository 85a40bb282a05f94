"""summary.json: what a run was and how it ended, written once, by the process that launched it.

The launching process (the ``sparsetrain`` app; under torchrun, rank 0's) is the one writer: a
completed run's summary holds rank 0's outcome (k, d, steps, wall time, the final value of every
metric); a failed one's holds the root cause and the last metrics logged before it. The same
process prints :func:`summary_line` as the command's last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsetrain import components
from sparsetrain.config import JobConfig
from sparsetrain.metrics import finite_or_none, read_metrics, write_json_atomic

__all__ = ["SUMMARY", "describe_job", "hparams", "write_summary", "summary_line"]

SUMMARY = "summary.json"

HPARAMS = ("task", "data", "compressor", "ratio", "workers", "seed", "lr")
"""Hyper-parameters recorded for TensorBoard's HParams tab, besides the compressor's own
(:meth:`~sparsetrain.compressors.base.Compressor.hparams`)."""


def _options(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "_target_"}


def describe_job(job: JobConfig) -> dict[str, Any]:
    """The job's main choices, as summary.json records them."""
    task_cls = components.component_class(job.task["_target_"])
    compressor_cls = components.component_class(job.compressor["_target_"])
    return {
        "task": components.label("task", job.task["_target_"]),
        "data": task_cls.describe_data(_options(job.task)),
        "compressor": components.label("compressor", job.compressor["_target_"]),
        "compressor_target": job.compressor["_target_"],
        "ratio": job.ratio,
        "ratio_warmup": list(job.ratio_warmup),
        "scope": job.compressor.get("scope", "model"),
        "value_dtype": job.compressor.get("value_dtype", "float32"),
        "seed": job.seed,
        "workers": job.dist.workers,
        "processes": job.dist.nproc * job.dist.nnodes,
        "device": job.dist.device,
        "backend": job.dist.backend,
        "epochs": job.train.epochs,
        "steps": job.train.steps,
        "lr": job.train.lr,
        "momentum": job.train.momentum,
        "weight_decay": job.train.weight_decay,
        "reject_factor": job.train.reject_factor,
        **compressor_cls.hparams(_options(job.compressor)),
    }


def hparams(job: JobConfig) -> dict[str, Any]:
    """The hyper-parameters for TensorBoard's HParams tab."""
    described = describe_job(job)
    compressor_cls = components.component_class(job.compressor["_target_"])
    return {k: described[k] for k in (*HPARAMS, *compressor_cls.hparams(_options(job.compressor)))}


def write_summary(
    run_dir: str | Path,
    job: JobConfig,
    outcome: dict[str, Any] | None,
    error: str | None = None,
    traceback: str | None = None,
) -> dict[str, Any]:
    """Write and return summary.json: ``status`` completed with rank 0's ``outcome`` (its keys
    and final metrics), or failed with ``error`` (the root cause, one line), its ``traceback``
    when known, and the last metrics logged before it."""
    summary = describe_job(job)
    if error is None:
        summary.update(outcome or {}, status="completed")
    else:
        records = read_metrics(run_dir)
        summary.update({k: v for k, v in (records[-1] if records else {}).items() if k != "step"})
        summary.update(status="failed", error=error, **({"traceback": traceback} if traceback else {}))
    summary = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in summary.items()}
    write_json_atomic(Path(run_dir) / SUMMARY, summary)
    return summary


def summary_line(summary: dict[str, Any], run_dir: str) -> str:
    """The command's last line: status, task, compressor, final metrics, compression, wall time."""
    metrics = {k: v for k, v in summary.items() if k == "train/loss" or k.split("/")[0] in ("linreg", "eval")}
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    synthetic = " data=SYNTHETIC" if summary["data"].startswith("SYNTHETIC") else ""
    return (
        f"sparsetrain: {summary['status']} {summary['task']}{synthetic} {summary['compressor']} "
        f"ratio={summary['ratio']} "
        f"workers={summary['workers']} steps={summary['steps']} {shown} "
        f"compression={summary.get('comm/compression') or 0:.4g} wall={summary.get('wall_s') or 0:.1f}s "
        f"run_dir={run_dir}"
    )
