"""End to end: the installed ``sparsetrain`` command launching real gloo workers."""

import json
import os
import re
import shlex
import subprocess
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO, load_run, sparsetrain

METRIC_KEYS = {
    "train/loss",
    "linreg/dist_to_opt",
    "comm/bytes_sent",
    "comm/bytes_received",
    "comm/payload_bytes",
    "comm/bytes_total",
    "comm/compression",
    "comm/selected",
    "comm/allreduce",
    "time/select_ms",
    "time/comm_ms",
    "time/step_ms",
    "time/comm_model_ms",
    "time/step_model_ms",
}


def test_topk_run_writes_metrics_summary_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    result = sparsetrain(run_dir, "task=linreg", "compressor=topk", "ratio=0.5", "dist.nproc=2", "train.steps=50")
    assert f"run_dir={run_dir}" in result.stdout.strip().splitlines()[-1]
    records, summary = load_run(run_dir)
    assert [r["step"] for r in records] == list(range(1, 51))
    assert all(METRIC_KEYS <= r.keys() for r in records)
    assert summary["status"] == "completed" and summary["compressor"] == "topk" and summary["k"] == 50
    assert all(summary[key] == records[-1][key] for key in METRIC_KEYS)
    # Top-k's 2 workers each send their 8k bytes and receive the other's (ring all-gather: (P-1) 8k);
    # a ring all-reduce of d floats would send 2 (P-1)/P 4d = 400 too, so auto keeps the all-gather.
    assert {(r["comm/bytes_sent"], r["comm/bytes_received"], r["comm/payload_bytes"]) for r in records} == {
        (400.0, 400.0, 400.0)}
    assert {r["comm/allreduce"] for r in records} == {0.0}
    assert records[-1]["comm/bytes_total"] == 50 * 2 * 400
    assert records[-1]["comm/compression"] == 1.0
    # the alpha-beta model on 10 Gbit/s with 10 us per ring step: 1 step + 400 bytes x 8 / 1e10
    assert records[-1]["time/comm_model_ms"] == pytest.approx(1e3 * (10e-6 + 400 * 8 / 1e10), rel=1e-12)
    assert records[-1]["time/step_model_ms"] == pytest.approx(
        records[-1]["time/step_ms"] - records[-1]["time/comm_ms"] + records[-1]["time/comm_model_ms"], rel=1e-12)
    assert (run_dir / ".hydra" / "config.yaml").exists()

    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert METRIC_KEYS <= set(events.Tags()["scalars"])
    for key in METRIC_KEYS:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == list(range(1, 51))
        np.testing.assert_allclose([s.value for s in scalars], [r[key] for r in records], rtol=1e-6)
    assert hparams_of(run_dir) == {
        "task": "linreg", "data": "generated from the seed", "compressor": "topk", "ratio": 0.5, "workers": 2.0,
        "seed": 0.0, "lr": 0.01,
    }


