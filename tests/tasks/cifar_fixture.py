"""A small CIFAR-10 in CIFAR-10's exact on-disk layout, for tests on machines without the dataset.

``<root>/cifar-10-batches-py/`` holds ``batches.meta`` and ``data_batch_1`` .. ``data_batch_5``,
``test_batch``: pickled dicts with the keys of the published python version ('batch_label',
'labels', 'data', 'filenames'; 'label_names' and 'num_cases_per_batch', 'num_vis' in the meta),
'data' a C-contiguous uint8 array of shape (N, 3072) holding each image's red, green and blue
32x32 planes row by row. torchvision reads them with the same code as the real files; only their
md5 sums differ (hence ``task.verify_checksums=false`` in tests).

Images are class-dependent so that a few training steps beat chance: class c's image is a colour
of its own on the left half and another on the right half, plus uniform noise.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 images whose two halves' colours identify the label."""
    palette = np.random.default_rng(1234).integers(0, 256, size=(10, 2, 3))
    images = np.empty((len(labels), 3, 32, 32), dtype=np.int64)
    images[:, :, :, :16] = palette[labels, 0, :, None, None]
    images[:, :, :, 16:] = palette[labels, 1, :, None, None]
    images += rng.integers(-40, 41, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def _write(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 40, test: int = 100, seed: int = 0) -> Path:
    """Write the dataset under ``root`` (5 x ``per_batch`` training and ``test`` test images);
    returns ``root``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = [(f"data_batch_{i}", f"training batch {i} of 5", per_batch) for i in range(1, 6)]
    for name, label, n in [*batches, ("test_batch", "testing batch 1 of 1", test)]:
        labels = rng.integers(0, 10, size=n)
        _write(folder / name, {
            "batch_label": label,
            "labels": labels.tolist(),
            "data": class_images(labels, rng),
            "filenames": [f"fixture_{name}_{i:05d}.png" for i in range(n)],
        })
    _write(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": LABEL_NAMES, "num_vis": 3072})
    return Path(root)
