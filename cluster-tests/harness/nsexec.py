"""Run a Python function inside a named network namespace, without a subprocess.

Linux lets one thread of a process join another network namespace (`setns(2)` with
CLONE_NEWNET) while the other threads stay where they are. A socket belongs to the namespace
it was created in for its whole life, whichever thread uses it later. So the test process,
which stays in the root namespace, can probe a Host (an HTTP GET, a UDP datagram) by running
the probe in a short-lived thread that first joins the Host's namespace. This is much quicker
than `ip netns exec python ...` for the polling that convergence checks do.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(netns: str, fn: Callable[[], T], *, timeout: float | None = None) -> T:
    """Call `fn()` in a new thread that has joined network namespace `netns`; return its value.

    Exceptions raised by `fn` are re-raised here. `timeout` bounds the wait for the thread
    (TimeoutError); `fn` itself should bound its own I/O.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(os.path.join(NETNS_RUN_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"function in netns {netns} still running after {timeout} s")
    if "error" in box:
        error = box["error"]
        assert isinstance(error, BaseException)
        raise error
    return box["value"]  # type: ignore[return-value]
