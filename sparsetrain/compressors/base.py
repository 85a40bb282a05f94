"""The compressor interface and error feedback, written once for every sparse compressor.

Error feedback (Stich et al. 2018, "Sparsified SGD with Memory"; ALGORITHMS.md): each logical
worker keeps a residual ``e`` (d floats, zero at the start) and every step

    a = g + e          accumulated gradient
    I = select(a)      compressor-specific index set
    s = a[I]           what is sent: values a[I] and indices I
    e = a - s          a with the entries of I zeroed

so ``s + e_new == g + e_old`` holds exactly (both sides are the same float32 tensor ``a``).

Half-precision payloads (``value_dtype=float16|bfloat16``, 6 bytes per entry on the wire instead
of 8; DGC's code sends fp16 values): ``s = decode(encode(a[I]))`` and ``e = a - s``, so the
rounding error stays in the residual and the invariant still holds exactly: ``a[I] - s`` is exact
in float32 (Sterbenz: s is within a factor 2 of a[I]). float16 saturates at +-65504, the residual
keeping the excess (exact up to twice that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sparsetrain.compressors.kernels import Scan
from sparsetrain.compressors.selection import candidate_scan
from sparsetrain.errors import ConfigError, check_number

__all__ = ["SCOPES", "VALUE_DTYPES", "Compressor", "Payload", "ScanningCompressor", "SparseCompressor", "density_to_k"]

SCOPES = ("model", "bucket")
"""What one selection covers (``compressor.scope``): the whole model's gradient, or each bucket of
it (25 MB of whole parameters) as backward fills it (:mod:`sparsetrain.train.gradients`)."""

VALUE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""The precisions a sparse payload's values travel in (``compressor.value_dtype``)."""
FLOAT16_MAX = 65504.0


def density_to_k(ratio: float, dim: int) -> int:
    """Entries kept at density ``ratio`` = k/d: ``k = max(1, floor(ratio * d))`` (ALGORITHMS.md).

    The small tolerance keeps ``ratio * d`` that is an integer in exact arithmetic (0.6 * 100)
    from rounding down by one in floating point.
    """
    return max(1, min(dim, math.floor(ratio * dim + 1e-9)))


@dataclass
class Payload:
    """What one logical worker contributes to the exchange this step.

    ``indices is None`` means a dense gradient (``values`` has d entries); otherwise ``values``
    (float32, or the compressor's ``value_dtype``) and ``indices`` (int64, distinct) have the same
    length, possibly zero.
    """

    values: torch.Tensor
    indices: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return self.values.numel()


