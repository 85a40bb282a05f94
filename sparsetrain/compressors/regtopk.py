"""RegTop-k: Top-k regularised by how the last aggregation treated each sent entry.

Bereyhi, Liang, Boudreau, Afana (2025), "Regularized Top-k: A Bayesian Framework for Gradient
Sparsification", Alg. 1 (ALGORITHMS.md). With omega = 1/P, for the entries this worker sent at t-1

    1 + Delta_j = gbar_prev[j] / (omega * s_prev[j]) = P * gbar_prev[j] / s_prev[j]

(the ratio of last step's aggregate to the worker's own contribution), and ``Delta_j = Q`` for every
other entry. The score is ``|tanh((1 + Delta_j) / mu)| * |a_j|`` and the k largest scores are sent
(values of ``a``, not of the score). An entry the other workers cancelled gets weight ~0 and is
demoted; an entry they agreed with keeps weight ~1. The first step is exactly Top-k.

Cost over Top-k is O(k): every entry not sent last step has the same weight
``w_Q = |tanh((1 + Q) / mu)|`` (1 in float32 for Q = 1e8), and scaling all scores by a constant does
not change the ranking, so only the k previously sent scores are multiplied, by ``w_j / w_Q``
(:func:`~sparsetrain.compressors.selection.topk_magnitude_indices`' ``scaled``), on the candidates of
the same fused error-feedback pass Top-k uses.
Guard: a previously sent value of exactly 0 carries no information about cancellation; such an
entry is treated as not sent (``Delta_j = Q``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sparsetrain.compressors.base import Payload, ScanningCompressor
from sparsetrain.compressors.kernels import Scan
from sparsetrain.compressors.selection import topk_magnitude_indices
from sparsetrain.errors import check_number

__all__ = ["RegTopK"]


class RegTopK(ScanningCompressor):
    def __init__(self, dim: int, ratio: float, mu: float = 4.0, q: float = 1e8, **kwargs) -> None:
        """``mu``: the temperature (> 0; the paper uses 4 for linear regression, 5 for ResNet-18);
        ``q``: Delta of the entries not sent last step (> 0; 1e8 in the paper)."""
        self.check({"mu": mu, "q": q})
        super().__init__(dim, ratio, **kwargs)
        self.mu = float(mu)
        self.q = float(q)
        self.unsent_weight = abs(math.tanh((1 + self.q) / self.mu))
        self.prev_indices = torch.empty(0, dtype=torch.long, device=self.device)
        self.prev_sent = torch.empty(0, dtype=torch.float32, device=self.device)
        self.prev_aggregate = torch.empty(0, dtype=torch.float32, device=self.device)

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        super().check(options)
        check_number("compressor.mu", options["mu"], 0, low_open=True)
        check_number("compressor.q", options["q"], 0, low_open=True)

    @classmethod
    def hparams(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {"mu": options["mu"]}

    def weights(self) -> torch.Tensor:
        """``|tanh((1 + Delta_j) / mu)|`` for the entries sent last step (``prev_indices``)."""
        sent = self.prev_sent
        agreement = self.num_workers * self.prev_aggregate / torch.where(sent == 0, 1.0, sent)
        agreement = torch.where(sent == 0, 1 + self.q, agreement)
        return torch.tanh(agreement / self.mu).abs()

    def select_scanned(self, acc: torch.Tensor, scan: Scan, step: int) -> torch.Tensor:
        factors = self.weights() / self.unsent_weight
        return topk_magnitude_indices(acc, self.k, scaled=(self.prev_indices, factors), scan=scan)

    def compress_accumulated(self, step: int, add: torch.Tensor | None = None) -> Payload:
        payload = super().compress_accumulated(step, add)
        self.prev_indices, self.prev_sent = payload.indices, payload.values.float()
        return payload

    def observe(self, aggregate: torch.Tensor) -> None:
        self.prev_aggregate = aggregate[self.prev_indices]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "prev_indices": self.prev_indices,
            "prev_sent": self.prev_sent,
            "prev_aggregate": self.prev_aggregate,
        }

    def relocate(self, positions: torch.Tensor) -> None:
        super().relocate(positions)
        self.prev_indices = positions[self.prev_indices]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.residual.copy_(state["residual"])
        for name in ("prev_indices", "prev_sent", "prev_aggregate"):
            setattr(self, name, state[name].to(self.device).clone())
