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
from sparsetrain.compressors.base import VALUE_DTYPES, Compressor, SparseCompressor, density_to_k
from sparsetrain.errors import ConfigError, check_number, check_value, closest
from sparsetrain.exchange import EXCHANGES, CommStats, row_bytes
from sparsetrain.net.cost import allgather, allreduce
from sparsetrain.timing import ExchangeTimer

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
        compressor: ``"topk"``, ``"gaussiank"``, ``"regtopk"``, ``"randomk"``, ``"dgc"`` (its
            momentum replaces the optimizer's), ``"dense"``, a class path or a Compressor
            subclass; ``options`` are its keyword options (RegTop-k's ``mu``).
        ratio: density k/d of each bucket (k = max(1, floor(ratio * bucket size))).
        exchange: ``auto`` | ``allgather`` | ``allreduce``, as the CLI's ``exchange=``.
        start_iter: plain all-reduce for the first ``start_iter`` iterations (a dense warm-up).
        min_compression_rate: a bucket whose wire bytes would shrink less than this factor (a small
            one, where k rounds up to 1) is all-reduced as it is, uncompressed.
        seed: seeds the compressors' random choices (Random-k), with the rank.
        process_group: the group the hook communicates in (None: the default group).
        num_workers: the logical workers the aggregate averages over, when each process's buckets
            already hold the sum of several (sparsetrain's trainer, uncompressed buckets only);
            None: one per process.
        model: the DDP model (or its module), whose parameter names key the compressors' state,
            so that a checkpoint resumes exactly in a new process (``register`` passes it).

    Internal state: ``compressors`` (bucket index -> compressor, built on first use), ``iteration``.
    Statistics: :meth:`stats`, :attr:`last_comm` (the iteration's collectives), ``timer``
    (:class:`~sparsetrain.timing.ExchangeTimer`: compression and exchange times).
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
        num_workers: int | None = None,
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
        settings = {**{k: p.default for k, p in accepted.items()}, **options}
        self.compressor_cls.check(settings)
        self.value_bytes = VALUE_DTYPES[settings.get("value_dtype", "float32")].itemsize
        self.ratio, self.exchange, self.start_iter = ratio, exchange, start_iter
        self.min_compression_rate, self.seed = min_compression_rate, seed
        self.process_group = process_group
        self.rank = dist.get_rank(process_group)
        self.world_size = dist.get_world_size(process_group)
        self.num_workers = num_workers or self.world_size
        if self.num_workers != self.world_size and not self.compressor_cls.dense:
            raise ConfigError(f"{self.compressor_cls.__name__} compresses each process's buckets as one worker's: "
                              f"num_workers={num_workers} must equal the group's {self.world_size} processes")
        self.parameter_names = {id(p): name for name, p in (model.named_parameters() if model is not None else ())}
        self.iteration = 0
        self.compressors: dict[int, tuple[_Layout, Compressor]] = {}
        self._owners: dict[str, tuple[_Layout, Compressor]] = {}
        self._step = dict.fromkeys(STATISTICS, 0.0)
        self.last_step = dict.fromkeys(STATISTICS, 0.0)
        self.totals = dict.fromkeys(("bytes_sent", "bytes_received", "payload_bytes"), 0.0)
        self._collectives: list[CommStats] = []
        self.last_comm = CommStats((), 0.0, 0.0, False)
        self.timer = ExchangeTimer()

    def set_ratio(self, ratio: float) -> None:
        """Every bucket's density from the next iteration on (a density warm-up)."""
        check_number("ratio", ratio, 0, 1, low_open=True)
        self.ratio = ratio
        for compressor in self.live_compressors():
            compressor.set_ratio(ratio)

    def compressed(self, size: int) -> bool:
        """Whether a bucket of ``size`` entries is compressed this iteration."""
        if self.iteration < self.start_iter or self.compressor_cls.dense:
            return False
        k = density_to_k(self.ratio, size)
        dense = allreduce(4 * size, self.world_size).wire_bytes
        sparse = min(allgather(row_bytes(k, self.value_bytes), self.world_size).wire_bytes, dense)
        return sparse == 0 or dense / sparse >= self.min_compression_rate

    def compressor_for(self, index: int, parameters: list[torch.Tensor], device: torch.device) -> Compressor:
        """Bucket ``index``'s compressor, for its parameters' layout.

        DDP builds its final buckets after the first iteration, in the order gradients became
        ready (and a new DDP instance, resuming, starts from its initial ones again). Each
        parameter's state has one owner, the compressor that last compressed it (or one restored
        by :meth:`load_state_dict`). A bucket whose parameters one owner holds, in whatever order,
        gets that compressor with its state relocated
        (:meth:`~sparsetrain.compressors.base.Compressor.relocate`): nothing is lost. A bucket
        regrouping parameters of several owners (a split or a merge) gets a new compressor that
        takes over each parameter's residual (error feedback loses nothing; other memory, RegTop-k's
        last step, starts afresh).
        """
        layout = _Layout(tuple(self._name(p) for p in parameters), tuple(p.numel() for p in parameters))
        known = self.compressors.get(index)
        if known is not None and known[0] == layout:
            return known[1]
        owners = {id(owner[1]): owner for owner in map(self._owners.get, layout.names) if owner is not None}
        old_layout, compressor = next(iter(owners.values())) if len(owners) == 1 else (None, None)
        if compressor is not None and sorted(old_layout.names) == sorted(layout.names):
            if old_layout != layout:
                compressor.relocate(_positions(old_layout, layout, device))
        else:
            compressor = self._build(layout, device)
            self._carry_residuals(layout, compressor)
        self.compressors[index] = (layout, compressor)
        self._owners.update(dict.fromkeys(layout.names, (layout, compressor)))
        return compressor

    def live_compressors(self) -> list[Compressor]:
        """Every compressor that owns some parameter's state, once each."""
        return list({id(c): c for _, c in self._owners.values()}.values())

    def _build(self, layout: "_Layout", device: torch.device) -> Compressor:
        return self.compressor_cls(
            dim=sum(layout.sizes), ratio=self.ratio, worker=self.rank, num_workers=self.world_size, seed=self.seed,
            device=device, **self.options,
        )

    def _name(self, parameter: torch.Tensor) -> str:
        return self.parameter_names.get(id(parameter), f"id{id(parameter)}")

    def _carry_residuals(self, layout: "_Layout", compressor: Compressor) -> None:
        """Copy each parameter's residual from the compressor that owns it."""
        if not isinstance(compressor, SparseCompressor):
            return
        for name, part in zip(layout.names, compressor.residual.split(list(layout.sizes))):
            if name in self._owners:
                old_layout, old = self._owners[name]
                if isinstance(old, SparseCompressor):
                    part.copy_(dict(zip(old_layout.names, old.residual.split(list(old_layout.sizes))))[name])

    def record(self, stats: CommStats, compressed: bool) -> None:
        """Add one bucket's traffic to this iteration's."""
        self._collectives.append(stats)
        for key, value in (("bytes_sent", stats.bytes_sent), ("bytes_received", stats.bytes_received),
                           ("payload_bytes", stats.payload_bytes), ("selected", stats.selected)):
            self._step[key] += value
            if key in self.totals:
                self.totals[key] += value
        self._step["compressed_buckets" if compressed else "dense_buckets"] += 1

    def end_iteration(self) -> None:
        """After the iteration's last bucket (``bucket.is_last()``)."""
        self.last_step, self._step = self._step, dict.fromkeys(STATISTICS, 0.0)
        self.last_comm, self._collectives = CommStats.combined(self._collectives), []
        self.iteration += 1
        self.timer.iteration_ended()

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
        owned = {id(c): (layout, c) for layout, c in self._owners.values()}
        return {
            "iteration": self.iteration,
            "totals": dict(self.totals),
            "buckets": [
                {"names": list(layout.names), "sizes": list(layout.sizes), "state": compressor.state_dict()}
                for layout, compressor in owned.values()
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; each saved compressor owns its parameters again until a bucket takes them."""
        self.iteration = state["iteration"]
        self.totals = dict(state["totals"])
        self.compressors, self._owners = {}, {}
        for saved in state["buckets"]:
            layout = _Layout(tuple(saved["names"]), tuple(saved["sizes"]))
            compressor = self._build(layout, saved["state"]["residual"].device if "residual" in saved["state"]
                                     else torch.device("cpu"))
            compressor.load_state_dict(saved["state"])
            self._owners.update(dict.fromkeys(layout.names, (layout, compressor)))
