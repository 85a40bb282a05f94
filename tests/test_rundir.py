"""No two runs share a directory: runs, sweeps and the nodes of a multi-node job started at the same
moment each get their own, and a node whose peers never come gives up with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from sparsetrain import rundir
from sparsetrain.launch import free_port
from tests.conftest import load_run

LINREG = ["task=linreg", "dist.nproc=1", "train.steps=5", "log.tensorboard=false"]


def _start(cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(["sparsetrain", *overrides], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_fresh_dir_takes_the_next_free_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir, "_FRESH", {})
    taken = Path(rundir.fresh_dir("run", "outputs/fixed"))
    monkeypatch.setattr(rundir, "_FRESH", {})
    second = Path(rundir.fresh_dir("run", "outputs/fixed"))
    assert (taken.name, second.name) == ("fixed", "fixed-2") and second.is_dir()
    assert rundir.fresh_dir("run", "outputs/other") == str(second)  # one directory per process


def test_runs_started_together_never_share_a_directory(tmp_path):
    runs = [_start(tmp_path, *LINREG, f"seed={seed}") for seed in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    dirs = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(dirs) == 3
    seeds = sorted(json.loads((d / "job.json").read_text())["seed"] for d in dirs)
    assert seeds == [0, 1, 2] and all(load_run(d)[1]["seed"] == json.loads((d / "job.json").read_text())["seed"]
                                      for d in dirs)


def test_sweeps_started_together_never_share_a_directory(tmp_path):
    sweeps = [_start(tmp_path, "-m", *LINREG, f"seed={seed}", "ratio=0.3,0.6") for seed in (0, 1)]
    outputs = [sweep.communicate(timeout=600) for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    sweep_dirs = sorted(p for p in (tmp_path / "multirun").glob("*/*") if p.is_dir())
    assert len(sweep_dirs) == 2
    for sweep_dir in sweep_dirs:
        seeds = {json.loads((sweep_dir / str(n) / "summary.json").read_text())["seed"] for n in (0, 1)}
        assert len(seeds) == 1  # each sweep holds its own two jobs only


def test_two_nodes_on_one_host_with_default_directories(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [_start(tmp_path, *LINREG, "dist.nnodes=2", f"dist.node_rank={rank}", f"dist.rdzv_endpoint={endpoint}")
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    dirs = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(dirs) == 2 and sum((d / "summary.json").exists() for d in dirs) == 1  # node 0's has it


def test_a_node_whose_peers_never_come_gives_up_with_one_line(tmp_path):
    started = time.monotonic()
    node = _start(tmp_path, *LINREG, "dist.nnodes=2", "dist.node_rank=0", f"dist.rdzv_endpoint=127.0.0.1:{free_port()}",
                  "dist.join_timeout_s=3", "hydra.run.dir=run")
    _, stderr = node.communicate(timeout=120)
    assert node.returncode == 1 and time.monotonic() - started < 60 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(
        "sparsetrain: error: TimeoutError: only 1 of dist.nnodes=2 nodes joined at dist.rdzv_endpoint=127.0.0.1:")
    assert "dist.join_timeout_s=3" in stderr


def test_ctrl_c_stops_a_node_waiting_for_its_peers_at_once(tmp_path):
    node = _start(tmp_path, *LINREG, "dist.nnodes=2", "dist.node_rank=1", f"dist.rdzv_endpoint=127.0.0.1:{free_port()}",
                  "hydra.run.dir=run")
    time.sleep(8)  # past start-up, waiting for node 0 which never comes
    assert node.poll() is None
    os.killpg(node.pid, signal.SIGINT)
    interrupted = time.monotonic()
    _, stderr = node.communicate(timeout=60)
    assert time.monotonic() - interrupted < 10
    assert node.returncode == 130 and stderr.strip().splitlines()[-1].startswith("sparsetrain: error: interrupted")
