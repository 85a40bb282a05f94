"""The linear-regression task against the formulas of ALGORITHMS.md, in float64 numpy."""

import numpy as np
import torch

from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.linreg import LinearRegression, worker_shard


def make(rank=0, processes=1, workers=3, **kwargs):
    return LinearRegression(WorkerLayout.create(rank, processes, workers), torch.device("cpu"), seed=4, **kwargs)


def test_shards_depend_only_on_seed_and_worker():
    a1, y1 = worker_shard(5, 4, 10, 20, 5.0, 0.5)
    a2, y2 = worker_shard(5, 4, 10, 20, 5.0, 0.5)
    a3, _ = worker_shard(6, 4, 10, 20, 5.0, 0.5)
    assert torch.equal(a1, a2) and torch.equal(y1, y2) and not torch.equal(a1, a3)
    # Worker 2's Hessian is built from worker 2's shard, whichever process hosts it.
    a, _ = worker_shard(2, 4, 100, 500, 5.0, 0.5)
    torch.testing.assert_close(make(workers=3).hessians[2], (2 / 500 * a.T @ a).float())


def test_shard_statistics_follow_the_generative_model():
    """Noise variance 0.5 and local models m_n * 1 + N(0, I) with m_n ~ N(0, 5)."""
    means, noise = [], []
    for worker in range(400):
        a, y = worker_shard(worker, 1, 10, 40, 5.0, 0.5)
        x_local = torch.linalg.lstsq(a, y.unsqueeze(1)).solution.squeeze(1)
        means.append(float(x_local.mean()))
        noise.append(float((y - a @ x_local).var() * 40 / 30))
    assert abs(np.var(means) - (5.0 + 1 / 10)) < 1.2
    assert abs(np.mean(noise) - 0.5) < 0.05


def test_optimum_is_the_global_least_squares_solution():
    task = make(workers=3, dim=8, samples_per_worker=30)
    shards = [worker_shard(n, 4, 8, 30, 5.0, 0.5) for n in range(3)]
    a = np.concatenate([s[0].numpy() for s in shards])
    y = np.concatenate([s[1].numpy() for s in shards])
    np.testing.assert_allclose(task.optimum.numpy(), np.linalg.lstsq(a, y, rcond=None)[0], rtol=1e-10)


def test_gradient_and_loss_match_the_mse_formulas():
    task = make(workers=2, dim=8, samples_per_worker=30)
    x = np.random.default_rng(0).standard_normal(8)
    task.flat_params.copy_(torch.from_numpy(x))
    for local in range(2):
        a, y = (t.numpy() for t in worker_shard(local, 4, 8, 30, 5.0, 0.5))
        loss = task.local_gradient(local, step=1)
        residual = a @ x - y
        np.testing.assert_allclose(task.flat_grad.numpy(), 2 / 30 * a.T @ residual, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(float(loss), np.mean(residual**2), rtol=1e-5)


def test_dist_to_opt_is_the_squared_distance():
    task = make(workers=1, dim=5, samples_per_worker=20)
    assert np.isclose(task.metrics()["linreg/dist_to_opt"], float(task.optimum.square().sum()))