class Compressor:
    """One logical worker's compressor.

    Constructed by the trainer as ``cls(dim=..., ratio=..., worker=..., num_workers=..., seed=...,
    device=..., **options)``, once per logical worker, so every worker has its own state. The
    options are the other keyword parameters of ``__init__``: a compressor owns its config keys
    (:mod:`sparsetrain.components`), and checks them in :meth:`check`.

    Class attributes tell the exchange how to move the payloads:
      * ``dense``: the payload is the whole gradient (all-reduce) instead of (values, indices).
      * ``fixed_count``: every call returns exactly ``self.k`` entries, so the exchange can skip
        gathering the counts first.
    """

    dense: ClassVar[bool] = False
    fixed_count: ClassVar[bool] = True
    runtime_arguments: ClassVar[tuple[str, ...]] = ("dim", "ratio", "worker", "num_workers", "seed", "device")
    """Constructor arguments the trainer supplies; every other keyword parameter is a config key."""
    stat_names: ClassVar[tuple[str, ...]] = ()
    """The metrics :meth:`stats` returns, logged every step as their mean over workers."""

    def __init__(
        self,
        dim: int,
        ratio: float,
        *,
        worker: int = 0,
        num_workers: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
        scope: str = "model",
        bucket_mb: float = 25.0,
    ) -> None:
        """``scope`` (a config key of every compressor): ``model`` selects from the whole model's
        gradient once backward has finished, as the papers do; ``bucket`` selects from each bucket
        of it (k in proportion to its size) while backward goes on, so the exchange overlaps it
        (:mod:`sparsetrain.train.gradients`). ``bucket_mb``: a bucket's size then, in MB of float32
        gradient (DDP's ``bucket_cap_mb``, and its default; the first bucket holds at most 1 MB).
        Larger buckets mean fewer exchanges, each of which costs a process CPU time
        (``results/network/collective_overhead.md``), and less of the exchange hidden."""
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if scope not in SCOPES:
            raise ValueError(f"compressor.scope={scope!r} is not allowed: use one of {', '.join(SCOPES)}")
        check_number("compressor.bucket_mb", bucket_mb, 0, low_open=True)
        self.dim = dim
        self.set_ratio(ratio)
        self.worker = worker
        self.num_workers = num_workers
        self.seed = seed
        self.device = torch.device(device)
        self.scope = scope
        self.bucket_mb = bucket_mb

    def set_ratio(self, ratio: float) -> None:
        """Send ``k = density_to_k(ratio, dim)`` entries from now on (the density warm-up,
        :class:`~sparsetrain.schedule.DensitySchedule`); state such as the residual is kept."""
        self.ratio = ratio
        self.k = density_to_k(ratio, self.dim)

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        """Raise a :class:`~sparsetrain.errors.ConfigError` naming ``compressor.<key>`` for an
        option this compressor cannot run with. ``options`` are its keyword options (defaults
        filled in). The CLI calls it before any worker starts; constructors call it too."""

    @classmethod
    def hparams(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options recorded in summary.json and TensorBoard's HParams tab beside the
        compressor's name (none by default)."""
        return {}

    def compress(self, grad: torch.Tensor, step: int) -> Payload:
        """Return what this worker sends for its flat local gradient ``grad`` (d float32)."""
        raise NotImplementedError

    @classmethod
    def takes_gradient_in_residual(cls) -> bool:
        """Whether a caller may add the gradient into ``residual`` itself and then call
        ``compress_accumulated(step)`` instead of ``compress(grad, step)`` (no: no residual)."""
        return False

    def stats(self) -> tuple[float, ...]:
        """The last :meth:`compress` call's own statistics, one value per ``stat_names`` entry."""
        return ()

    def observe(self, aggregate: torch.Tensor) -> None:
        """See this step's averaged gradient ``gbar`` (d floats) after the exchange.

        A no-op by default; RegTop-k uses it to remember the previous aggregate.
        """

    def state_dict(self) -> dict[str, Any]:
        """Tensors and counters that a checkpoint must keep to resume this worker exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            current = getattr(self, name)
            if isinstance(current, torch.Tensor):
                current.copy_(value)
            else:
                setattr(self, name, value)

    def relocate(self, positions: torch.Tensor) -> None:
        """The buffer's entries moved: entry ``i`` now lives at ``positions[i]`` (a permutation).
        DDP reorders a bucket's parameters once, after its first iteration; state kept per entry
        or by index follows them here. Nothing to move by default."""


def relocated(entries: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """A per-entry state after :meth:`Compressor.relocate`'s move: ``entries[i]`` at ``positions[i]``."""
    return torch.empty_like(entries).index_copy_(0, positions, entries)


class SparseCompressor(Compressor):
    """A compressor that sends (values, indices) and keeps the rest as a residual.

    Subclasses implement only :meth:`select`. :meth:`compress` applies error feedback in place on
    the residual buffer: one d-sized state, no d-sized temporary of its own.
    """

    def __init__(self, dim: int, ratio: float, value_dtype: str = "float32", **kwargs: Any) -> None:
        """``value_dtype``: the precision the sent values travel in, ``float32``, ``float16`` or
        ``bfloat16`` (the rounding error stays in the residual: see the module)."""
        SparseCompressor.check({"value_dtype": value_dtype})
        super().__init__(dim, ratio, **kwargs)
        self.value_dtype = VALUE_DTYPES[value_dtype]
        self.residual = torch.zeros(dim, dtype=torch.float32, device=self.device)

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        """``value_dtype`` is one the exchange carries; a subclass that checks its own options
        calls this too."""
        value_dtype = options.get("value_dtype", "float32")
        if value_dtype not in VALUE_DTYPES:
            raise ConfigError(f"compressor.value_dtype={value_dtype!r} is not allowed: use one of "
                              f"{', '.join(VALUE_DTYPES)}")

    def select(self, acc: torch.Tensor, step: int) -> torch.Tensor:
        """Indices (int64, distinct) of the entries of the accumulated gradient ``acc`` to send.

        ``acc`` is the residual buffer itself: read it, never write it.
        """
        raise NotImplementedError

    def compress(self, grad: torch.Tensor, step: int) -> Payload:
        return self.compress_accumulated(step, add=grad)

    @classmethod
    def takes_gradient_in_residual(cls) -> bool:
        """Yes where :meth:`compress` is plain error feedback, this class's ``e += g`` then select.
        A subclass that overrides :meth:`compress` (DGC: momentum comes first) is given the
        gradient through it."""
        return cls.compress is SparseCompressor.compress

    def compress_accumulated(self, step: int, add: torch.Tensor | None = None) -> Payload:
        """:meth:`compress` once this step's gradient is in the residual: ``add``, when given, is
        added first (what :meth:`compress` does); None means the caller has added the gradient
        into :attr:`residual` itself (:meth:`takes_gradient_in_residual`). ``scope=bucket`` adds
        each parameter's gradient there as backward produces it, which saves writing the gradient
        to the flat buffer and reading it back (:class:`~sparsetrain.train.gradients.OverlappedGradients`)."""
        acc = self.residual if add is None else self.residual.add_(add)
        return self.send(acc, self.select(acc, step))

    def send(self, acc: torch.Tensor, indices: torch.Tensor) -> Payload:
        """The payload ``s = a[I]`` (encoded in ``value_dtype``); ``a`` (the residual) becomes
        ``e = a - s``: its other entries, and on I what the encoding rounded away."""
        values = acc[indices]
        if self.value_dtype == torch.float32:
            acc[indices] = 0
            return Payload(values, indices)
        if self.value_dtype == torch.float16:
            values = values.clamp(-FLOAT16_MAX, FLOAT16_MAX)
        encoded = values.to(self.value_dtype)
        acc[indices] = acc[indices] - encoded.float()
        return Payload(encoded, indices)

    def state_dict(self) -> dict[str, Any]:
        return {"residual": self.residual}

    def relocate(self, positions: torch.Tensor) -> None:
        self.residual = relocated(self.residual, positions)


class ScanningCompressor(SparseCompressor):
    """A sparse compressor whose selection starts from one pass over ``a``: the candidates for
    its top k and, with ``scan_moments``, ``sum(a)`` and ``sum(a**2)``
    (:func:`~sparsetrain.compressors.selection.candidate_scan`).

    :meth:`compress` fuses that pass with error feedback's ``a = e + g``, so a step reads ``e``
    and ``g`` once and writes ``e`` once before the O(k) work of the selection itself (and
    :meth:`compress_accumulated` of a residual that already holds ``a`` only reads it).
    Subclasses implement :meth:`select_scanned`; a subclass of theirs that overrides
    :meth:`select` instead (``class Mine(TopK): def select(...)``) gets the plain, unfused
    :meth:`SparseCompressor.compress`, which calls it.
    """

    scan_moments: ClassVar[bool] = False

    def compress_accumulated(self, step: int, add: torch.Tensor | None = None) -> Payload:
        if type(self).select is not ScanningCompressor.select:
            return super().compress_accumulated(step, add)
        scan = candidate_scan(self.residual, self.k, add=add, moments=self.scan_moments)
        return self.send(self.residual, self.select_scanned(self.residual, scan, step))

    def select(self, acc: torch.Tensor, step: int) -> torch.Tensor:
        return self.select_scanned(acc, candidate_scan(acc, self.k, moments=self.scan_moments), step)

    def select_scanned(self, acc: torch.Tensor, scan: Scan, step: int) -> torch.Tensor:
        """:meth:`select`, given ``scan``, a :func:`candidate_scan` of ``acc``."""
        raise NotImplementedError
