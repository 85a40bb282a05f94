"""The CIFAR-10 task in-process: data path, augmentation, sharding, flat model, evaluation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch.utils.data import DistributedSampler
from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

from sparsetrain.errors import ConfigError
from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.cifar10 import CIFAR10
from sparsetrain.tasks.cifar10_data import load_cifar10, random_crop_flip
from sparsetrain.tasks.flat_module import is_decayed
from sparsetrain.tasks.resnet import build_resnet18
from tests.conftest import run_gloo
from tests.tasks.cifar_fixture import write_cifar10


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


def _task(layout=WorkerLayout(0, 1, 2), **options):
    config = dict(synthetic=True, synthetic_samples=96, batch_size=4, augment=False, eval_samples=40, eval_batch_size=16)
    return CIFAR10(layout=layout, device=torch.device("cpu"), seed=0, **{**config, **options})


def test_fixture_is_read_through_torchvision_in_cifar_layout(fixture_root):
    data = load_cifar10(fixture_root, verify_checksums=False)
    assert data.train_images.shape == (200, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (100, 3, 32, 32) and data.test_labels.dtype == torch.int64
    with open(fixture_root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        raw = pickle.load(f)
    # image i of batch 2 is row 40 + i: 1024 red, then green, then blue values, each 32 rows of 32
    assert torch.equal(data.train_images[45], torch.from_numpy(raw["data"][5].reshape(3, 32, 32)))
    assert data.train_labels[40:80].tolist() == raw["labels"]


def test_checksums_are_verified_by_default(fixture_root):
    with pytest.raises(ConfigError, match="task.verify_checksums=false"):
        load_cifar10(fixture_root)


def test_missing_data_names_the_path_layout_and_keys(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_cifar10(tmp_path / "nothing", download=False)
    message = str(error.value)
    assert "\n" not in message
    for part in (str(tmp_path / "nothing"), "cifar-10-batches-py/", "data_batch_1", "test_batch", "batches.meta",
                 "task.data_root", "SPARSETRAIN_DATA", "task.download=true", "task.synthetic=true"):
        assert part in message


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(TorchvisionCIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # refused at once
    with pytest.raises(ConfigError, match=r"^task.download=true could not fetch CIFAR-10 .*URLError") as error:
        load_cifar10(tmp_path / "data", download=True)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "data").exists()  # the failed download leaves no empty directory


def test_parameter_counts():
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(build_resnet18("cifar")) == 11_173_962
    assert count(build_resnet18("imagenet")) == 11_181_642  # ALGORITHMS.md, the RegTop-k paper's model


def test_random_crop_flip_matches_torchvision():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # the same draws, in the same order
    offsets = torch.randint(0, 9, (2, 6), generator=gen)
    flips = torch.rand(6, generator=gen) < 0.5
    assert 0 < int(flips.sum()) < 6 and len(set(offsets[0].tolist())) > 1
    for i in range(6):
        expected = TF.crop(TF.pad(images[i], [4]), int(offsets[0, i]), int(offsets[1, i]), 32, 32)
        if flips[i]:
            expected = TF.hflip(expected)
        assert torch.equal(out[i], expected)


def test_workers_draw_disjoint_shards_and_reshuffle_each_epoch():
    task = _task()  # 2 workers x 48 images, batches of 4: 12 steps per epoch
    assert task.steps_per_epoch == 12
    epoch0 = [torch.cat([task._order(w, 0)]) for w in (0, 1)]
    expected = [torch.tensor(list(s)) for s in _samplers(96, 2, epoch=0)]
    assert all(torch.equal(a, b) for a, b in zip(epoch0, expected))
    assert set(epoch0[0].tolist()).isdisjoint(epoch0[1].tolist())
    assert not torch.equal(task._order(0, 1), epoch0[0])
    _, labels_step1 = task.batch(1, 1)
    _, labels_epoch1 = task.batch(1, 13)  # first step of epoch 1 draws from the reshuffled order
    assert torch.equal(labels_step1, task.data.train_labels[expected[1][:4]])
    assert torch.equal(labels_epoch1, task.data.train_labels[task._order(1, 1)[:4]])


def _samplers(n, replicas, epoch):
    for rank in range(replicas):
        sampler = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=True, seed=0, drop_last=True)
        sampler.set_epoch(epoch)
        yield sampler


def test_flat_gradient_is_autograds_gradient_in_decay_first_order():
    task = _task(augment=True)
    reference = build_resnet18("cifar")
    reference.load_state_dict(task.model.state_dict())
    inputs, labels = task.batch(0, 1)
    loss = task.local_gradient(0, 1)
    expected_loss = F.cross_entropy(reference(inputs), labels)
    expected_loss.backward()
    params = list(reference.parameters())
    ordered = [p for p in params if is_decayed(p)] + [p for p in params if not is_decayed(p)]
    assert torch.equal(task.flat_grad, torch.cat([p.grad.reshape(-1) for p in ordered]))
    assert torch.equal(loss, expected_loss.detach())
    assert task.decay_size == sum(p.numel() for p in params if p.ndim > 1)
    # the model reads its weights from flat_params: changing the buffer changes the model
    task.flat_params.zero_()
    assert all(not p.detach().any() for p in task.model.parameters())


def test_gradient_is_zeroed_between_workers():
    task = _task()
    task.local_gradient(1, 1)
    second = task.flat_grad.clone()
    task.local_gradient(0, 1)
    task.local_gradient(1, 1)
    torch.testing.assert_close(task.flat_grad, second, rtol=0, atol=1e-6)  # not accumulated


def test_evaluation_counts_every_test_image_once():
    task = _task()
    result = task.evaluate()
    assert task.model.training  # back in training mode
    task.model.eval()
    with torch.no_grad():
        logits = task.model(task._inputs(task.data.test_images[:40]))
    labels = task.data.test_labels[:40]
    assert result["eval/accuracy"] == pytest.approx(100 * float((logits.argmax(1) == labels).float().mean()))
    assert result["eval/loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)


def _distributed_evaluation(rank, processes, out):
    task = _task(layout=WorkerLayout(rank, processes, 1))
    task.local_gradient(0, 1)  # each process's batch norm statistics now differ
    stats = [b.clone() for b in task._buffers]
    result = task.evaluate()
    if rank == 0:
        torch.save({"result": result, "stats": stats, "averaged": [b.clone() for b in task._buffers]}, out)
    else:
        torch.save({"stats": stats}, str(out) + ".1")


def test_distributed_evaluation_averages_batch_norm_and_shards_the_test_set(tmp_path):
    out = tmp_path / "eval.pt"
    run_gloo(_distributed_evaluation, 2, out)
    rank0, rank1 = torch.load(out), torch.load(str(out) + ".1")
    assert not torch.equal(rank0["stats"][0], rank1["stats"][0])
    for mine, theirs, averaged in zip(rank0["stats"], rank1["stats"], rank0["averaged"]):
        torch.testing.assert_close(averaged, (mine + theirs) / 2)
    # one process holding the averaged statistics evaluates all 40 images to the same numbers
    single = _task(layout=WorkerLayout(0, 1, 2))
    with torch.no_grad():
        for buffer, averaged in zip(single._buffers, rank0["averaged"]):
            buffer.copy_(averaged)
    expected = single.evaluate()
    assert rank0["result"]["eval/accuracy"] == pytest.approx(expected["eval/accuracy"])
    assert rank0["result"]["eval/loss"] == pytest.approx(expected["eval/loss"], rel=1e-5)


def test_state_dict_restores_batch_norm_statistics():
    task = _task()
    task.local_gradient(0, 1)
    saved = task.state_dict()
    before = [b.clone() for b in task.model.buffers()]
    task.local_gradient(1, 2)
    task.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(task.model.buffers(), before))


def test_batch_larger_than_a_shard_is_a_config_error():
    with pytest.raises(ConfigError, match="task.batch_size=64 exceeds each worker's shard of 48 images"):
        _task(batch_size=64)


def test_synthetic_data_is_described_plainly():
    assert CIFAR10.describe_data({"synthetic": True}).startswith("SYNTHETIC: random")
    assert CIFAR10.describe_data({"synthetic": False, "data_root": "/d"}) == "CIFAR-10 at /d"


def test_imagenet_model_sees_224_pixel_inputs():
    task = _task(model="imagenet")
    inputs, _ = task.batch(0, 1)
    assert inputs.shape == (4, 3, 224, 224)
    np.testing.assert_allclose(
        task._inputs(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8))[0, :, 0, 0].numpy(),
        [(1 - 0.4914) / 0.2470, (1 - 0.4822) / 0.2435, (1 - 0.4465) / 0.2616], rtol=1e-5,
    )
