"""ResNet-18 on CIFAR-10, the compressors' headline task (ALGORITHMS.md, "ResNet-18 on CIFAR-10").

The data (:mod:`sparsetrain.tasks.cifar10_data`) are loaded once per process onto the training
device; logical worker n's batches come from its ``DistributedSampler`` shard, and each step's
crops and flips from a generator seeded by (seed, worker, step). The data order is thus a function
of the step alone: a checkpoint needs no loader state, and the layout of workers on processes does
not change what any worker sees.

Model: :func:`~sparsetrain.tasks.resnet.build_resnet18`, its parameters and gradients re-homed in
the flat buffers the trainer works on (:mod:`sparsetrain.tasks.flat_module`). Each hosted worker
runs forward and backward on its own batch; batch norm uses that batch's statistics, and its
running averages (updated by every hosted worker in turn) are averaged over processes before each
evaluation, as timm's ``distribute_bn`` does, so every process evaluates the same model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from sparsetrain.errors import ConfigError, check_number
from sparsetrain.layout import WorkerLayout
from sparsetrain.seeding import step_generator
from sparsetrain.tasks.base import Task
from sparsetrain.tasks.cifar10_data import (
    MEAN,
    STD,
    default_data_root,
    load_cifar10,
    random_crop_flip,
    shard_steps,
    synthetic_cifar10,
)
from sparsetrain.tasks.flat_module import flatten_module
from sparsetrain.tasks.resnet import build_resnet18, check_model, pretrained_weights

__all__ = ["CIFAR10"]



class CIFAR10(Task):
    """ResNet-18 on CIFAR-10. Its keys, under ``task.``:

    * ``data_root``: the directory holding ``cifar-10-batches-py/``; null: ``$SPARSETRAIN_DATA``,
      else ``./data``;
    * ``download``: fetch CIFAR-10 (170 MB) into data_root when it is not there (files already
      there are never overwritten);
    * ``verify_checksums``: torchvision's md5 check of every file; false only for copies you trust;
    * ``synthetic``, ``synthetic_samples``: train on that many random CIFAR-shaped images, no
      dataset (speed and smoke runs; nothing can be learnt from them);
    * ``model``: ``cifar`` (3x3 stem, no max-pool, 32 px) or ``imagenet`` (torchvision's original,
      224 px); ``pretrained``: start the imagenet model from torchvision's ImageNet weights;
    * ``image_size``: null: 32 for cifar, 224 for imagenet (batches are resized on the device);
    * ``batch_size``: per worker; ``augment``: random crop with 4 px zero padding + horizontal flip;
    * ``eval_batch_size``; ``eval_samples``: evaluate on the first N test images (null: all 10,000).
    """

    def __init__(
        self,
        layout: WorkerLayout,
        device: torch.device,
        seed: int,
        data_root: str | None = None,
        download: bool = True,
        verify_checksums: bool = True,
        synthetic: bool = False,
        synthetic_samples: int = 50_000,
        model: str = "cifar",
        pretrained: bool = False,
        image_size: int | None = None,
        batch_size: int = 128,
        augment: bool = True,
        eval_batch_size: int = 500,
        eval_samples: int | None = None,
    ) -> None:
        super().__init__(layout, device, seed)
        if synthetic:
            data = synthetic_cifar10(seed, synthetic_samples)
            if layout.rank == 0:
                print("sparsetrain: task.synthetic=true: training on random tensors, not CIFAR-10", file=sys.stderr)
        else:  # the launcher has checked (and if asked, downloaded) the files: see prepare()
            data = load_cifar10(data_root or default_data_root(), download=False, verify_checksums=verify_checksums)
        self.data = data.to(device)
        self.batch_size = batch_size
        self.augment = augment
        self.eval_batch_size = eval_batch_size
        self.eval_samples = min(eval_samples or len(self.data.test_labels), len(self.data.test_labels))
        self.image_size = image_size or (224 if model == "imagenet" else 32)
        self.scale = (1 / (255 * torch.tensor(STD, device=device))).view(1, 3, 1, 1)
        self.shift = (torch.tensor(MEAN, device=device) / torch.tensor(STD, device=device)).view(1, 3, 1, 1)

        self.sampler = DistributedSampler(
            range(len(self.data.train_labels)), num_replicas=layout.num_workers, rank=0, shuffle=True,
            seed=seed, drop_last=True,
        )
        self._steps_per_epoch = shard_steps(len(self.data.train_labels), layout.num_workers, batch_size)
        self._orders: dict[int, tuple[int, torch.Tensor]] = {}

        with torch.random.fork_rng(devices=[]):  # the same initial model on every process, for a seed
            torch.manual_seed(seed)
            self.model = build_resnet18(model, pretrained=pretrained).to(device)
        self.flat = flatten_module(self.model)
        self.flat_params, self.flat_grad, self._decay_size = self.flat.params, self.flat.grad, self.flat.decay_size
        self._buffers = [b for b in self.model.buffers() if b.is_floating_point()]

    @classmethod
    def check(cls, options: dict[str, Any], num_workers: int) -> None:
        for key in ("batch_size", "eval_batch_size", "synthetic_samples"):
            check_number(f"task.{key}", options[key], 1, integer=True)
        check_number("task.eval_samples", options["eval_samples"], 1, integer=True, nullable=True)
        check_number("task.image_size", options["image_size"], 32, integer=True, nullable=True)
        check_model(options["model"], options["pretrained"])
        if options["synthetic"]:
            shard_steps(options["synthetic_samples"], num_workers, options["batch_size"])

    @classmethod
    def prepare(cls, options: dict[str, Any], num_workers: int) -> None:
        """Make the data (and pretrained weights) available, in the launching process before any
        worker starts, so a missing dataset is one line, not a crash in every worker."""
        options["data_root"] = str(Path(os.path.expanduser(options["data_root"] or default_data_root())).resolve())
        if not options["synthetic"]:
            data = load_cifar10(options["data_root"], options["download"], options["verify_checksums"])
            shard_steps(len(data.train_labels), num_workers, options["batch_size"])
        if options["pretrained"]:
            weights = pretrained_weights()
            try:
                weights.get_state_dict(progress=False)
            except Exception as error:
                raise ConfigError(
                    f"task.pretrained=true could not fetch {weights.url} ({type(error).__name__}): put the file "
                    f"in {torch.hub.get_dir()}/checkpoints/ or set task.pretrained=false"
                ) from None

    @classmethod
    def describe_data(cls, options: dict[str, Any]) -> str:
        if options["synthetic"]:
            return "SYNTHETIC: random CIFAR-10-shaped tensors, not CIFAR-10 (accuracy means nothing)"
        return f"CIFAR-10 at {options['data_root']}"

    @property
    def decay_size(self) -> int:
        return self._decay_size

    @property
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def _order(self, worker: int, epoch: int) -> torch.Tensor:
        """Worker ``worker``'s sample indices for ``epoch``, from its DistributedSampler."""
        cached = self._orders.get(worker)
        if cached is None or cached[0] != epoch:
            self.sampler.rank = worker
            self.sampler.set_epoch(epoch)
            cached = (epoch, torch.tensor(list(self.sampler), dtype=torch.int64, device=self.device))
            self._orders[worker] = cached
        return cached[1]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float32 model inputs at ``image_size``."""
        x = images.float().mul_(self.scale).sub_(self.shift)
        if self.image_size != x.shape[-1]:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x

    def batch(self, worker: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Worker ``worker``'s training batch of step ``step`` (1-based): inputs and labels."""
        epoch, position = divmod(step - 1, self._steps_per_epoch)
        index = self._order(worker, epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        images = self.data.train_images[index]
        if self.augment:
            images = random_crop_flip(images, step_generator(self.seed, worker, step))
        return self._inputs(images), self.data.train_labels[index]

    def local_gradient(self, local_worker: int, step: int, accumulate: bool = False) -> torch.Tensor:
        inputs, labels = self.batch(self.layout.worker_ids[local_worker], step)
        if not accumulate:
            self.flat.release_grads()
        loss = F.cross_entropy(self.model(inputs), labels)
        loss.backward()
        self.flat.gather_grads()
        return loss.detach()

    @torch.no_grad()
    def _average_buffers(self) -> None:
        """Average the batch-norm running statistics over processes (timm's ``distribute_bn``)."""
        if self.layout.processes == 1:
            return
        flat = torch.cat([b.reshape(-1) for b in self._buffers])
        dist.all_reduce(flat)
        flat /= self.layout.processes
        for buffer, averaged in zip(self._buffers, torch._utils._unflatten_dense_tensors(flat, self._buffers)):
            buffer.copy_(averaged)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy (percent) on the first ``eval_samples`` test images (all by default),
        each process taking every ``processes``-th of them; the same numbers on every process."""
        self._average_buffers()
        self.model.eval()
        n = self.eval_samples
        mine = torch.arange(self.layout.rank, n, self.layout.processes, device=self.device)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for chunk in mine.split(self.eval_batch_size):
            logits = self.model(self._inputs(self.data.test_images[chunk]))
            labels = self.data.test_labels[chunk]
            totals[0] += F.cross_entropy(logits, labels, reduction="sum")
            totals[1] += (logits.argmax(dim=1) == labels).sum()
        self.model.train()
        if self.layout.processes > 1:
            dist.all_reduce(totals)
        loss, correct = totals.tolist()
        return {"eval/accuracy": 100.0 * correct / n, "eval/loss": loss / n}

    def state_dict(self) -> dict:
        """Batch norm's buffers, which differ between processes; the data position is the step."""
        return {"buffers": [b.clone() for b in self.model.buffers()]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), state["buffers"], strict=True):
                buffer.copy_(saved)
