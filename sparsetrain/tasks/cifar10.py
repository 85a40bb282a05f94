"""ResNet-18 on CIFAR-10, the compressors' headline task (ALGORITHMS.md, "ResNet-18 on CIFAR-10").

Data: torchvision's CIFAR-10 (the python version, ``<data_root>/cifar-10-batches-py/``), loaded
once per process into uint8 tensors on the training device. Augmentation (random crop with 4
pixels of zero padding, horizontal flip) and CIFAR-10 mean/std normalisation run batched on that
device, as fast CIFAR trainers do (Page 2018, "How to train your ResNet"; Jordan 2024, airbench),
instead of one PIL image at a time in loader processes.

Sharding: logical worker n of P draws its samples from ``DistributedSampler(rank=n,
num_replicas=P, shuffle=True, seed=seed, drop_last=True)`` with ``set_epoch(epoch)``, in batches of
``batch_size``; the last partial batch of a shard is dropped, so every worker takes the same
``steps_per_epoch``. Each step's crops and flips come from a generator seeded by (seed, worker,
step). The data order is thus a function of the step alone: a checkpoint needs no loader state,
and the layout of workers on processes does not change what any worker sees.

Model: :func:`~sparsetrain.tasks.resnet.build_resnet18`, its parameters and gradients re-homed in
the flat buffers the trainer works on (:mod:`sparsetrain.tasks.flat_module`). Each hosted worker
runs forward and backward on its own batch; batch norm uses that batch's statistics, and its
running averages (updated by every hosted worker in turn) are averaged over processes before each
evaluation, as timm's ``distribute_bn`` does, so every process evaluates the same model.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

from sparsetrain.layout import WorkerLayout
from sparsetrain.seeding import step_generator
from sparsetrain.tasks.base import Task
from sparsetrain.tasks.flat_module import flatten_module
from sparsetrain.tasks.resnet import PRETRAINED, build_resnet18, check_model
from sparsetrain.validation import ConfigError, check_number

__all__ = ["CIFAR10", "CifarArrays", "load_cifar10", "synthetic_cifar10", "random_crop_flip", "LAYOUT"]

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
"""Per-channel mean and standard deviation of CIFAR-10's training pixels (in [0, 1])."""

FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
LAYOUT = f"{TorchvisionCIFAR10.base_folder}/ holding {', '.join(FILES)} (CIFAR-10's python version)"


class _FilesOnlyCIFAR10(TorchvisionCIFAR10):
    """torchvision's CIFAR10 reader, checking that every file exists but not its md5.

    For ``task.verify_checksums=false`` only: copies that are not the published files (the tests'
    small dataset in CIFAR-10's on-disk layout, a re-pickled copy) fail torchvision's md5 check by
    design. Rather than patching that check away for everyone, this subclass is chosen explicitly;
    real downloads keep ``verify_checksums=true`` (the default) and the full check. torchvision's
    ``check_integrity(path, md5=None)`` tests existence only.
    """

    train_list = [[name, None] for name, _ in TorchvisionCIFAR10.train_list]
    test_list = [[name, None] for name, _ in TorchvisionCIFAR10.test_list]
    meta = {**TorchvisionCIFAR10.meta, "md5": None}


