"""Independent numpy implementations of ALGORITHMS.md, for the compressor tests.

Written from the formulas, not from sparsetrain's code: float64 where the algorithm does
arithmetic, a stable lexicographic sort for "the k largest, ties to the lowest index".
"""

from __future__ import annotations

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


def gaussiank_select(acc: np.ndarray, k: int, z: float, refine: bool) -> np.ndarray:
    magnitude = np.abs(acc.astype(np.float64))
    threshold = acc.astype(np.float64).mean() + z * acc.astype(np.float64).std()
    for _ in range(3):
        chosen = np.flatnonzero(magnitude > threshold)
        if chosen.size < 2 * k / 3:
            threshold *= 0.5
        elif chosen.size > 4 * k / 3:
            threshold *= 1.5
        else:
            return chosen
    if not refine:
        return chosen
    return topk_set(magnitude, k)


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
