"""Independent numpy implementations of ALGORITHMS.md, for the compressor tests.

Written from the formulas, not from sparsetrain's code: float64 where the algorithm does
arithmetic, a stable lexicographic sort for "the k largest, ties to the lowest index".
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def topk_set(scores: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((np.arange(scores.size), -scores))
    return np.sort(order[:k])


class Worker:
    """One worker's error-feedback state: a = g + e; s = a[I]; e = a with I zeroed."""

    def __init__(self, dim: int):
        self.residual = np.zeros(dim, np.float32)

    def step(self, grad: np.ndarray, select) -> tuple[np.ndarray, np.ndarray]:
        acc = (grad + self.residual).astype(np.float32)
        indices = np.sort(select(acc))
        values = acc[indices].copy()
        self.residual = acc.copy()
        self.residual[indices] = 0
        return indices, values


def aggregate(dim: int, payloads: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    total = np.zeros(dim, np.float64)
    for indices, values in payloads:
        np.add.at(total, indices, values)
    return total / len(payloads)


def gaussiank_threshold(acc: np.ndarray, ratio: float) -> float:
    """The first threshold as the Gaussian-k authors compute it (hclhkbu/GaussianK-SGD,
    ``compression.py`` and ``utils.gen_threshold_from_normal_distribution``): ``torch.mean`` and
    the Bessel-corrected ``torch.std`` are float32 values, made Python floats; then
    ``mu - ppf((1 - p) / 2) * sigma`` with ``p = 1 - ratio``, in float64. numpy's float64 mean and
    std rounded to float32 stand in for torch's float32 reductions."""
    a = acc.astype(np.float64)
    mean, std = float(np.float32(a.mean())), float(np.float32(a.std(ddof=1)))
    p_value = 1 - ratio
    return mean - NormalDist().inv_cdf((1 - p_value) / 2) * std


def gaussiank_loop(acc: np.ndarray, k: int, ratio: float, exact_k: bool) -> tuple[np.ndarray, int, bool]:
    """The paper's 3-step loop on |a| > thr (a float32 tensor against a Python float: compared in
    float32), the threshold scaled in float64; returns the indices sent, the evaluations and
    whether the count landed in [2k/3, 4k/3]. ``exact_k``: the exact top k when it did not."""
    magnitude = np.abs(acc.astype(np.float32))
    threshold = gaussiank_threshold(acc, ratio)
    for evaluation in range(1, 4):
        chosen = np.flatnonzero(magnitude > np.float32(threshold))
        if chosen.size < 2 * k / 3:
            threshold *= 0.5
        elif chosen.size > 4 * k / 3:
            threshold *= 1.5
        else:
            return chosen, evaluation, True
    return (topk_set(magnitude.astype(np.float64), k) if exact_k else chosen), 3, False


def gaussiank_select(acc: np.ndarray, k: int, ratio: float, exact_k: bool) -> np.ndarray:
    return gaussiank_loop(acc, k, ratio, exact_k)[0]


class RegTopKReference(Worker):
    """Delta_j = (gbar_prev_j - omega s_prev_j) / (omega s_prev_j) on last step's sent entries, Q else."""

    def __init__(self, dim: int, k: int, workers: int, mu: float, q: float = 1e8):
        super().__init__(dim)
        self.k, self.omega, self.mu, self.q = k, 1.0 / workers, mu, q
        self.sent: dict[int, float] = {}
        self.prev_aggregate = np.zeros(dim)

    def select(self, acc: np.ndarray) -> np.ndarray:
        delta = np.full(acc.size, self.q)
        for j, s in self.sent.items():
            if s != 0:
                delta[j] = (self.prev_aggregate[j] - self.omega * s) / (self.omega * s)
        score = np.abs(np.tanh((1 + delta) / self.mu)) * np.abs(acc.astype(np.float64))
        return topk_set(score, self.k)

    def step(self, grad, select=None):
        indices, values = super().step(grad, self.select)
        self.sent = dict(zip(indices.tolist(), values.astype(np.float64).tolist()))
        return indices, values


class DGCReference(Worker):
    """Lin et al. 2018 as ALGORITHMS-style pseudo-code: clipping at c / sqrt(N), u = m u + G,
    v = v + u, a threshold from the sampled |v| (their ceil(rho s)-th largest), x0.8 while fewer
    than 0.8 k pass (at most 10 times), the k largest of those passing when more than k, then v
    and u zeroed where sent. The sample positions are an input (the compressor's seeded draw)."""

    def __init__(self, dim: int, k: int, ratio: float, workers: int, momentum: float, clip_norm: float | None):
        super().__init__(dim)
        self.k, self.ratio, self.workers, self.m, self.clip = k, ratio, workers, np.float32(momentum), clip_norm
        self.u = np.zeros(dim, np.float32)

    def step(self, grad: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = grad.astype(np.float32)
        if self.clip is not None:
            scale = (self.clip / np.sqrt(self.workers)) / (np.linalg.norm(g.astype(np.float64)) + 1e-6)
            if scale < 1:
                g = (g * np.float32(scale)).astype(np.float32)
        self.u = (self.u * self.m + g).astype(np.float32)
        acc = (self.residual + self.u).astype(np.float32)
        magnitude = np.abs(acc)
        sampled = np.sort(magnitude[samples])[::-1]
        threshold = sampled[int(np.ceil(self.ratio * samples.size)) - 1]
        chosen = np.flatnonzero(magnitude >= threshold)
        for _ in range(10):
            if chosen.size >= 0.8 * self.k:
                break
            threshold = np.float32(threshold * np.float32(0.8))
            chosen = np.flatnonzero(magnitude >= threshold)
        if chosen.size > self.k:
            chosen = np.sort(chosen[topk_set(magnitude[chosen].astype(np.float64), self.k)])
        values = acc[chosen].copy()
        self.residual = acc.copy()
        self.residual[chosen] = 0
        self.u[chosen] = 0
        return chosen, values
