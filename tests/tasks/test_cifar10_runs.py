"""``sparsetrain`` on CIFAR-10 end to end: the smoke preset on the on-disk fixture with every
compressor, epochs and evaluation, synthetic data, restarts, and the missing-data error."""

from __future__ import annotations

import math
import subprocess

import pytest

from tests.conftest import load_run, sparsetrain
from tests.tasks.cifar_fixture import write_cifar10

SMOKE = ["+experiment=smoke", "task.verify_checksums=false", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


@pytest.mark.parametrize("compressor", ["dense", "topk", "gaussiank", "regtopk", "randomk", "dgc"])
def test_smoke_preset_trains_on_cifar_layout_with_every_compressor(tmp_path, data_root, compressor):
    run_dir = tmp_path / compressor
    # the data path comes from SPARSETRAIN_DATA, the documented default of task.data_root
    result = sparsetrain(run_dir, *SMOKE, f"compressor={compressor}", env={"SPARSETRAIN_DATA": str(data_root)})
    records, summary = load_run(run_dir)
    assert summary["status"] == "completed" and summary["task"] == "cifar10" and summary["steps"] == 12
    assert summary["data"] == f"CIFAR-10 at {data_root}" and summary["dim"] == 11_173_962
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["step"] for r in records if "eval/accuracy" in r] == [6, 12]  # log.eval_every=6; 12: last step
    k = math.floor(0.01 * 11_173_962)
    for r in records:
        assert math.isfinite(r["train/loss"]) and r["time/step_ms"] > 0
        if compressor == "dense":
            assert r["comm/compression"] == 1.0
        elif compressor in ("gaussiank", "dgc"):
            assert r["comm/payload_bytes"] == 8 * r["comm/selected"] + 4
            assert r["comm/bytes_sent"] >= r["comm/payload_bytes"]  # padded to the largest count
            assert r["comm/selected_max"] >= r["comm/selected"] and (compressor == "gaussiank") == ("comm/in_range" in r)
        else:  # 2 workers: each sends its 8k bytes once, and receives the other's
            assert r["comm/selected"] == k and r["comm/bytes_sent"] == r["comm/bytes_received"] == 8 * k
    # the fixture's classes are easy: every compressor learns something in 12 steps of 2 x 8 images
    assert summary["eval/loss"] < math.log(10) and summary["eval/accuracy"] > 10.0
    assert records[-1]["train/loss"] < 0.9 * records[0]["train/loss"]
    if compressor == "dense":
        assert summary["eval/accuracy"] > 40.0
    assert "eval/accuracy=" in result.stdout
    assert "step/s" not in result.stderr and "it/s" not in result.stderr  # no progress bar without a terminal


def test_epochs_set_the_length_and_evaluation_follows_epoch_ends(tmp_path):
    run_dir = tmp_path / "run"
    result = sparsetrain(
        run_dir, *SMOKE, "task.synthetic=true", "task.synthetic_samples=80", "train.epochs=2", "train.steps=null",
        "log.eval_every=null", "log.every=3", "compressor=regtopk",
    )
    records, summary = load_run(run_dir)
    assert summary["steps_per_epoch"] == 5 and summary["steps"] == 10  # 80 images / 2 workers / batch 8
    assert [r["step"] for r in records] == [3, 5, 6, 9, 10]  # every 3rd step, plus the epoch ends
    assert [r["step"] for r in records if "eval/loss" in r] == [5, 10]
    assert records[-1]["train/epoch"] == 2.0 and records[1]["train/epoch"] == 1.0
    assert summary["data"].startswith("SYNTHETIC") and "data=SYNTHETIC" in result.stdout
    assert "training on random tensors, not CIFAR-10" in result.stderr
    report = subprocess.run(["sparsetrain-report", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "main metric `eval/accuracy`" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("scope", ["model", "bucket"])
def test_killed_rank_restarts_bit_identical_with_batch_norm_state(tmp_path, data_root, scope):
    """Per bucket too: the restarted DDP model exchanges the same buckets as the first one did."""
    job = [*SMOKE, f"task.data_root={data_root}", "compressor=regtopk", f"compressor.scope={scope}", "ckpt.every=4"]
    sparsetrain(tmp_path / "clean", *job)
    sparsetrain(tmp_path / "killed", *job, "fault.kill_rank=1", "fault.at_step=7", "dist.max_restarts=1")
    assert (tmp_path / "killed" / "fault_injected_rank1").exists()
    clean, _ = load_run(tmp_path / "clean")
    killed, _ = load_run(tmp_path / "killed")
    keys = ("train/loss", "eval/accuracy", "eval/loss", "comm/bytes_total", "train/lr")
    assert [r["step"] for r in killed] == list(range(1, 13))
    assert [[r.get(k) for k in keys] for r in killed] == [[r.get(k) for k in keys] for r in clean]


def test_missing_dataset_is_one_line_and_leaves_no_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run_dir = tmp_path / "run"
    result = sparsetrain(run_dir, *SMOKE, f"task.data_root={empty}", "task.download=false", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    for part in (f"task.data_root={empty}", "cifar-10-batches-py/", "SPARSETRAIN_DATA", "task.download=true"):
        assert part in lines[0]
    assert not run_dir.exists()


def test_copy_failing_the_checksum_is_refused_by_default(tmp_path, data_root):
    result = sparsetrain(tmp_path / "run", "+experiment=smoke", f"task.data_root={data_root}", check=False)
    assert result.returncode == 2
    assert "fails torchvision's check" in result.stderr and "task.verify_checksums=false" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("task.model=vgg", "task.model"),
        ("task.batch_size=0", "task.batch_size"),
        ("task.pretrained=true", "task.pretrained"),
        ("task.eval_samples=-3", "task.eval_samples"),
        ("task.batch_size=101", "task.batch_size"),  # the fixture's 200 images give each of 2 workers 100
    ],
)
def test_bad_task_values_are_one_line(tmp_path, data_root, override, key):
    result = sparsetrain(tmp_path / "run", *SMOKE, f"task.data_root={data_root}", override, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sparsetrain: error: {key}")

