"""Training trajectories recorded before a refactor, replayed after it: the same runs must give the
same metrics, bit for bit, on the machine class that recorded them.

    python -m tests.train.test_golden      # re-record (only for an intended change of behaviour)

Each job runs the ``sparsetrain`` command with one intra-op thread per process. Float results of
the same code can differ between CPU instruction sets (MKL and oneDNN pick kernels by ISA), so the
comparison is exact where torch reports the recording machine's CPU capability and within 1e-5
relative elsewhere; the test says which it did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import load_run, sparsetrain

GOLDEN = Path(__file__).with_name("golden.json")
TRAJECTORY = (
    "train/loss", "train/lr", "train/epoch", "linreg/dist_to_opt", "eval/accuracy", "eval/loss", "comm/selected",
)
"""What the algorithm computes; traffic and time keys are checked elsewhere (their definitions may change)."""

LINREG = ["task=linreg", "ratio=0.3", "dist.nproc=2", "dist.workers=4", "train.steps=30", "train.momentum=0.5",
          "log.tensorboard=false", "ckpt.every=0"]
GATHERED = ["exchange=allgather"]
"""The recording (aece535) gathered every sparse payload; exchange=auto would now sum these
(4 x 30 of 100 entries) densely, which may round an entry's sum differently."""
JOBS = {
    "linreg_dense": [*LINREG, "compressor=dense"],
    **{f"linreg_{c}": [*LINREG, f"compressor={c}", *GATHERED] for c in ("topk", "gaussiank", "regtopk", "randomk")},
    "cifar10_smoke_regtopk": ["+experiment=smoke", "task.synthetic=true", "task.synthetic_samples=64",
                              "compressor=regtopk", "train.steps=4", "log.eval_every=2", "log.tensorboard=false"],
}


def trajectory(run_dir: Path) -> list[dict]:
    records, _ = load_run(run_dir)
    return [{"step": r["step"], **{k: r[k] for k in TRAJECTORY if k in r}} for r in records]


def run(name: str, root: Path) -> list[dict]:
    run_dir = root / name
    sparsetrain(run_dir, *JOBS[name], env={"OMP_NUM_THREADS": "1"})
    return trajectory(run_dir)


def record(root: Path) -> None:
    golden = {
        "command": "python -m tests.train.test_golden",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "jobs": {name: {"overrides": JOBS[name], "records": run(name, root)} for name in JOBS},
    }
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")


@pytest.mark.parametrize("name", list(JOBS))
def test_trajectory_matches_the_recorded_one(tmp_path, name):
    golden = json.loads(GOLDEN.read_text())
    expected = golden["jobs"][name]
    assert expected["overrides"] == JOBS[name], "the job changed: re-record deliberately"
    got = run(name, tmp_path)
    assert [r["step"] for r in got] == [r["step"] for r in expected["records"]]
    assert [sorted(r) for r in got] == [sorted(r) for r in expected["records"]]
    same_isa = golden["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for mine, theirs in zip(got, expected["records"]):
        for key in mine:
            if same_isa:
                assert mine[key] == theirs[key], (name, mine["step"], key)
            else:
                np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5, err_msg=f"{name} {key}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
    print(f"wrote {GOLDEN}", file=sys.stderr)
