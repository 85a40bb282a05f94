"""Gradient compressors: what one logical worker sends each step.

A compressor is chosen by config (``compressor=topk``) or by class path
(``compressor._target_=mypkg.MyCompressor``). To add one, subclass
:class:`~sparsetrain.compressors.base.SparseCompressor` and implement ``select``; error feedback,
the exchange and the byte accounting come with it. A selector that needs one pass over the whole
accumulated gradient (candidates above a threshold, moments) can subclass
:class:`~sparsetrain.compressors.base.ScanningCompressor` instead, which fuses that pass with error
feedback.
"""

from sparsetrain.compressors.base import Compressor, Payload, ScanningCompressor, SparseCompressor, density_to_k
from sparsetrain.compressors.dense import Dense
from sparsetrain.compressors.dgc import DGC
from sparsetrain.compressors.gaussiank import GaussianK
from sparsetrain.compressors.randomk import RandomK
from sparsetrain.compressors.regtopk import RegTopK
from sparsetrain.compressors.topk import TopK

__all__ = [
    "Compressor", "Payload", "ScanningCompressor", "SparseCompressor", "density_to_k",
    "Dense", "GaussianK", "RandomK", "RegTopK", "TopK",
]
