"""Bytes on the wire and the α-β time of the collectives the exchange issues.

Every worker (a logical worker counts as a host of its own) sits on a ring, as gloo's and NCCL's
algorithms for these sizes do. For P workers (Thakur, Rabenseifner, Gropp 2005, "Optimization of
Collective Communication Operations in MPICH", Sec. 4: ring all-gather, and all-reduce as a ring
reduce-scatter followed by a ring all-gather), with latency α and time per byte β = 1/bandwidth:

* all-reduce of n bytes: each worker sends and receives ``2 (P-1)/P n`` bytes, in
  ``2 (P-1)`` steps: ``T = 2 (P-1) α + 2 (P-1)/P n β``;
* all-gather of b bytes from every worker: each sends and receives ``(P-1) b`` bytes, in
  ``P-1`` steps: ``T = (P-1) α + (P-1) b β``.

So a sparse all-gather's traffic grows with P while a dense all-reduce's does not: Top-k's
compression on the wire is ``d / (P k)``, not ``d / k`` (ALGORITHMS.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Collective", "allreduce", "allgather", "parse_rate", "RATE_EXAMPLE"]

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
RATE_EXAMPLE = "1gbit, 100mbit or 2.5gbit (bits per second, tc's units)"


def parse_rate(text: str) -> float:
    """Bits per second of a rate written as tc writes them ("10gbit", "100mbit"); ValueError else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*(bit|kbit|mbit|gbit|tbit)\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a rate like {RATE_EXAMPLE}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Collective:
    """One collective as the wire sees it, per worker: ``wire_bytes`` sent (and as many received)
    in ``rounds`` ring steps."""

    name: str
    wire_bytes: float
    rounds: int

    def seconds(self, bandwidth_bits: float, latency_s: float) -> float:
        """α-β time: ``rounds α + wire_bytes β``."""
        return self.rounds * latency_s + self.wire_bytes * 8 / bandwidth_bits


def allreduce(nbytes: float, workers: int) -> Collective:
    """Ring all-reduce of ``nbytes`` on every worker."""
    return Collective("allreduce", 2 * (workers - 1) / workers * nbytes, 2 * (workers - 1))


def allgather(nbytes_each: float, workers: int) -> Collective:
    """Ring all-gather of ``nbytes_each`` from every worker."""
    return Collective("allgather", (workers - 1) * nbytes_each, workers - 1)
