"""sparsetrain: distributed training with sparsified gradients and error feedback.

``sparsetrain compressor=topk ratio=0.01`` composes the Hydra config in ``conf/`` and launches a
torch.distributed elastic job; see the README for the keys and ``sparsetrain.compressors`` for the
compressor interface.
"""

__version__ = "0.1.0"
