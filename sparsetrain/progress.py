"""Rank 0's progress bar: steps, epoch, loss, last test accuracy and ETA.

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

    def update(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        if "eval/accuracy" in metrics:
            self.accuracy = metrics["eval/accuracy"]
        postfix = {"epoch": f"{(step - 1) // self.steps_per_epoch + 1}", "loss": f"{loss:.4g}"}
        if self.accuracy is not None:
            postfix["acc"] = f"{self.accuracy:.2f}%"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
