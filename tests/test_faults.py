"""Fault tolerance end to end: kill-and-restart, resume in place, non-finite gradients."""

import json
import subprocess

from tests.conftest import load_run, sparsetrain

JOB = ["task=linreg", "compressor=regtopk", "ratio=0.3", "train.momentum=0.5", "train.steps=50", "dist.nproc=2",
       "dist.workers=4", "ckpt.every=10"]
COMPARED = ("train/loss", "linreg/dist_to_opt", "comm/bytes_total", "comm/selected")


def _same_trajectory(a, b):
    records_a, summary_a = load_run(a)
    records_b, summary_b = load_run(b)
    assert [r["step"] for r in records_a] == list(range(1, 51))  # no duplicated or missing step
    for x, y in zip(records_a, records_b, strict=True):
        assert all(x[k] == y[k] for k in COMPARED), (x, y)
    assert summary_a["status"] == "completed"
    assert all(summary_a[k] == summary_b[k] for k in COMPARED)


def test_killed_rank_restarts_and_ends_bit_identical(tmp_path):
    sparsetrain(tmp_path / "clean", *JOB)
    result = sparsetrain(tmp_path / "killed", *JOB, "fault.kill_rank=1", "fault.at_step=25", "dist.max_restarts=1")
    assert (tmp_path / "killed" / "fault_injected_rank1").exists(), result.stdout
    _same_trajectory(tmp_path / "killed", tmp_path / "clean")


def test_a_stopped_run_resumes_in_place(tmp_path):
    sparsetrain(tmp_path / "clean", *JOB)
    stopped = tmp_path / "stopped"
    result = sparsetrain(stopped, *JOB, "fault.kill_rank=0", "fault.at_step=37", check=False)
    assert result.returncode != 0
    assert json.loads((stopped / "summary.json").read_text())["status"] == "failed"
    resumed = subprocess.run(["sparsetrain", f"resume={stopped}"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"run_dir={stopped}" in resumed.stdout
    assert not (tmp_path / "outputs").exists()  # no new run directory for a resume
    assert (stopped / ".hydra" / "overrides.yaml").read_text() != (stopped / ".hydra_resume" / "overrides.yaml").read_text()
    _same_trajectory(stopped, tmp_path / "clean")


def test_nonfinite_gradient_stops_by_default_and_is_skipped_on_request(tmp_path):
    failed = sparsetrain(tmp_path / "error", *JOB, "fault.nonfinite_at_step=15", check=False)
    assert failed.returncode != 0
    summary = json.loads((tmp_path / "error" / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 15 holds NaN or Inf" in summary["error"]
    assert summary["linreg/dist_to_opt"] is not None  # the metrics logged before the failure
    assert (tmp_path / "error" / "checkpoints" / "step_000000010" / "COMPLETE").exists()

    sparsetrain(tmp_path / "skip", *JOB, "fault.nonfinite_at_step=15", "train.nonfinite=skip")
    records, summary = load_run(tmp_path / "skip")
    assert [r["train/skipped_steps"] for r in records if r["step"] in (14, 15, 50)] == [0.0, 1.0, 1.0]
    assert all(r["linreg/dist_to_opt"] is not None and r["train/loss"] is not None for r in records)
    assert records[14]["linreg/dist_to_opt"] == records[13]["linreg/dist_to_opt"]  # step 15 made no update
