"""Rank 0's progress bar: drawn on a terminal, silent otherwise."""

import io
import sys

from sparsetrain.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(monkeypatch, stream, enabled=True):
    monkeypatch.setattr(sys, "stderr", stream)
    progress = Progress(total=20, done=0, steps_per_epoch=10, enabled=enabled)
    active = progress.active
    for step in range(1, 13):
        progress.update(step, {"train/loss": 2.5 / step, **({"eval/accuracy": 61.25} if step == 10 else {})})
    progress.close()
    return active, stream.getvalue()


def test_draws_steps_epoch_loss_accuracy_and_eta_on_a_terminal(monkeypatch):
    active, text = _run(monkeypatch, Terminal())
    assert active
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert "12/20" in last and "epoch=2" in last and "loss=0.2083" in last and "acc=61.25%" in last
    assert "<" in last  # tqdm's "elapsed<remaining"


def test_silent_when_not_a_terminal_or_disabled(monkeypatch):
    active, text = _run(monkeypatch, io.StringIO())
    assert not active and text == ""
    active, text = _run(monkeypatch, Terminal(), enabled=False)
    assert not active and text == ""
