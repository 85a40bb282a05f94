"""Every command line is composed and checked in-process before anything runs: one line per problem.

The table holds the bad inputs users met (typos, values of the wrong type or out of range, keys a
compressor does not take, a resume with overrides); every shipped preset is composed with every
compressor; every ``sparsetrain`` example in the README passes the same check.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from sparsetrain import components
from sparsetrain.compose import check_command_line, register_schemas
from sparsetrain.errors import ConfigError
from sparsetrain.rundir import register_resolvers
from tests.conftest import REPO

register_schemas()
register_resolvers()

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))

BAD = [
    # typos, with and without +, and the closest key named
    ("ratoi=0.5", "ratoi is not a key of sparsetrain's config (did you mean ratio?)"),
    ("+ratoi=0.5", "ratoi is not a key of sparsetrain's config (did you mean ratio?)"),
    ("train.step=5", "train.step is not a key of sparsetrain's config (did you mean train.steps?)"),
    ("+ratio=0.5", "ratio is already in the config: set it without the + (ratio=...)"),
    ("compressor=topkk", "compressor=topkk is not an option: use one of dense, dgc, gaussiank, randomk, regtopk, topk"),
    ("task=linreg task.augment=true", "task.augment is not a key of task=linreg"),
    ("compressor=regtopk compressor.muu=3", "compressor.muu is not a key of compressor=regtopk (did you mean compressor.mu?)"),
    # a preset cannot hand one compressor's key to another
    ("compressor=topk compressor.mu=3", "compressor.mu is not a key of compressor=topk: topk takes value_dtype, scope, bucket_mb"),
    ("compressor.scope=layer", "compressor.scope='layer' is not allowed: use one of model, bucket"),
    ("compressor=topk compressor.bucket_mb=0", "compressor.bucket_mb=0.0 is not allowed: use a number > 0"),
    ("ratio_warmup=[0.5,0.0]", "ratio_warmup=[0.5, 0.0] is not allowed: use a list of densities in (0, 1]"),
    ("ratio_warmup=[0.5,1.5]", "ratio_warmup=[0.5, 1.5] is not allowed: use a list of densities in (0, 1]"),
    ("compressor=dense ratio_warmup=[0.5]", "compressor=dense sends everything: drop ratio_warmup"),
    ("compressor=dgc train.momentum=0.9", "compressor=dgc applies momentum on each worker before sparsifying"),
    ("compressor=dgc train.momentum=0.5 train.nesterov=true",
     "the optimizer's must be off: set train.momentum=0 train.nesterov=false"),
    ("compressor=dgc compressor.sample_ratio=0.0", "compressor.sample_ratio=0.0 is not allowed: use a number > 0"),
    ("compressor.value_dtype=float64",
     "compressor.value_dtype='float64' is not allowed: use one of float32, float16, bfloat16"),
    ("compressor=topk compressor.scope=bucket dist.nproc=2 dist.workers=4",
     "compressor.scope=bucket compresses each process's buckets as one worker's, but each process hosts 2 workers"),
    ("compressor=topk +compressor.mu=3", "compressor.mu is not a key of compressor=topk"),
    # booleans are booleans, integers integers
    ("log.tensorboard=maybe", "log.tensorboard=maybe is not allowed: use true or false"),
    ("log.progress=2", "log.progress=2 is not allowed: use true or false"),
    ("task.augment=maybe", "task.augment=maybe is not allowed: use true or false"),
    ("task.synthetic=maybe", "task.synthetic=maybe is not allowed: use true or false"),
    ("task.synthetic=1", "task.synthetic=1 is not allowed: use true or false"),
    ("compressor=gaussiank compressor.exact_k=maybe", "compressor.exact_k=maybe is not allowed: use true or false"),
    ("train.decay_norm_and_bias=maybe", "train.decay_norm_and_bias=maybe is not allowed: use true or false"),
    ("train.nesterov=maybe", "train.nesterov=maybe is not allowed: use true or false"),
    ("ckpt.every=2.5", "ckpt.every=2.5 is not allowed: use an integer"),
    ("train.steps=10.0", "train.steps=10.0 is not allowed: use null or an integer"),
    ("train.lr=fast", "train.lr=fast is not allowed: use a number"),
    ("ratio=true", "ratio=true is not allowed: use a number"),
    # ranges and choices
    ("ratio=1.5", "ratio=1.5 is not allowed: use a number > 0 and <= 1"),
    ("ratio=0", "ratio=0"),
    ("compressor=regtopk compressor.q=-5", "compressor.q=-5"),
    ("compressor=regtopk compressor.mu=0", "compressor.mu=0"),
    ("compressor=gaussiank compressor.max_evaluations=0", "compressor.max_evaluations=0"),
    ("task.image_size=7", "task.image_size=7 is not allowed: use null or an integer >= 32"),
    ("task.batch_size=0", "task.batch_size=0"),
    ("task.model=vgg", "task.model='vgg' is not allowed: use one of cifar, imagenet"),
    ("task.pretrained=true", "task.pretrained=true needs task.model=imagenet"),
    ("task=linreg task.dim=0", "task.dim=0 is not allowed: use an integer >= 1"),
    ("task=linreg task.samples_per_worker=0", "task.samples_per_worker=0"),
    ("task=linreg task.noise_var=-1", "task.noise_var=-1"),
    ("seed=99999999999999999999", "seed=99999999999999999999 is not allowed"),
    ("seed=-1", "seed=-1 is not allowed"),
    ("train.lr=-1", "train.lr=-1"),
    ("train.lr_schedule=linear", "train.lr_schedule='linear' is not allowed: use one of constant, cosine, step"),
    ("train.milestones=[0.5,2]", "train.milestones=[0.5, 2.0] is not allowed: use a list of fractions"),
    ("train.nonfinite=ignore", "train.nonfinite='ignore' is not allowed: use one of error, skip"),
    ("train.nesterov=true train.momentum=0", "train.nesterov=true needs train.momentum > 0"),
    ("train.steps=null train.epochs=null", "train.epochs and train.steps are both null"),
    ("log.eval_every=0", "log.eval_every=0"),
    ("ckpt.every=-1", "ckpt.every=-1"),
    ("dist.workers=3", "dist.workers=3 is not allowed: use a multiple of the 2 processes"),
    ("dist.device=tpu", "dist.device='tpu' is not allowed: use one of auto, cpu, cuda"),
    ("dist.device=cuda", "dist.device=cuda but no GPU is visible"),
    ("dist.backend=mpi", "dist.backend='mpi' is not allowed"),
    ("dist.nproc=0", "dist.nproc=0 is not allowed"),
    ("dist.nnodes=2", "dist.nnodes>1 needs dist.rdzv_endpoint"),
    ("dist.nnodes=2 dist.rdzv_endpoint=notaport", "dist.rdzv_endpoint='notaport' is not allowed: use <host>:<port>"),
    ("dist.rdzv_endpoint=notaport", "dist.rdzv_endpoint='notaport' is not allowed: use <host>:<port>"),
    ("dist.node_rank=1", "dist.node_rank=1 is not allowed"),
    ("dist.join_timeout_s=0", "dist.join_timeout_s=0"),
    ("fault.kill_rank=7 fault.at_step=3", "fault.kill_rank=7 is not allowed"),
    ("exchange=sideways", "exchange='sideways' is not allowed: use one of auto, allgather, allreduce"),
    ("compressor=dense exchange=allgather", "compressor=dense always all-reduces: drop exchange="),
    ("net.bandwidth=fast", "net.bandwidth='fast' is not allowed: use a rate like 1gbit, 100mbit"),
    ("net.bandwidth=1gbps", "net.bandwidth='1gbps' is not allowed"),
    ("net.model_bandwidth=10", "net.model_bandwidth='10' is not allowed"),
    ("net.model_latency_us=-1", "net.model_latency_us=-1"),
    ("net.bandwidth=1gbit dist.nnodes=2 dist.rdzv_endpoint=h:1", "net.bandwidth emulates a link on one machine"),
    ("compressor._target_=nowhere.Nothing", "compressor._target_='nowhere.Nothing' cannot be imported"),
    ("compressor._target_=sparsetrain.tasks.linreg.LinearRegression", "is not a subclass of sparsetrain.compressors.base.Compressor"),
    ("resume=/nonexistent/run", "resume=/nonexistent/run holds no checkpoint"),
    ("hydra.run.dir=/proc/x", "hydra.run.dir=/proc/x cannot be created"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_command_line(shlex.split(overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_every_point_of_a_sweep_is_checked_before_any_runs():
    with pytest.raises(ConfigError, match=r"ratio=1.5 is not allowed"):
        check_command_line(["-m", "task=linreg", "compressor=dense,topk", "ratio=0.5,1.5"])
    check_command_line(["-m", "task=linreg", "compressor=dense,topk", "ratio=0.5,0.6"])


def test_resume_with_other_overrides_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"resume=.* continues the run with the config saved in its job.json; "
                                          r"other overrides \(ratio=0.3\) would change it"):
        check_command_line([f"resume={tmp_path}", "ratio=0.3"])


def test_a_run_directory_that_holds_a_run_is_not_reused(tmp_path):
    (tmp_path / "job.json").write_text("{}")
    with pytest.raises(ConfigError, match=rf"hydra.run.dir={tmp_path} already holds a run: resume={tmp_path} continues it"):
        check_command_line(["task=linreg", f"hydra.run.dir={tmp_path}"])


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("compressor", sorted(components.BUILTIN["compressor"]))
def test_every_preset_runs_with_every_compressor(preset, compressor):
    """Except DGC with a preset that asks for the optimizer's momentum, which DGC replaces."""
    overrides = [f"+experiment={preset}", f"compressor={compressor}"]
    if compressor == "dgc" and preset == "cifar10_fast":
        with pytest.raises(ConfigError, match="compressor=dgc applies momentum on each worker"):
            check_command_line(overrides)
    else:
        check_command_line(overrides)