@dataclass
class CifarArrays:
    """CIFAR-10 as tensors: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: torch.device) -> "CifarArrays":
        return CifarArrays(*(t.to(device) for t in (self.train_images, self.train_labels, self.test_images, self.test_labels)))


def _split(dataset: TorchvisionCIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def load_cifar10(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> CifarArrays:
    """Read CIFAR-10 with torchvision (downloading it first if asked and absent).

    Raises :class:`~sparsetrain.validation.ConfigError` with a one-line fix when the data are
    missing, cannot be downloaded or fail their checksum.
    """
    root = Path(data_root)
    folder = root / TorchvisionCIFAR10.base_folder
    reader = TorchvisionCIFAR10 if verify_checksums else _FilesOnlyCIFAR10
    missing = [name for name in FILES if not (folder / name).is_file()]
    root_existed = root.exists()
    if missing and not download:
        raise ConfigError(
            f"no CIFAR-10 at task.data_root={root} (expected {root}/{LAYOUT}; missing {', '.join(missing)}): "
            f"point task.data_root or SPARSETRAIN_DATA at a copy, set task.download=true to fetch it, "
            f"or task.synthetic=true for random data"
        )
    try:  # files that are there are never re-downloaded over: a failed check is reported instead
        train = reader(str(root), train=True, download=download and bool(missing))
        test = reader(str(root), train=False, download=False)
    except RuntimeError as error:  # torchvision: files missing or failing their md5 after any download
        raise ConfigError(
            f"CIFAR-10 at task.data_root={root} fails torchvision's check ({error}): delete {folder} and "
            f"rerun with task.download=true, or set task.verify_checksums=false for a copy you trust"
        ) from None
    except Exception as error:  # urllib / socket / tarfile errors of the download
        if not root_existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # the failed download's empty directory
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"task.download=true could not fetch CIFAR-10 into task.data_root={root} "
            f"({type(error).__name__}: {reason}): put {LAYOUT} there by hand, point task.data_root or "
            f"SPARSETRAIN_DATA at a copy, or set task.synthetic=true for random data"
        ) from None
    return CifarArrays(*_split(train), *_split(test))


def synthetic_cifar10(seed: int, train_samples: int, test_samples: int = 10_000) -> CifarArrays:
    """Uniform random uint8 images and labels of CIFAR-10's shapes, the same on every process: for
    speed and smoke runs without a dataset. Nothing can be learnt from them."""
    gen = torch.Generator().manual_seed(seed)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
        return images, torch.randint(0, 10, (n,), generator=gen)

    return CifarArrays(*part(train_samples), *part(test_samples))


def random_crop_flip(images: torch.Tensor, gen: torch.Generator, padding: int = 4) -> torch.Tensor:
    """torchvision's ``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip()``, for a whole
    uint8 batch (B, C, H, W) in one gather: each image is zero-padded, a window at a random offset
    is read, and flipped images read its columns in reverse. Offsets and flips are drawn on the
    CPU from ``gen``, so a seed gives the same augmentation on any device."""
    batch, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=gen).to(images.device)
    flip = (torch.rand(batch, generator=gen) < 0.5).to(images.device)
    padded = F.pad(images, (padding,) * 4)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(batch, device=images.device)[:, None, None, None]
    chan = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[index, chan, rows[:, None, :, None], cols[:, None, None, :]]


def shard_steps(images: int, num_workers: int, batch_size: int) -> int:
    """Full batches in each worker's shard (``DistributedSampler`` with ``drop_last``)."""
    shard = images // num_workers
    if shard < batch_size:
        raise ConfigError(
            f"task.batch_size={batch_size} exceeds each worker's shard of {shard} images "
            f"({images} over {num_workers} workers): lower task.batch_size or dist.workers"
        )
    return shard // batch_size


class CIFAR10(Task):
    """ResNet-18 on CIFAR-10; keys under ``task.`` (conf/task/cifar10.yaml documents each)."""

    name = "cifar10"

    def __init__(
        self,
        layout: WorkerLayout,
        device: torch.device,
        seed: int,
        data_root: str = "./data",
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
            data = load_cifar10(data_root, download=False, verify_checksums=verify_checksums)
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
        flat = flatten_module(self.model)
        self.flat_params, self.flat_grad, self._decay_size = flat.params, flat.grad, flat.decay_size
        self._buffers = [b for b in self.model.buffers() if b.is_floating_point()]

    @classmethod
    def prepare(cls, config: dict[str, Any], num_workers: int) -> None:
        """Check the task's keys and make the data (and pretrained weights) available, in the
        launching process before any worker starts, so a missing dataset is one line, not a crash
        in every worker."""
        for key in ("batch_size", "eval_batch_size", "synthetic_samples", "eval_samples"):
            check_number({"task": config}, f"task.{key}", 1, integer=True, nullable=key == "eval_samples")
        check_model(config.get("model"), config.get("pretrained", False))
        config["data_root"] = str(Path(os.path.expanduser(str(config["data_root"]))).resolve())
        if config.get("synthetic"):
            images = config["synthetic_samples"]
        else:
            data = load_cifar10(config["data_root"], config.get("download", False), config.get("verify_checksums", True))
            images = len(data.train_labels)
        shard_steps(images, num_workers, config["batch_size"])
        if config.get("pretrained"):
            try:
                PRETRAINED.get_state_dict(progress=False)
            except Exception as error:
                raise ConfigError(
                    f"task.pretrained=true could not fetch {PRETRAINED.url} ({type(error).__name__}): put the file "
                    f"in {torch.hub.get_dir()}/checkpoints/ or set task.pretrained=false"
                ) from None

    @classmethod
    def describe_data(cls, config: dict[str, Any]) -> str:
        if config.get("synthetic"):
            return "SYNTHETIC: random CIFAR-10-shaped tensors, not CIFAR-10 (accuracy means nothing)"
        return f"CIFAR-10 at {config.get('data_root')}"

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

    def local_gradient(self, local_worker: int, step: int) -> torch.Tensor:
        inputs, labels = self.batch(self.layout.worker_ids[local_worker], step)
        self.flat_grad.zero_()
        loss = F.cross_entropy(self.model(inputs), labels)
        loss.backward()
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
