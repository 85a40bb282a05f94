"""Fault tolerance end to end: kill-and-restart, resume in place, non-finite gradients, and what a
failed run leaves (every logged row, one line naming the root cause, summary.json)."""

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from tests.conftest import load_run, sparsetrain

JOB = ["task=linreg", "compressor=regtopk", "ratio=0.3", "train.momentum=0.5", "train.steps=50", "dist.nproc=2",
       "dist.workers=4", "ckpt.every=10"]
COMPARED = ("train/loss", "linreg/dist_to_opt", "comm/bytes_total", "comm/selected")


def _same_trajectory(a, b, steps=50):
    records_a, summary_a = load_run(a)
    records_b, summary_b = load_run(b)
    assert [r["step"] for r in records_a] == list(range(1, steps + 1))  # no duplicated or missing step
    for x, y in zip(records_a, records_b, strict=True):
        assert all(x[k] == y[k] for k in COMPARED), (x, y)
    assert summary_a["status"] == "completed"
    assert all(summary_a[k] == summary_b[k] for k in COMPARED)


def test_killed_rank_restarts_and_ends_bit_identical(tmp_path):
    sparsetrain(tmp_path / "clean", *JOB)
    result = sparsetrain(tmp_path / "killed", *JOB, "fault.kill_rank=1", "fault.at_step=25", "dist.max_restarts=1")
    assert (tmp_path / "killed" / "fault_injected_rank1").exists(), result.stdout
    _same_trajectory(tmp_path / "killed", tmp_path / "clean")


def test_a_restarted_run_continues_the_density_warmup(tmp_path):
    """linreg's epoch is one step: the warm-up spans the kill, and k follows the ratio of each step."""
    warmup = [0.9, 0.7, 0.5, 0.45, 0.4, 0.35, 0.32]
    job = [*JOB, "train.steps=12", "ckpt.every=2", f"ratio_warmup=[{','.join(map(str, warmup))}]"]
    sparsetrain(tmp_path / "clean", *job)
    sparsetrain(tmp_path / "killed", *job, "fault.kill_rank=1", "fault.at_step=6", "dist.max_restarts=1")
    _same_trajectory(tmp_path / "killed", tmp_path / "clean", steps=12)
    records, _ = load_run(tmp_path / "killed")
    ratios = warmup + [0.3] * 5
    assert [r["comm/ratio"] for r in records] == ratios
    assert [r["comm/selected"] for r in records] == [int(100 * r + 1e-9) for r in ratios]


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


