"""Distributed linear regression, the RegTop-k paper's synthetic experiment.

Bereyhi, Liang, Boudreau, Afana (2025), "Regularized Top-k", Sec. 5.1; ALGORITHMS.md. Worker n:

    m_n ~ N(0, model_mean_var)                  x_n = m_n * 1 + N(0, I_d)
    A_n : samples x d, entries N(0, 1)          y_n = A_n x_n + N(0, noise_var)

Each worker's shard is drawn from a generator seeded by (seed, n) alone, so the data do not depend
on how workers are laid out on processes. The global least-squares optimum
``x* = (sum_n A_n^T A_n)^{-1} sum_n A_n^T y_n`` is solved in float64 from the workers' gathered Gram
matrices.
Loss: worker n's mean squared error ``L_n(x) = ||A_n x - y_n||^2 / N`` (N samples), with the
full-batch gradient ``H_n x - b_n``, ``H_n = (2/N) A_n^T A_n``, ``b_n = (2/N) A_n^T y_n``,
precomputed in float64 and applied in float32 (one d x d matrix-vector product per worker and step
instead of two N x d ones). The loss is ``(x.grad - x.b_n) / 2 + ||y_n||^2 / N``. The model is
linear with no bias and starts at 0.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsetrain.collectives import all_gather_rows
from sparsetrain.errors import check_number
from sparsetrain.layout import WorkerLayout
from sparsetrain.seeding import worker_seed
from sparsetrain.tasks.base import Task

__all__ = ["LinearRegression", "worker_shard"]


def worker_shard(
    worker: int, seed: int, dim: int, samples: int, model_mean_var: float, noise_var: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A_n, y_n)`` of worker n in float64, a pure function of (seed, worker) and the sizes."""
    gen = torch.Generator().manual_seed(worker_seed(seed, worker))
    mean = torch.randn((), generator=gen, dtype=torch.float64) * model_mean_var**0.5
    local_model = mean + torch.randn(dim, generator=gen, dtype=torch.float64)
    features = torch.randn(samples, dim, generator=gen, dtype=torch.float64)
    noise = torch.randn(samples, generator=gen, dtype=torch.float64) * noise_var**0.5
    return features, features @ local_model + noise


class LinearRegression(Task):
    """The RegTop-k paper's regression. Keys, under ``task.``: ``dim`` (d, the model size),
    ``samples_per_worker`` (rows of A_n), ``model_mean_var`` (variance of m_n, the mean of worker
    n's local model x_n), ``noise_var`` (variance of the observation noise in y_n)."""

    def __init__(
        self,
        layout: WorkerLayout,
        device: torch.device,
        seed: int,
        dim: int = 100,
        samples_per_worker: int = 500,
        model_mean_var: float = 5.0,
        noise_var: float = 0.5,
    ) -> None:
        super().__init__(layout, device, seed)
        shards = [
            worker_shard(n, seed, dim, samples_per_worker, model_mean_var, noise_var)
            for n in layout.worker_ids
        ]
        # Every worker's Gram matrix, gathered in worker order and summed in that order, so that
        # x* is bit-identical whatever the layout (float64 all-reduces sum in layout order).
        grams = torch.stack([torch.cat([a.T @ a, (a.T @ y)[:, None]], dim=1) for a, y in shards])
        grams = all_gather_rows(grams.to(device), layout.processes).cpu()
        total = grams.sum(dim=0)
        gram, moment = total[:, :dim], total[:, dim]
        self.optimum = torch.linalg.solve(gram, moment)
        scale = 2.0 / samples_per_worker
        self.hessians = torch.stack([scale * a.T @ a for a, _ in shards]).to(device, torch.float32)
        self.neg_moments = torch.stack([-scale * a.T @ y for a, y in shards]).to(device, torch.float32)
        self.target_power = torch.stack([y.square().mean() for _, y in shards]).to(device, torch.float32)
        self.flat_params = torch.zeros(dim, dtype=torch.float32, device=device)
        self.flat_grad = torch.zeros_like(self.flat_params)

    @classmethod
    def check(cls, options: dict[str, Any], num_workers: int) -> None:
        check_number("task.dim", options["dim"], 1, integer=True)
        check_number("task.samples_per_worker", options["samples_per_worker"], 1, integer=True)
        check_number("task.model_mean_var", options["model_mean_var"], 0)
        check_number("task.noise_var", options["noise_var"], 0)

    def local_gradient(self, local_worker: int, step: int, accumulate: bool = False) -> torch.Tensor:
        x, grad = self.flat_params, self.flat_grad
        own = torch.empty_like(grad) if accumulate else grad
        torch.addmv(self.neg_moments[local_worker], self.hessians[local_worker], x, out=own)
        if accumulate:
            grad.add_(own)
        return 0.5 * (torch.dot(x, own) + torch.dot(x, self.neg_moments[local_worker])) + self.target_power[
            local_worker
        ]

    def metrics(self) -> dict[str, float]:
        gap = self.flat_params.cpu().double() - self.optimum
        return {"linreg/dist_to_opt": float(gap.square().sum())}
