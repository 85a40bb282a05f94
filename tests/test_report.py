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
        assert float(row["bytes_total"]) == summary["comm/bytes_total"] and row["exchange"] == summary["exchange"]
        records = [json.loads(line) for line in (sweep / row["run"].split("/")[-1] / "metrics.jsonl").open()]
        mean_step = sum(r["time/step_ms"] for r in records) / len(records)
        assert float(row["step_ms_mean"]) == pytest.approx(mean_step, rel=1e-12)
    report = (sweep / "report.md").read_text()
    topk_06 = json.loads((sweep / "1" / "summary.json").read_text())
    assert f"| linreg | topk | 0.6 | 2 | 0 | {topk_06['linreg/dist_to_opt']:.4g} |" in report
    for name in ("report_linreg_dist_to_opt_vs_step.png", "report_linreg_dist_to_opt_vs_bytes.png",
                 "report_linreg_dist_to_opt_vs_modeled_time.png"):
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


def _fake_run(root, name, compressor, dists, step_model_ms, every=1, in_range=None):
    """A run directory written by hand: known metrics, so the report's arithmetic is checked exactly."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    records = [{"step": every * (i + 1), "linreg/dist_to_opt": d, "time/step_model_ms": step_model_ms,
                "time/step_ms": 2.0, "time/select_ms": 0.1, "comm/bytes_total": 100.0 * (i + 1),
                **({"comm/in_range": in_range[i]} if in_range else {})}
               for i, d in enumerate(dists)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"status": "completed", "task": "linreg", "compressor": compressor, "ratio": 0.5, "workers": 2,
               "seed": 0, "linreg/dist_to_opt": dists[-1], "exchange": "allgather", "comm/bytes_total": 100.0 * len(dists),
               "comm/compression": 2.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_time_to_target_counts_steps_and_modeled_seconds(tmp_path):
    _fake_run(tmp_path, "a", "topk", [10.0, 1.0, 1e-4, 1e-5], step_model_ms=50.0)  # reaches 1e-3 at step 3
    _fake_run(tmp_path, "b", "dense", [10.0, 5.0, 2.0, 1.0], step_model_ms=20.0, every=10)  # never
    result = subprocess.run(["sparsetrain-report", str(tmp_path), "--target", "linreg/dist_to_opt=1e-3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "report.csv") as f:
        rows = {row["compressor"]: row for row in csv.DictReader(f)}
    assert float(rows["topk"]["steps_to_target"]) == 3 and float(rows["topk"]["modeled_s_to_target"]) == pytest.approx(0.15, rel=1e-12)
    assert rows["dense"]["steps_to_target"] == "nan"
    assert "| steps to linreg/dist_to_opt=0.001 | modeled s to target |" in (tmp_path / "report.md").read_text()
    with Image.open(tmp_path / "report_linreg_dist_to_opt_vs_modeled_time.png") as image:
        assert image.format == "PNG"


def test_gaussiank_runs_show_the_fraction_of_steps_in_range(tmp_path):
    _fake_run(tmp_path, "a", "gaussiank", [3.0, 2.0, 1.0, 0.5], step_model_ms=1.0, in_range=[1.0, 0.0, 0.5, 0.0])
    _fake_run(tmp_path, "b", "topk", [3.0, 2.0], step_model_ms=1.0)
    result = subprocess.run(["sparsetrain-report", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert "| steps in [2k/3, 4k/3] |" in report
    assert "| 0.375 |" in report and "| n/a |" in report  # gaussiank's mean; topk has no loop


def test_a_target_on_a_metric_no_run_logged_is_refused(tmp_path):
    _fake_run(tmp_path, "a", "topk", [1.0], step_model_ms=1.0)
    result = subprocess.run(["sparsetrain-report", str(tmp_path), "--target", "eval/accuracy=90"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "sparsetrain-report: error: --target eval/accuracy: no run logged that metric"