def hparams_of(run_dir):
    """The hyper-parameters recorded for TensorBoard's HParams tab in the run's event file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    (event_file,) = run_dir.glob("events.out.tfevents.*")
    for event in EventFileLoader(str(event_file)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    return {
                        k: getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()
                    }
    return None


def test_dense_converges_by_orders_of_magnitude(tmp_path):
    run_dir = tmp_path / "dense"
    sparsetrain(run_dir, "task=linreg", "compressor=dense", "dist.nproc=2", "dist.workers=4", "train.steps=400")
    records, summary = load_run(run_dir)
    assert summary["linreg/dist_to_opt"] < 1e-4 * records[0]["linreg/dist_to_opt"]
    assert records[-1]["comm/bytes_sent"] == 2 * 3 / 4 * 4 * 100


def _trajectory(run_dir):
    records, _ = load_run(run_dir)
    return np.array([[r["train/loss"], r["linreg/dist_to_opt"]] for r in records])


@pytest.mark.parametrize("job", [["compressor=topk", "exchange=allgather"], ["compressor=topk", "exchange=allreduce"],
                                 ["compressor=dense"]], ids=["gathered", "summed", "dense"])
def test_layout_does_not_change_the_result(tmp_path, job):
    """4 logical workers as 1x4, 2x2 and 4x1 (processes x workers each), one thread each."""
    runs = {}
    for nproc in (1, 2, 4):
        run_dir = tmp_path / f"run{nproc}"
        sparsetrain(
            run_dir, "task=linreg", *job, "ratio=0.3", f"dist.nproc={nproc}", "dist.workers=4",
            "train.steps=60", "log.tensorboard=false", env={"OMP_NUM_THREADS": "1"},
        )
        runs[nproc] = _trajectory(run_dir)
    for nproc in (2, 4):
        if "exchange=allgather" in job:  # sparse contributions are summed in worker order on every layout
            assert np.array_equal(runs[nproc], runs[1])
        else:  # an all-reduce (dense, or of the densely summed payloads) sums in a layout-dependent order
            np.testing.assert_allclose(runs[nproc], runs[1], rtol=1e-5)


def test_the_readme_custom_compressor_runs_as_written(tmp_path):
    """The README's example, verbatim: the class in mypkg/halfk.py and its command line."""
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n# mypkg/halfk.py\n(.+?)```", readme, flags=re.S).group(1)
    command = re.search(r"PYTHONPATH=\. (sparsetrain compressor._target_=mypkg.halfk.+?)\n", readme).group(1)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "halfk.py").write_text(code)
    run_dir = tmp_path / "run"
    overrides = [*shlex.split(command)[1:], "task=linreg", "dist.nproc=2", "train.steps=5"]
    result = sparsetrain(run_dir, *overrides, env={"PYTHONPATH": str(tmp_path)})
    records, summary = load_run(run_dir)
    assert summary["compressor"] == "LargestFraction" and " LargestFraction ratio=0.1 " in result.stdout
    assert summary["compressor_target"] == "mypkg.halfk.LargestFraction"
    assert {r["comm/selected"] for r in records} == {2.0}  # k = 10 of d = 100, a quarter of it
    for typo in ("+compressor.shares=0.25", "+compressor.share=yes"):
        refused = sparsetrain(tmp_path / "refused", *overrides, typo, env={"PYTHONPATH": str(tmp_path)}, check=False)
        assert refused.returncode == 2 and "compressor.share" in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    "override, key",
    [
        ("ratio=1.5", "ratio"),  # a range (validation)
        ("ratoi=0.5", "ratoi"),  # a typo (composition), tests/test_compose.py has the whole table
        ("+ratoi=0.5", "ratoi"),  # an addition
        ("log.progress=2", "log.progress"),  # a type OmegaConf would convert
        ("compressor=topkk", "compressor=topkk"),  # a config group option
        ("train.milestones=[0.5,2]", "train.milestones"),
        ("-m ratio=0.5,2", "ratio"),  # a bad sweep point
        ("resume=/nonexistent/run", "resume="),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, override, key):
    result = sparsetrain(tmp_path / "run", *override.split(), "task=linreg", "dist.nproc=2", check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetrain: error: ") and key in lines[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run, sweep or output directory left behind


def test_refused_job_leaves_no_default_output_directory(tmp_path):
    result = subprocess.run(["sparsetrain", "task=linreg", "ratio=2"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "ratio=2" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>/ with only Hydra's files in it


def test_already_under_torchrun_runs_in_place(tmp_path, python):
    """Every rank runs the Hydra app; they share one run directory named after torchrun's run id."""
    result = subprocess.run(
        [python, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
         "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", "abc", "-m", "sparsetrain",
         "task=linreg", "compressor=topk", "ratio=0.5", "train.steps=20"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "outputs" / "torchrun-abc"
    records, summary = load_run(run_dir)
    assert summary["processes"] == 2 and summary["workers"] == 2 and len(records) == 20
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["torchrun-abc"]


@pytest.mark.parametrize("compressor", ["gaussiank", "regtopk", "randomk"])
def test_every_compressor_trains_end_to_end(tmp_path, compressor):
    run_dir = tmp_path / compressor
    sparsetrain(run_dir, "task=linreg", f"compressor={compressor}", "ratio=0.3", "dist.nproc=2", "dist.workers=4",
                "train.steps=30", "log.tensorboard=false")
    records, summary = load_run(run_dir)
    assert summary["status"] == "completed" and summary["compressor"] == compressor
    assert summary["linreg/dist_to_opt"] < records[0]["linreg/dist_to_opt"]
    variable = compressor == "gaussiank"
    for r in records:
        assert r["comm/payload_bytes"] == 8 * r["comm/selected"] + (4 if variable else 0)
        # 4 workers x 30 of 100 entries: gathering them (3 x 240 bytes) costs more than a dense
        # all-reduce (2 x 3/4 x 400), which auto picks; Gaussian-k's counts travel first (3 x 4)
        assert variable or (r["comm/selected"] == 30 and r["comm/bytes_sent"] == 600 and r["comm/allreduce"] == 1)
        assert r["comm/bytes_received"] == r["comm/bytes_sent"]


def test_two_nodes_on_one_host(tmp_path):
    """dist.nnodes=2: two launching processes rendezvous at node 0's endpoint; node 0 hosts rank 0."""
    from sparsetrain.launch import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            ["sparsetrain", "task=linreg", "compressor=topk", "ratio=0.5", "dist.nproc=1", "dist.nnodes=2", f"dist.node_rank={rank}",
             f"dist.rdzv_endpoint={endpoint}", "train.steps=20", f"hydra.run.dir={tmp_path / f'node{rank}'}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    records, summary = load_run(tmp_path / "node0")
    assert summary["processes"] == 2 and summary["workers"] == 2 and len(records) == 20
    assert "run_dir=" in outputs[0][0] and not (tmp_path / "node1" / "summary.json").exists()


def test_a_failed_job_does_not_stop_the_sweep(tmp_path):
    (tmp_path / "crash.py").write_text(textwrap.dedent('''
        from sparsetrain.compressors import TopK

        class Crash(TopK):
            def select(self, acc, step):
                raise RuntimeError("boom")
    '''))
    result = subprocess.run(
        ["sparsetrain", "-m", "task=linreg", "compressor._target_=crash.Crash,sparsetrain.compressors.topk.TopK", "dist.nproc=2",
         "train.steps=5", "log.tensorboard=false", f"hydra.sweep.dir={tmp_path / 'sw'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    summaries = [json.loads((tmp_path / "sw" / str(n) / "summary.json").read_text()) for n in (0, 1)]
    assert [s["status"] for s in summaries] == ["failed", "completed"]
    assert summaries[0]["error"] == "RuntimeError: boom"
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"sparsetrain: error: 1 job(s) of the sweep failed, the first {tmp_path / 'sw' / '0'}: RuntimeError: boom"
    )


def test_summary_names_the_exchange_used(tmp_path):
    sparsetrain(tmp_path / "run", "task=linreg", "compressor=topk", "ratio=0.6", "dist.nproc=2", "dist.workers=4",
                "train.steps=3", "log.tensorboard=false")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["exchange"] == "allreduce"  # 4 x 60 entries of 100: fill-in, a dense all-reduce is cheaper
