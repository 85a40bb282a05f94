"""FlatSGD performs exactly torch.optim.SGD's update."""

import pytest
import torch

from sparsetrain.optim import FlatSGD


@pytest.mark.parametrize(
    "momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 5e-4), (0.9, True, 5e-4), (0.5, False, 0.0)]
)
def test_flat_sgd_equals_torch_sgd(momentum, nesterov, weight_decay):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(64, generator=gen)
    reference = start.clone().requires_grad_()
    torch_sgd = torch.optim.SGD([reference], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    params = start.clone()
    flat = FlatSGD(params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(5):
        g = torch.randn(64, generator=gen)
        reference.grad = g.clone()
        torch_sgd.step()
        flat.step(g.clone())
        torch.testing.assert_close(params, reference.detach(), rtol=1e-6, atol=1e-7)


def test_weight_decay_spares_the_tail_after_decay_size():
    params = torch.ones(4)
    FlatSGD(params, lr=1.0, weight_decay=0.5, decay_size=2).step(torch.zeros(4))
    assert params.tolist() == [0.5, 0.5, 1.0, 1.0]
