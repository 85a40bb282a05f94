"""Deep Gradient Compression (Lin, Han, Mao, Wang, Dally 2018, "Deep Gradient Compression:
Reducing the Communication Bandwidth for Distributed Training", ICLR), the baseline that
sparsification papers compare against.

Each worker k, every step t, with its local gradient G:

    G <- G * min(1, c / ||G||),  c = clip_norm * N^(-1/2)   local gradient clipping (Sec. 3.2)
    u <- m u + G                                            momentum correction (Sec. 3.2):
    v <- v + u                                              velocity accumulated, not the gradient
    thr: the ceil(rho s)-th largest |v| of s sampled entries (s = sample_ratio * d, at least
         ceil(2 / rho), with replacement): the threshold from a 0.1%-1% sample (the paper's system section)
    I = {j : |v_j| >= thr}; while |I| < 0.8 k (at most 10 times): thr *= 0.8
    if |I| > k: I = the k largest |v_j| of I                hierarchical re-selection (ibid.)
    send v[I]; v[I] <- 0, u[I] <- 0                         momentum factor masking (Sec. 3.3)

and the update is ``w <- w - lr * mean over workers of v[I]``: the momentum was applied on each
worker, so the optimizer's must be off (``train.momentum=0``; the CLI refuses anything else,
:attr:`DGC.applies_momentum`). With ``nesterov``, the authors' Nesterov form: ``u <- m (u + G)``,
``v <- v + u + G``. The velocity is the error-feedback residual of
:class:`~sparsetrain.compressors.base.SparseCompressor`, so half-precision values
(``value_dtype=float16``, as DGC's own code sends) leave their rounding in it.

Thresholds and the 0.8 back-off are those of the authors' code (synxlin/deep-gradient-compression,
``dgc/compression.py``, ``dgc/memory.py``); their final ``indices[:k]`` truncation, which keeps
the lowest indices rather than the largest values, is replaced by the paper's hierarchical top-k.
The samples are drawn by (seed, worker, step), so runs are reproducible. ``clip_norm`` is off
by default, as in the authors' CIFAR and ImageNet configurations; the paper clips for RNNs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.base import Payload, SparseCompressor, relocated
from sparsetrain.compressors.selection import topk_magnitude_indices
from sparsetrain.errors import check_number
from sparsetrain.seeding import step_generator

__all__ = ["DGC"]

BACK_OFF, BACK_OFF_STEPS = 0.8, 10


class DGC(SparseCompressor):
    fixed_count = False
    applies_momentum: ClassVar[bool] = True
    """The optimizer's momentum must be off: this compressor applies ``momentum`` itself."""

    def __init__(
        self,
        dim: int,
        ratio: float,
        momentum: float = 0.9,
        nesterov: bool = False,
        momentum_masking: bool = True,
        clip_norm: float | None = None,
        sample_ratio: float = 0.01,
        **kwargs: Any,
    ) -> None:
        """``momentum`` (m, applied per worker: momentum correction) with ``nesterov``;
        ``momentum_masking``: zero u where v was sent; ``clip_norm``: local gradient clipping at
        this norm times N^(-1/2) (null: off); ``sample_ratio``: the share of entries sampled
        for the threshold (the paper: 0.001 to 0.01)."""
        self.check({"momentum": momentum, "clip_norm": clip_norm, "sample_ratio": sample_ratio})
        super().__init__(dim, ratio, **kwargs)
        self.momentum, self.nesterov, self.momentum_masking = float(momentum), nesterov, momentum_masking
        self.clip_norm, self.sample_ratio = clip_norm, sample_ratio
        self.momentum_buffer = torch.zeros(dim, dtype=torch.float32, device=self.device)

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        super().check(options)
        check_number("compressor.momentum", options["momentum"], 0, 1)
        check_number("compressor.clip_norm", options["clip_norm"], 0, low_open=True, nullable=True)
        check_number("compressor.sample_ratio", options["sample_ratio"], 0, 1, low_open=True)

    @classmethod
    def hparams(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {"momentum": options["momentum"]}

    def samples(self, step: int) -> torch.Tensor:
        """The entries whose magnitudes set this step's threshold: uniform, with replacement."""
        count = min(self.dim, max(math.ceil(self.sample_ratio * self.dim), math.ceil(2 / self.ratio)))
        generator = step_generator(self.seed, self.worker, step, self.device)
        return torch.randint(0, self.dim, (count,), generator=generator, device=self.device)

    def compress(self, grad: torch.Tensor, step: int) -> Payload:
        if self.clip_norm is not None:
            limit = self.clip_norm / math.sqrt(self.num_workers)
            scale = limit / (float(grad.norm()) + 1e-6)
            if scale < 1:
                grad = grad * scale
        u, v = self.momentum_buffer, self.residual
        if self.nesterov:
            u.add_(grad).mul_(self.momentum)
            v.add_(u).add_(grad)
        else:
            u.mul_(self.momentum).add_(grad)
            v.add_(u)
        indices = self.select(v, step)
        if self.momentum_masking:
            u[indices] = 0
        return self.send(v, indices)

    def select(self, acc: torch.Tensor, step: int) -> torch.Tensor:
        """Each threshold is tried in one pass over ``acc``
        (:func:`~sparsetrain.compressors.kernels.scan`)."""
        sampled = acc[self.samples(step)].abs()
        threshold = sampled.topk(math.ceil(self.ratio * sampled.numel())).values.min()
        cap = 4 * self.k
        for attempt in range(BACK_OFF_STEPS + 1):
            passed = kernels.scan(acc, float(threshold), cap, inclusive=True)
            if passed.count >= BACK_OFF * self.k or attempt == BACK_OFF_STEPS:
                break
            threshold = threshold * BACK_OFF
        if passed.indices is None:
            passed = kernels.scan(acc, passed.threshold, passed.count, inclusive=True)
        indices = passed.indices
        if indices.numel() > self.k:  # hierarchical: the k largest of those selected
            indices = indices[topk_magnitude_indices(passed.values, self.k)]
        return indices

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "momentum_buffer": self.momentum_buffer}

    def relocate(self, positions: torch.Tensor) -> None:
        super().relocate(positions)
        self.momentum_buffer = relocated(self.momentum_buffer, positions)
