"""What a node sent on an idle pooled connection that the event loop has not yet read.

Both data planes ask this before reusing a keep-alive connection (fnlb.proxy.upstream_pool,
fnlb.proxy.node_connector; docs/proxy.md "A pooled connection the node has closed is never
written to"): an idle HTTP/1.1 connection has nothing to say, so anything there - EOF, a
reset, a stray byte - means the node will not read a request on it.
"""

from __future__ import annotations

import select
import socket
from typing import Final

HEARD: Final = select.POLLIN | select.POLLPRI | select.POLLRDHUP
"""What `poll` reports on an idle connection the node has written to, shut or reset (POLLERR
and POLLHUP are always reported)."""


def heard_poller(sock: socket.socket) -> select.poll:
    """A poller on `sock` for what the node sent: `poller.poll(0)` is non-empty when the
    connection must not be reused. Made once per connection, not once per call, since the
    check runs at every reuse (~1 us; docs/benchmarks.md)."""
    poller = select.poll()
    poller.register(sock.fileno(), HEARD)
    return poller
