"""sparsetrain's compressors in any PyTorch DDP script: communication hooks with error feedback.

One line, after wrapping the model in ``DistributedDataParallel``::

    state = sparsetrain.ddp.register(ddp_model, compressor="regtopk", ratio=0.001, mu=5)

or the canonical form, the way PowerSGD's hook is used::

    state = sparsetrain.ddp.SparseState(compressor="topk", ratio=0.01, start_iter=10)
    ddp_model.register_comm_hook(state, sparsetrain.ddp.sparse_hook)

``state.stats()`` gives the traffic (for TensorBoard), ``state.state_dict()`` what a checkpoint must
keep. Each DDP bucket gets its own compressor, so k is ``ratio`` of each bucket and the selection
is per bucket; ``DistributedDataParallel(model, bucket_cap_mb=<more than the model's size in MB>)``
puts the whole model in one bucket, the papers' flat selection (see the README).
"""

from __future__ import annotations

from typing import Any

from torch.nn.parallel import DistributedDataParallel

from sparsetrain.ddp.hooks import dense_hook, sparse_hook
from sparsetrain.ddp.state import SparseState

__all__ = ["SparseState", "dense_hook", "register", "sparse_hook"]


def register(ddp_model: DistributedDataParallel, compressor: str | type = "topk", ratio: float = 0.01,
             **options: Any) -> SparseState:
    """Register :func:`sparse_hook` (:func:`dense_hook` for ``compressor="dense"``) on
    ``ddp_model`` with a new :class:`SparseState`; ``options`` are the state's keyword arguments
    (``start_iter``, ``exchange``, ...) and the compressor's own (``mu``). Returns the state."""
    if not isinstance(ddp_model, DistributedDataParallel):
        raise TypeError(
            f"ddp_model is a {type(ddp_model).__name__}, not a DistributedDataParallel: wrap it first, "
            f"DistributedDataParallel(model)"
        )
    state = SparseState(compressor, ratio, model=ddp_model, **options)
    ddp_model.register_comm_hook(state, dense_hook if state.compressor_cls.dense else sparse_hook)
    return state
