"""Shared fixtures: real gloo process groups and the ``sparsetrain`` command in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsetrain.launch import free_port

REPO = Path(__file__).resolve().parent.parent

if not torch.cuda.is_available():
    # The GPU kernels' tests run under Triton's interpreter here. It must be chosen before triton
    # is first imported: triton's own jit'd library functions (tl.cumsum, ...) are made then.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def run_gloo(fn, nprocs: int, *args) -> None:
    """Run ``fn(rank, nprocs, *args)`` in ``nprocs`` spawned processes joined in one gloo group."""
    import torch.multiprocessing as mp

    mp.spawn(_gloo_entry, args=(nprocs, free_port(), fn, args), nprocs=nprocs, join=True)


def _gloo_entry(rank: int, nprocs: int, port: int, fn, args) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nprocs
    )
    fn(rank, nprocs, *args)
    # Drain the group before tearing it down: a gloo worker thread that destroys finished work
    # while the interpreter exits aborts the process ("terminate called without an active
    # exception", pytorch/pytorch#190489). A rank whose ``fn`` raised skips this and dies; the
    # spawn context then stops the others.
    dist.barrier()
    dist.destroy_process_group()
    # A DDP model with a Python comm hook leaves futures whose callbacks hold Python objects; a
    # gloo thread dropping the last of them during interpreter shutdown still aborted once in CI
    # (the same bug). ``fn`` has written its results: leave without finalizing the interpreter.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def sparsetrain(run_dir: Path, *overrides: str, env: dict | None = None, check: bool = True, cwd=None):
    """Run the installed ``sparsetrain`` console script with its run dir at ``run_dir``."""
    cmd = ["sparsetrain", *overrides, f"hydra.run.dir={run_dir}"]
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd or run_dir.parent, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def load_run(run_dir: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def python() -> str:
    return sys.executable
