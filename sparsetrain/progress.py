"""Rank 0's progress bar: steps, epoch, loss, last test accuracy and ETA.

The loss and accuracy shown are the newest logged ones (averaged over all workers), the numbers
metrics.jsonl and the command's final line report.

tqdm draws it on stderr and, with ``disable=None``, stays silent when stderr is not a terminal
(CI, a log file, a SLURM job), so logs hold only the run's own lines. ``log.progress=false``
turns it off everywhere.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, done: int, steps_per_epoch: int, enabled: bool) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.accuracy: float | None = None
        self._bar = tqdm(
            total=total, initial=done, unit="step", dynamic_ncols=True, file=sys.stderr,
            disable=None if enabled else True, leave=True,
        )

    @property
    def active(self) -> bool:
        return not self._bar.disable

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Advance to ``step``, showing the newest logged (averaged) loss and test accuracy in
        ``metrics``: the same numbers as metrics.jsonl and the final line."""
        if not self.active:
            return
        if "eval/accuracy" in metrics:
            self.accuracy = metrics["eval/accuracy"]
        postfix = {"epoch": f"{(step - 1) // self.steps_per_epoch + 1}"}
        if "train/loss" in metrics:
            postfix["loss"] = f"{metrics['train/loss']:.4g}"
        if self.accuracy is not None:
            postfix["acc"] = f"{self.accuracy:.2f}%"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