def test_dgc_turns_the_optimizers_momentum_off():
    """cifar10's recipe has nesterov momentum 0.9: choosing DGC moves it into the compressor."""
    printed = subprocess.run(["sparsetrain", "compressor=dgc", "--cfg", "job"], capture_output=True, text=True,
                             check=True, timeout=120).stdout
    job = yaml.safe_load(printed)
    assert job["train"]["momentum"] == 0 and job["train"]["nesterov"] is False
    assert job["compressor"]["momentum"] == 0.9 and job["compressor"]["_target_"] == "sparsetrain.compressors.dgc.DGC"


def readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("sparsetrain ") and "<" not in line and "\\" not in line]


@pytest.mark.parametrize("example", readme_examples())
def test_every_readme_example_is_a_valid_command(example):
    if "hydra/launcher=slurm" in example:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install -e ".[slurm]"')
    check_command_line(shlex.split(example)[1:])


def test_the_slurm_launcher_without_its_plugin_says_how_to_install_it():
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r'needs hydra-submitit-launcher: pip install -e ".\[slurm\]"'):
            check_command_line(["-m", "hydra/launcher=slurm", "compressor=topk,regtopk"])
    else:
        pytest.skip("hydra-submitit-launcher is installed")


def test_readme_examples_were_found():
    assert len(readme_examples()) >= 8
