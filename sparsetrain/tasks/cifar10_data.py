"""CIFAR-10's data for the task: read from disk (or generated), sharded, augmented on the device.

Data: torchvision's CIFAR-10 (the python version, ``<data_root>/cifar-10-batches-py/``), loaded
once per process into uint8 tensors on the training device. Augmentation (random crop with 4
pixels of zero padding, horizontal flip) and CIFAR-10 mean/std normalisation run batched on that
device, as fast CIFAR trainers do (Page 2018, "How to train your ResNet"; Jordan 2024, airbench),
instead of one PIL image at a time in loader processes.

Sharding: logical worker n of P draws its samples from ``DistributedSampler(rank=n,
num_replicas=P, shuffle=True, seed=seed, drop_last=True)`` with ``set_epoch(epoch)``, in batches of
``batch_size``; the last partial batch of a shard is dropped (:func:`shard_steps`), so every
worker takes the same number of steps per epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sparsetrain.errors import ConfigError

__all__ = [
    "MEAN", "STD", "LAYOUT", "CifarArrays", "default_data_root", "load_cifar10", "synthetic_cifar10",
    "random_crop_flip", "shard_steps",
]

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
"""Per-channel mean and standard deviation of CIFAR-10's training pixels (in [0, 1])."""

FOLDER = "cifar-10-batches-py"
FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
LAYOUT = f"{FOLDER}/ holding {', '.join(FILES)} (CIFAR-10's python version)"


def default_data_root() -> str:
    """Where ``task.data_root=null`` looks: ``$SPARSETRAIN_DATA``, else ``./data``."""
    return os.environ.get("SPARSETRAIN_DATA") or "./data"


def _reader(verify_checksums: bool) -> type:
    """torchvision's CIFAR10 reader; without ``verify_checksums`` a subclass that checks that every
    file exists but not its md5.

    That subclass is for ``task.verify_checksums=false`` only: copies that are not the published
    files (the tests' small dataset in CIFAR-10's on-disk layout, a re-pickled copy) fail
    torchvision's md5 check by design. Rather than patching that check away for everyone, the
    subclass is chosen explicitly; real downloads keep the full check. torchvision's
    ``check_integrity(path, md5=None)`` tests existence only. torchvision is imported here, not at
    the top, so that importing the task (every ``sparsetrain`` command does) stays cheap.
    """
    from torchvision.datasets import CIFAR10

    if verify_checksums:
        return CIFAR10

    class FilesOnlyCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return FilesOnlyCIFAR10


@dataclass
class CifarArrays:
    """CIFAR-10 as tensors: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: torch.device) -> "CifarArrays":
        tensors = (self.train_images, self.train_labels, self.test_images, self.test_labels)
        return CifarArrays(*(t.to(device) for t in tensors))


def _split(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def load_cifar10(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> CifarArrays:
    """Read CIFAR-10 with torchvision (downloading it first if asked and absent).

    Raises :class:`~sparsetrain.errors.ConfigError` with a one-line fix when the data are
    missing, cannot be downloaded or fail their checksum.
    """
    root = Path(data_root)
    folder = root / FOLDER
    reader = _reader(verify_checksums)
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
