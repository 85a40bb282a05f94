"""Restoring: the ranks agree on the newest checkpoint that every one of them can read."""

import numpy as np
import torch

from sparsetrain import checkpoint
from sparsetrain.layout import WorkerLayout
from sparsetrain.train import state
from tests.conftest import run_gloo


def _write(run_dir, steps, ranks, corrupt=()):
    for step in steps:
        for rank in range(ranks):
            checkpoint.save_rank(run_dir, step, rank, {"step": step, "rank": rank})
            if (step, rank) in corrupt:
                path = checkpoint.step_dir(run_dir, step) / f"rank{rank}.pt"
                path.write_bytes(path.read_bytes()[:20])
        checkpoint.mark_complete(run_dir, step, ranks)


def _restore(rank, nprocs, run_dir, out_dir):
    loaded = []
    step = state.restore(run_dir, WorkerLayout.create(rank, nprocs, nprocs), torch.device("cpu"), loaded.append)
    np.save(f"{out_dir}/{rank}.npy", np.array([step, *(s["step"] for s in loaded)]))


def test_ranks_fall_back_together_past_every_unreadable_file(tmp_path):
    checkpoint.KEEP, keep = 3, checkpoint.KEEP
    try:
        _write(tmp_path / "run", (10, 20, 30), ranks=2, corrupt={(30, 0), (20, 1)})
    finally:
        checkpoint.KEEP = keep
    run_gloo(_restore, 2, tmp_path / "run", tmp_path)
    # rank 0 proposes 20, rank 1 proposes 30; rank 1 cannot read 20, so both take 10
    assert [np.load(tmp_path / f"{rank}.npy").tolist() for rank in (0, 1)] == [[10, 10], [10, 10]]


def test_no_readable_checkpoint_starts_from_scratch(tmp_path, capsys):
    _write(tmp_path, (10,), ranks=1, corrupt={(10, 0)})
    loaded = []
    assert state.restore(tmp_path, WorkerLayout.create(0, 1, 1), torch.device("cpu"), loaded.append) == 0
    assert loaded == [] and "rank0.pt cannot be read" in capsys.readouterr().err
