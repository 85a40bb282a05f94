"""A real bandwidth-limited link on one machine: a private network namespace with a shaped loopback.

``net.bandwidth=100mbit`` runs the job's launcher, and so all of its workers, in a child process
that has a network namespace of its own (``unshare(CLONE_NEWNET)``; without root, inside a user
namespace too, where the system allows unprivileged ones). There it brings the loopback up and
shapes it with a token-bucket filter (``tc qdisc ... tbf``; the kernels this runs on may lack
netem). Only loopback addresses exist in that namespace: the job's traffic cannot leave the
machine, and every collective really waits for the link.

Per-host speed: all processes share the one loopback bucket. In the ring collectives the exchange
uses every host sends the same volume V at the same time, so P hosts each with a link of B bit/s
take ``8 V / B``, and P processes pushing ``P V`` through one bucket of rate ``P B`` take the
same. The bucket's rate is therefore ``dist.nproc x net.bandwidth``, and ``net.bandwidth`` means
each host's link (checked by measurement in ``scripts/bench_network.py``).

The namespace's loopback counters (``/proc/self/net/dev``, which, unlike ``/sys/class/net``,
follows the namespace) see only the job's traffic: :func:`run_shaped` reports the bytes the job
put on the wire, for summary.json.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import subprocess
from functools import lru_cache
from typing import Any, Callable

__all__ = ["unavailable", "enter_shaped_namespace", "run_shaped", "loopback_bytes", "bucket"]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def bucket(rate_bits: float, hosts: int) -> list[str]:
    """tc's arguments for the shared loopback bucket of ``hosts`` hosts with ``rate_bits`` each.

    The bucket holds at least one 64 KiB loopback packet (a smaller one would drop them) or 1 ms
    of traffic, and queues up to a second of it, so TCP sees a slow link rather than losses.
    """
    rate = rate_bits * hosts
    burst = max(1 << 17, int(rate / 8 / 1000))
    return ["tbf", "rate", f"{rate:.0f}bit", "burst", str(burst), "latency", "1s"]


def _unshare_network() -> None:
    """Move this process into a new network namespace (and user namespace, unless root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0:
        flags = CLONE_NEWNET
    else:
        flags = CLONE_NEWUSER | CLONE_NEWNET
        uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
    if flags & CLONE_NEWUSER:  # become root of the new user namespace, as `unshare -r` does
        for name, content in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(content)


def enter_shaped_namespace(rate_bits: float, hosts: int) -> None:
    """In this process (one started for it): a private network namespace whose loopback is up
    and shaped for ``hosts`` hosts of ``rate_bits`` bit/s each."""
    _unshare_network()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, text=True)
    subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", *bucket(rate_bits, hosts)], check=True,
                   capture_output=True, text=True)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo would otherwise look up the host name's address


def _probe(queue: Any) -> None:
    try:
        enter_shaped_namespace(1e9, 1)
        queue.put(None)
    except subprocess.CalledProcessError as error:
        queue.put(f"{' '.join(error.cmd[:3])} failed: {error.stderr.strip() or error}")
    except Exception as error:
        queue.put(f"{type(error).__name__}: {error}")


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why shaping cannot run on this machine (tried once, in a throw-away process), or None."""
    if not os.path.exists("/proc/self/ns/net"):
        return "it needs Linux network namespaces"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"it needs {tool} (iproute2) on PATH"
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    process = context.Process(target=_probe, args=(queue,))
    process.start()
    process.join(60)
    if process.exitcode != 0:
        return f"a probe process ended with {process.exitcode}"
    problem = queue.get()
    if problem and ("unshare" in problem or "Operation not permitted" in problem):
        return f"{problem}: it needs root, or unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    return problem


def loopback_bytes() -> int:
    """Bytes the loopback of this process's network namespace has transmitted."""
    with open("/proc/self/net/dev") as f:
        for line in f:
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[8])
    raise RuntimeError("no loopback device in /proc/self/net/dev")


def _shaped_main(connection: Any, fn: Callable[..., Any], args: tuple, rate_bits: float, hosts: int) -> None:
    try:
        enter_shaped_namespace(rate_bits, hosts)
        before = loopback_bytes()
        result = fn(*args)
        connection.send(("done", result, loopback_bytes() - before))
    except BaseException as error:  # sent back whole: the caller re-raises it as its own
        if isinstance(error, KeyboardInterrupt) or type(error).__name__ == "SignalException":
            connection.send(("interrupted", None, 0))  # Ctrl-C: the caller was interrupted too
        else:
            connection.send(("raised", error, 0))
    finally:
        connection.close()


def run_shaped(fn: Callable[..., Any], *args: Any, rate_bits: float, hosts: int) -> tuple[Any, int]:
    """``fn(*args)`` in a new process inside a shaped namespace; returns its result and the bytes
    its loopback carried. An exception in ``fn`` is raised here (pickled across)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_shaped_main, args=(send, fn, args, rate_bits, hosts))
    process.start()
    send.close()
    try:
        kind, value, extra = receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the shaped launcher process ended with {process.exitcode}") from None
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it stop its workers first
        process.join(60)
        raise
    process.join()
    if kind == "interrupted":
        raise KeyboardInterrupt
    if kind == "raised":
        raise value
    return value, extra
