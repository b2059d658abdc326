"""The aiohttp plane's pool of node connections, which never hands out one the node closed.

The rule is the fast plane's (fnlb.proxy.upstream_pool, docs/proxy.md "A pooled connection
the node has closed is never written to"): a node that dies or closes an idle keep-alive
connection sends its FIN or RST at once, but the loop may not have read it when a call takes
the connection from the pool; the request would be written where nobody reads it, and a POST
could not be retried. aiohttp's connector only asks whether its transport is closing, which
it is not until the loop has read the close. So a connection it would hand out is first
checked with one `poll` on its socket (zero timeout): anything there - EOF, a reset, a stray
byte - and it is closed and the next one taken, or a new one opened.

The check overrides `TCPConnector._get`, which aiohttp does not document: its signature is
that of the pinned aiohttp (constraints.txt), and tests/proxy/test_closed_keepalive_functional.py
fails on this plane if a new aiohttp stops calling it.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp.connector import Connection

from fnlb.proxy.idle_socket import heard_poller

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ConnectionKey
    from aiohttp.tracing import Trace


class CheckedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose pooled connections are checked for the node's close when taken."""

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while True:
            conn = await super()._get(key, traces)
            if conn is None or not _heard(conn):
                return conn
            conn.close()  # the node closed it (or spoke unasked): never written to


_POLLER: Final = "_fnlb_poller"
"""The attribute of a node connection's protocol that holds its poller, made at its first
reuse and gone with it: one per connection, not one per call. An attribute rather than a
table keyed by protocol: a weak-keyed table builds a weak reference at every lookup."""


def _heard(conn: Connection) -> bool:
    """The node has sent something on this idle connection that the loop has not read."""
    protocol = conn.protocol
    if protocol is None:
        return False
    poller: select.poll | None = getattr(protocol, _POLLER, None)
    if poller is None:
        transport = conn.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return False
        poller = heard_poller(sock)
        setattr(protocol, _POLLER, poller)
    return bool(poller.poll(0))
