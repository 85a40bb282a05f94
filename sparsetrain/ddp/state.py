"""The state of sparsetrain's DDP communication hook, the way ``PowerSGDState`` holds PowerSGD's.

A :class:`SparseState` builds one compressor per gradient bucket, lazily, the first time DDP
hands the hook that bucket: each bucket has its own error-feedback residual and its own memory
(RegTop-k's last step). It counts the iterations, decides which buckets are compressed, and keeps
the traffic as the wire carries it (:mod:`sparsetrain.exchange`). Everything a checkpoint needs
is in :meth:`~SparseState.state_dict`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from sparsetrain import components
from sparsetrain.compressors.base import Compressor, SparseCompressor, density_to_k
from sparsetrain.errors import ConfigError, check_number
from sparsetrain.exchange import ENTRY_BYTES, EXCHANGES, CommStats
from sparsetrain.net.cost import allgather, allreduce
from sparsetrain.validation.schema import check_value, closest

__all__ = ["SparseState", "resolve_compressor", "STATISTICS"]

STATISTICS = ("bytes_sent", "bytes_received", "payload_bytes", "selected", "compressed_buckets", "dense_buckets")
"""Per-iteration counts, summed over buckets; ``stats()`` also gives the cumulative traffic."""


class _Layout(NamedTuple):
    """A bucket's parameters (by name) and their sizes, in bucket order."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]


def _positions(old: _Layout, new: _Layout, device: torch.device) -> torch.Tensor:
    """Where each entry of ``old``'s buffer lies in ``new``'s (the same parameters reordered)."""
    new_offsets = dict(zip(new.names, torch.tensor((0, *new.sizes)).cumsum(0).tolist()))
    return torch.cat([torch.arange(size, device=device) + new_offsets[name] for name, size in zip(old.names, old.sizes)])


def resolve_compressor(compressor: str | type) -> type:
    """A compressor class from a name of ours (``"regtopk"``), a class path or a class."""
    if isinstance(compressor, type):
        cls = compressor
    else:
        target = components.BUILTIN["compressor"].get(compressor, compressor)
        try:
            cls = components.component_class(target)
        except (ImportError, AttributeError, ValueError):
            raise ValueError(
                f"compressor={compressor!r} is neither one of {', '.join(components.BUILTIN['compressor'])} "
                f"nor an importable class path (mypkg.MyCompressor)"
            ) from None
    if not (isinstance(cls, type) and issubclass(cls, Compressor)):
        raise TypeError(f"compressor={compressor!r} is not a subclass of sparsetrain.compressors.Compressor")
    return cls


