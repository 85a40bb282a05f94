"""DDP communication hooks: sparsetrain's compressors with error feedback, and the dense reference.

    ddp_model.register_comm_hook(SparseState(compressor="topk", ratio=0.01), sparse_hook)

DDP hands a hook each gradient bucket as soon as backward has filled it; the collective the hook
starts runs while backward goes on with the next buckets (torch's DDP communication hooks;
``powerSGD_hook.py`` is the model). :func:`sparse_hook` does what the CLI does with the whole
model, for one bucket: error feedback and selection by the bucket's own compressor, then the
exchange (:class:`~sparsetrain.exchange.SparseExchange`: all-gather or dense sum, variable counts
gathered first, so Gaussian-k's empty payloads never hang), then the compressor sees the
aggregate. :func:`dense_hook` is DDP's own all-reduce, the reference the sparse hook is tested
against.

Buckets of half-precision gradients (a model in fp16 or bf16) are compressed from a float32 copy:
residuals stay float32 and the payload's values travel as float32; the aggregate is handed back in
the bucket's dtype and shape, as DDP expects.

Every bucket's compression time and the interval its collective is in flight go to the state's
timer (:class:`~sparsetrain.timing.ExchangeTimer`: ``state.timer.finish()`` after backward).
"""

# No `from __future__ import annotations`: DDP checks a hook's annotations as objects
# (dist.GradBucket, torch.futures.Future[torch.Tensor]), not strings.
import time

import torch
import torch.distributed as dist
from torch.futures import Future

from sparsetrain.ddp.state import SparseState
from sparsetrain.exchange import SparseExchange, mean_all_reduce_async
from sparsetrain.layout import WorkerLayout

__all__ = ["dense_hook", "sparse_hook"]


def _all_reduce_bucket(state: SparseState, bucket: dist.GradBucket, divide_first: bool) -> Future:
    """The bucket summed over processes and divided by the number of workers: first, as DDP does
    (against fp16 overflow), or after, as sparsetrain's exchange does (the same float32 result as
    its flat all-reduce, and the division leaves backward's thread: it runs as the sum arrives)."""
    started = time.perf_counter()
    summed, stats = mean_all_reduce_async(bucket.buffer(), state.num_workers, state.world_size,
                                          state.process_group, divide_first)
    state.record(stats, compressed=False)
    return state.timer.timed(started, started, summed)


def _finish(state: SparseState, bucket: dist.GradBucket, future: Future) -> Future:
    if bucket.is_last():
        state.end_iteration()
    return future


def dense_hook(state: SparseState, bucket: dist.GradBucket) -> Future[torch.Tensor]:
    """The plain all-reduce, bit for bit what DDP does without a hook, with its traffic counted."""
    return _finish(state, bucket, _all_reduce_bucket(state, bucket, divide_first=True))


def sparse_hook(state: SparseState, bucket: dist.GradBucket) -> Future[torch.Tensor]:
    """Compress this bucket with its own compressor (error feedback inside), exchange, average."""
    buffer = bucket.buffer()
    if not state.compressed(buffer.numel()):
        divide_first = buffer.dtype != torch.float32
        return _finish(state, bucket, _all_reduce_bucket(state, bucket, divide_first))
    started = time.perf_counter()
    compressor = state.compressor_for(bucket.index(), bucket.parameters(), buffer.device)
    grad = buffer if buffer.dtype == torch.float32 else buffer.float()
    exchange = SparseExchange(
        compressor.dim, compressor.k, WorkerLayout(state.rank, state.world_size, 1), buffer.device,
        fixed_count=type(compressor).fixed_count, mode=state.exchange, group=state.process_group,
        value_dtype=getattr(compressor, "value_dtype", torch.float32),
    )
    exchange.put(compressor.compress(grad, state.iteration + 1))
    compressed_at = time.perf_counter()
    done, stats = exchange.reduce_async(grad)  # the gradient is read: its buffer takes the aggregate
    done = state.timer.timed(started, compressed_at, done)
    state.record(stats, compressed=True)

    def aggregate(future: Future) -> torch.Tensor:
        gbar = future.value()
        compressor.observe(gbar)
        return gbar if gbar is buffer else buffer.copy_(gbar)

    return _finish(state, bucket, done.then(aggregate))
