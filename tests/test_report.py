"""A real linreg sweep through Hydra multirun, then sparsetrain-report on it."""

import csv
import json
import subprocess

import pytest
from PIL import Image

from tests.conftest import sparsetrain


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    result = subprocess.run(
        ["sparsetrain", "-m", "task=linreg", "compressor=topk,dense", "ratio=0.3,0.6", "dist.nproc=2", "train.steps=20",
         "log.tensorboard=false", f"hydra.sweep.dir={root / 'sw'}"],
        capture_output=True, text=True, cwd=root, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return root / "sw"


def test_each_job_has_its_own_run_directory(sweep):
    summaries = [json.loads((sweep / str(n) / "summary.json").read_text()) for n in range(4)]
    assert {(s["compressor"], s["ratio"]) for s in summaries} == {
        ("topk", 0.3), ("topk", 0.6), ("dense", 0.3), ("dense", 0.6)
    }
    assert all(s["status"] == "completed" for s in summaries)


def test_report_rows_match_the_runs(sweep):
    result = subprocess.run(["sparsetrain-report", str(sweep)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        summary = json.loads((sweep / row["run"].split("/")[-1] / "summary.json").read_text())
        assert row["compressor"] == summary["compressor"] and float(row["ratio"]) == summary["ratio"]
        assert float(row["linreg/dist_to_opt"]) == summary["linreg/dist_to_opt"]
        assert float(row["bytes_total"]) == summary["comm/bytes_total"]
        records = [json.loads(line) for line in (sweep / row["run"].split("/")[-1] / "metrics.jsonl").open()]
        mean_step = sum(r["time/step_ms"] for r in records) / len(records)
        assert float(row["step_ms_mean"]) == pytest.approx(mean_step, rel=1e-12)
    report = (sweep / "report.md").read_text()
    topk_06 = json.loads((sweep / "1" / "summary.json").read_text())
    assert f"| linreg | topk | 0.6 | 2 | 0 | {topk_06['linreg/dist_to_opt']:.4g} |" in report
    for name in ("report_linreg_dist_to_opt_vs_step.png", "report_linreg_dist_to_opt_vs_bytes.png"):
        with Image.open(sweep / name) as image:
            image.verify()
        with Image.open(sweep / name) as image:
            assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200


def test_report_on_a_single_run(tmp_path):
    run_dir = tmp_path / "one"
    sparsetrain(run_dir, "task=linreg", "dist.nproc=2", "train.steps=5", "log.tensorboard=false")
    result = subprocess.run(["sparsetrain-report", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| linreg | topk | 0.01 | 2 | 0 |" in (run_dir / "report.md").read_text()


def test_report_refuses_a_directory_without_runs(tmp_path):
    result = subprocess.run(["sparsetrain-report", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sparsetrain-report: error: no run directories (holding summary.json) at or below {tmp_path}"
    ]