class SparseState:
    """State of :func:`~sparsetrain.ddp.hooks.sparse_hook`; pass it to ``register_comm_hook``.

    Hyper-parameters:
        compressor: ``"topk"``, ``"gaussiank"``, ``"regtopk"``, ``"randomk"``, ``"dense"``, a class
            path or a Compressor subclass; ``options`` are its keyword options (RegTop-k's ``mu``).
        ratio: density k/d of each bucket (k = max(1, floor(ratio * bucket size))).
        exchange: ``auto`` | ``allgather`` | ``allreduce``, as the CLI's ``exchange=``.
        start_iter: plain all-reduce for the first ``start_iter`` iterations (a dense warm-up).
        min_compression_rate: a bucket whose wire bytes would shrink less than this factor (a small
            one, where k rounds up to 1) is all-reduced as it is, uncompressed.
        seed: seeds the compressors' random choices (Random-k), with the rank.
        process_group: the group the hook communicates in (None: the default group).
        model: the DDP model (or its module), whose parameter names key the compressors' state,
            so that a checkpoint resumes exactly in a new process (``register`` passes it).

    Internal state: ``compressors`` (bucket index -> compressor, built on first use), ``iteration``.
    Statistics: :meth:`stats`.
    """

    def __init__(
        self,
        compressor: str | type = "topk",
        ratio: float = 0.01,
        *,
        exchange: str = "auto",
        start_iter: int = 0,
        min_compression_rate: float = 2.0,
        seed: int = 0,
        process_group: Any = None,
        model: torch.nn.Module | None = None,
        **options: Any,
    ) -> None:
        self.compressor_cls = resolve_compressor(compressor)
        check_number("ratio", ratio, 0, 1, low_open=True)
        check_number("start_iter", start_iter, 0, integer=True)
        check_number("min_compression_rate", min_compression_rate, 0)
        if exchange not in EXCHANGES:
            raise ConfigError(f"exchange={exchange!r} is not allowed: use one of {', '.join(EXCHANGES)}")
        accepted = components.options(self.compressor_cls)
        for key, value in options.items():
            if key not in accepted:
                suggestion = closest(key, list(accepted))
                raise ConfigError(f"{self.compressor_cls.__name__} takes no option {key!r}{suggestion}; it takes "
                                  f"{', '.join(accepted) or 'none'}")
            check_value(key, value, accepted[key].annotation)
        self.options = options
        self.compressor_cls.check({**{k: p.default for k, p in accepted.items()}, **options})
        self.ratio, self.exchange, self.start_iter = ratio, exchange, start_iter
        self.min_compression_rate, self.seed = min_compression_rate, seed
        self.process_group = process_group
        self.rank = dist.get_rank(process_group)
        self.world_size = dist.get_world_size(process_group)
        self.parameter_names = {id(p): name for name, p in (model.named_parameters() if model is not None else ())}
        self.iteration = 0
        self.compressors: dict[int, tuple[_Layout, Compressor]] = {}
        self._saved: list[tuple[_Layout, Compressor]] = []
        self._step = dict.fromkeys(STATISTICS, 0.0)
        self.last_step = dict.fromkeys(STATISTICS, 0.0)
        self.totals = dict.fromkeys(("bytes_sent", "bytes_received", "payload_bytes"), 0.0)

    def compressed(self, size: int) -> bool:
        """Whether a bucket of ``size`` entries is compressed this iteration."""
        if self.iteration < self.start_iter or self.compressor_cls.dense:
            return False
        k = density_to_k(self.ratio, size)
        sparse = min(allgather(ENTRY_BYTES * k, self.world_size).wire_bytes, allreduce(4 * size, self.world_size).wire_bytes)
        return sparse == 0 or allreduce(4 * size, self.world_size).wire_bytes / sparse >= self.min_compression_rate

    def compressor_for(self, index: int, parameters: list[torch.Tensor], device: torch.device) -> Compressor:
        """Bucket ``index``'s compressor, for its parameters' layout.

        DDP builds its final buckets after the first iteration, in the order gradients became
        ready (and a new DDP instance, resuming, starts from its initial ones again). A bucket
        whose parameters a known compressor (live, or from :meth:`load_state_dict`) holds in
        another order gets that compressor with its state relocated
        (:meth:`~sparsetrain.compressors.base.Compressor.relocate`): nothing is lost. A bucket
        regrouping parameters of several gets a new compressor that takes over each parameter's
        residual (error feedback loses nothing; other memory, RegTop-k's last step, starts afresh).
        """
        layout = _Layout(tuple(self._name(p) for p in parameters), tuple(p.numel() for p in parameters))
        known = self.compressors.get(index)
        if known is not None and known[0] == layout:
            return known[1]
        candidates = [*self.compressors.values(), *self._saved]
        same = next(((old, c) for old, c in candidates if sorted(old.names) == sorted(layout.names)), None)
        if same is None:
            compressor = self._build(layout, device)
            self._carry_residuals(layout, compressor, candidates)
        else:
            old_layout, compressor = same
            if old_layout != layout:
                compressor.relocate(_positions(old_layout, layout, device))
            self._saved = [(old, c) for old, c in self._saved if c is not compressor]
        self.compressors[index] = (layout, compressor)
        return compressor

    def _build(self, layout: "_Layout", device: torch.device) -> Compressor:
        return self.compressor_cls(
            dim=sum(layout.sizes), ratio=self.ratio, worker=self.rank, num_workers=self.world_size, seed=self.seed,
            device=device, **self.options,
        )

    def _name(self, parameter: torch.Tensor) -> str:
        return self.parameter_names.get(id(parameter), f"id{id(parameter)}")

    @staticmethod
    def _carry_residuals(layout: "_Layout", compressor: Compressor, candidates: list) -> None:
        """Copy each parameter's residual from whichever known compressor holds it."""
        if not isinstance(compressor, SparseCompressor):
            return
        found: dict[str, torch.Tensor] = {}
        for old_layout, old in candidates:
            if isinstance(old, SparseCompressor):
                found.update(zip(old_layout.names, old.residual.split(list(old_layout.sizes))))
        for name, part in zip(layout.names, compressor.residual.split(list(layout.sizes))):
            if name in found:
                part.copy_(found[name])

    def record(self, stats: CommStats, compressed: bool) -> None:
        """Add one bucket's traffic to this iteration's."""
        for key, value in (("bytes_sent", stats.bytes_sent), ("bytes_received", stats.bytes_received),
                           ("payload_bytes", stats.payload_bytes), ("selected", stats.selected)):
            self._step[key] += value
            if key in self.totals:
                self.totals[key] += value
        self._step["compressed_buckets" if compressed else "dense_buckets"] += 1

    def end_iteration(self) -> None:
        """After the iteration's last bucket (``bucket.is_last()``)."""
        self.last_step, self._step = self._step, dict.fromkeys(STATISTICS, 0.0)
        self.iteration += 1

    def stats(self) -> dict[str, float]:
        """The last completed iteration's traffic and selected entries (summed over buckets, per
        worker) and the cumulative traffic, keyed for TensorBoard: ``comm/bytes_sent``, ...,
        ``comm/bytes_sent_total``. Identical on every rank."""
        return {
            **{f"comm/{key}": value for key, value in self.last_step.items()},
            **{f"comm/{key}_total": value for key, value in self.totals.items()},
            "comm/iteration": float(self.iteration),
        }

    def state_dict(self) -> dict[str, Any]:
        """The compressors' states (residuals, RegTop-k's memory) with their buckets' layouts, the
        iteration and the cumulative traffic: a resumed run continues exactly."""
        return {
            "iteration": self.iteration,
            "totals": dict(self.totals),
            "buckets": [
                {"names": list(layout.names), "sizes": list(layout.sizes), "state": compressor.state_dict()}
                for layout, compressor in self.compressors.values()
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; each saved compressor is taken by the first bucket that holds its parameters."""
        self.iteration = state["iteration"]
        self.totals = dict(state["totals"])
        self.compressors, self._saved = {}, []
        for saved in state["buckets"]:
            layout = _Layout(tuple(saved["names"]), tuple(saved["sizes"]))
            compressor = self._build(layout, saved["state"]["residual"].device if "residual" in saved["state"]
                                     else torch.device("cpu"))
            compressor.load_state_dict(saved["state"])
            self._saved.append((layout, compressor))