def _last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_a_diverging_run_keeps_every_logged_row_and_names_the_cause(tmp_path):
    """train.lr=1e6 overflows within a few steps: the rows logged before stay (jsonl and
    TensorBoard), the last line and summary.json name the cause, and no traceback is shown."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    result = sparsetrain(run_dir, "task=linreg", "train.lr=1e6", "dist.nproc=2", "train.steps=50", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = _last_line(result)
    match = re.match(r"sparsetrain: error: NonfiniteGradient: the averaged gradient of step (\d+) holds NaN or Inf", last)
    assert match and last.endswith(f"the run directory keeps what was logged: {run_dir}"), last
    failed_step = int(match.group(1))
    records, summary = load_run(run_dir)
    assert failed_step > 2 and [r["step"] for r in records] == list(range(1, failed_step))
    assert summary["status"] == "failed" and summary["error"] in last and summary["train/loss"] == records[-1]["train/loss"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [s.step for s in events.Scalars("train/loss")] == list(range(1, failed_step))


def test_skip_stops_when_the_parameters_themselves_diverge(tmp_path):
    result = sparsetrain(tmp_path / "run", "task=linreg", "train.lr=1e6", "train.nonfinite=skip", "dist.nproc=2",
                         "train.steps=50", check=False)
    assert result.returncode == 1
    assert re.match(r"sparsetrain: error: NonfiniteGradient: the parameters hold NaN or Inf at step \d+", _last_line(result))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_a_crash_on_one_rank_is_named_not_its_consequences(tmp_path):
    (tmp_path / "crash.py").write_text(textwrap.dedent('''
        from sparsetrain.compressors import TopK

        class CrashAtStep4(TopK):
            def select(self, acc, step):
                if step == 4 and self.worker == 1:
                    raise RuntimeError("boom")
                return super().select(acc, step)
    '''))
    run_dir = tmp_path / "run"
    result = sparsetrain(run_dir, "task=linreg", "compressor._target_=crash.CrashAtStep4", "dist.nproc=2",
                         "train.steps=10", env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert _last_line(result).startswith("sparsetrain: error: RuntimeError: boom;")
    records, summary = load_run(run_dir)
    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: boom" and "raise RuntimeError" in summary["traceback"]
    assert [r["step"] for r in records] == [1, 2, 3]  # rank 0's rows, kept though the collective failed


def test_the_traceback_is_shown_on_request(tmp_path):
    result = sparsetrain(tmp_path / "run", "task=linreg", "train.lr=1e6", "dist.nproc=2", "train.steps=50",
                         env={"HYDRA_FULL_ERROR": "1"}, check=False)
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    job = ["task=linreg", "dist.nproc=2", "train.steps=20000", "ckpt.every=100", "log.tensorboard=false"]
    process = subprocess.Popen(["sparsetrain", *job, f"hydra.run.dir={run_dir}"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    def checkpointed() -> bool:  # step 200 or later: the oldest checkpoints are dropped as new ones complete
        return any(int(done.parent.name.removeprefix("step_")) >= 200
                   for done in (run_dir / "checkpoints").glob("step_*/COMPLETE"))

    while time.monotonic() < deadline and not checkpointed():
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    stopped = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - stopped < 15
    assert process.returncode == 130 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetrain: error: interrupted by SIGINT"), stderr
    assert json.loads((run_dir / "summary.json").read_text())["error"].startswith("interrupted by SIGINT")
    deadline = time.monotonic() + 10  # nothing left behind (the resource tracker exits last)
    while subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "processes of the interrupted run are still alive"
        time.sleep(0.2)
    resumed = subprocess.run(["sparsetrain", f"resume={run_dir}"], capture_output=True, text=True, cwd=tmp_path,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    records, summary = load_run(run_dir)
    assert summary["status"] == "completed" and [r["step"] for r in records] == list(range(1, 20001))


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    job = ["task=linreg", "compressor=regtopk", "ratio=0.3", "dist.nproc=2", "dist.workers=4", "train.steps=30",
           "ckpt.every=10", "log.tensorboard=false"]
    sparsetrain(tmp_path / "clean", *job)
    sparsetrain(tmp_path / "damaged", *job)
    newest = tmp_path / "damaged" / "checkpoints" / "step_000000030" / "rank0.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated, as by a crash mid-copy
    resumed = subprocess.run(["sparsetrain", f"resume={tmp_path / 'damaged'}"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(newest) in warnings[0] and "falling back to an older one" in warnings[0]
    _same_trajectory(tmp_path / "damaged", tmp_path / "clean", steps=30)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a private tmpfs")
def test_a_full_disk_ends_with_one_line_naming_the_path(tmp_path):
    """The run directory on an 8 MB tmpfs (in a private mount namespace): ResNet-18's first
    checkpoint (~90 MB per rank) does not fit."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=8m tmpfs {disk} && sparsetrain +experiment=smoke task.synthetic=true "
        f"task.synthetic_samples=64 train.steps=4 ckpt.every=2 log.tensorboard=false hydra.run.dir={disk}/run; "
        f"echo rc=$?; find {disk} -name '*.tmp'; cat {disk}/run/summary.json"
    )
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert "rc=1" in result.stdout, result.stdout + result.stderr
    assert ".tmp" not in result.stdout.split("rc=1")[1].split("{")[0]  # no temporary file left behind
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["status"] == "failed" and f"{disk}/run/checkpoints/step_000000002/rank" in summary["error"]
    last = _last_line(result)
    assert last.startswith("sparsetrain: error: OSError: writing checkpoint") and "Traceback" not in result.stderr
