"""Metric logging: metrics.jsonl and TensorBoard event files, written by rank 0 only.

Other ranks get a :class:`NullLogger`, so the loop has no ``if rank == 0``. Metric keys are the
TensorBoard tags and the JSON keys alike (``train/loss``, ``comm/bytes_sent``, ...). Every line of
metrics.jsonl is flushed as it is written, so an interrupted run keeps what it measured.
summary.json has its own module and writer (:mod:`sparsetrain.summary`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "NullLogger", "write_json_atomic", "read_metrics", "finite_or_none", "METRICS"]

METRICS = "metrics.jsonl"


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN/Infinity: non-finite values are written as null."""
    return value if math.isfinite(value) else None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl, in order."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class NullLogger:
    """What every rank but 0 logs with: nothing."""

    last: dict[str, float] = {}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class MetricsLogger(NullLogger):
    """Appends one JSON object per logged step and mirrors every value to TensorBoard."""

    def __init__(
        self, run_dir: Path | str, hparams: dict[str, Any], tensorboard: bool = True, resume_step: int = 0
    ) -> None:
        """``hparams``: the run's hyper-parameters, for TensorBoard's HParams tab. ``resume_step >
        0``: continue a run from its checkpoint at that step. Records after it (logged before a
        crash, about to be logged again) are dropped from metrics.jsonl and purged from
        TensorBoard, so no step appears twice."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
        kept = [r for r in read_metrics(self.run_dir) if r["step"] <= resume_step] if resume_step else []
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
        os.replace(tmp, self.path)
        self._jsonl = open(self.path, "a", buffering=1)
        self.last = {k: v for k, v in kept[-1].items() if k != "step" and v is not None} if kept else {}
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.last = dict(metrics)
        record = {"step": step, **{k: finite_or_none(v) for k, v in metrics.items()}}
        try:
            self._jsonl.write(json.dumps(record) + "\n")
        except OSError as error:  # a full disk: name the file
            raise OSError(f"writing {self.path} failed: {error.strerror or error}") from None
        if self._writer is not None:  # non-finite values too: a diverging run's last rows show as such
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close both outputs; TensorBoard also gets the run's hyper-parameters
        against its metrics, for the HParams tab."""
        self._jsonl.close()
        if self._writer is not None:
            self._write_hparams()
            self._writer.close()

    def _write_hparams(self) -> None:
        """Write the HParams plugin's summaries into this run's own event file.

        ``SummaryWriter.add_hparams`` would open a new sub-run per call; writing the three plugin
        summaries here instead ties the hyper-parameters to the scalars already logged, whose
        tags are the metric columns (the HParams tab shows each tag's last value).
        """
        from torch.utils.tensorboard.summary import hparams

        metrics = {k: v for k, v in self.last.items() if math.isfinite(v)}
        for part in hparams(self.hparams, metrics):
            self._writer.file_writer.add_summary(part)
