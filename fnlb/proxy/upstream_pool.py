"""Keep-alive connections to Fn nodes for the fast data plane, one HTTP/1.1 exchange at a time.

An `UpstreamConnection` is an asyncio Protocol that parses answers with httptools (llhttp)
and hands each event straight to the `Exchange` (the call) that owns it for the moment: no
task, no queue, no copy between the socket and the client. The pool keeps idle connections
per node, newest first (the warmest socket), and drops those idle longer than the nodes'
usual keep-alive so a call rarely meets a connection the node has just closed.

One it has just closed is never handed out: a node that dies or closes an idle connection
sends its FIN or RST at once, but the event loop may read it only after a call has taken that
connection (the call's request and the FIN arrive in the same turn of the loop, the request
read first). The request would then be written where nobody reads it and fail before any
answer, and a POST could not be retried: it may have run, for all fnlb could tell. So `take`
asks the kernel whether anything has come in on the idle connection since its last answer
(one `poll` with a zero timeout, ~1 us with the kernel's part; docs/benchmarks.md): an idle
HTTP/1.1 connection has nothing to say, so anything - EOF, a reset, a stray byte - means the
node will not read a request there, and the connection is closed instead. The request is
then provably unsent.
"""

from __future__ import annotations

import asyncio
import select
from typing import Final, Protocol, cast

import httptools

from fnlb.proxy.http1 import (
    CONNECTION,
    CONTENT_LENGTH,
    CRLF,
    FXLB_WAIT,
    MAX_FIELD,
    MAX_HEAD,
    RESPONSE_HEADERS,
    RESPONSE_KINDS,
    RETRY_AFTER,
    TRANSFER_ENCODING,
    charge_field,
    is_chunked,
    kind_of,
    node_address,
)
from fnlb.proxy.idle_socket import heard_poller

IDLE_TIMEOUT_S: Final = 50.0
"""An idle connection older than this is closed rather than reused (aiohttp's pool used 60 s;
Go's servers, Fn's among them, close idle ones after their own timeout)."""


class Exchange(Protocol):
    """What an upstream connection tells the call it carries (fnlb.proxy.fast_server)."""

    def on_head(self, up: UpstreamConnection) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_done(self, up: UpstreamConnection, keep_alive: bool) -> None: ...
    def on_lost(self, up: UpstreamConnection, exc: BaseException | None) -> None: ...
    def on_bad(self, up: UpstreamConnection, exc: Exception) -> None: ...
    def flush(self) -> None: ...
    def upstream_paused(self, paused: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to a node; `exchange` is the call using it, None while idle."""

    __slots__ = (
        "_checking",
        "_head_left",
        "_in_head",
        "chunked",
        "closed",
        "connection",
        "content_length",
        "discarding",
        "exchange",
        "fields",
        "head_request",
        "idle_since",
        "interim",
        "node",
        "parser",
        "poller",
        "pool",
        "reason",
        "retry_after",
        "status",
        "transport",
        "wait",
    )

    def __init__(self, pool: UpstreamPool, node: str) -> None:
        self.pool = pool
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.poller: select.poll | None = None
        """Asks the kernel, without reading, whether the node has sent anything the loop has
        not read yet: on an idle connection, its FIN or RST (or bytes no request asked for).
        One system call; None without a socket (a test's or a bench's own transport)."""
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.head_request = False
        """The request carried is a HEAD: its answer has no body whatever its headers say."""
        self.discarding = False
        """The answer is read and dropped (a busy 503 that was retried elsewhere)."""
        self.interim = False
        self._checking = False
        self.on_message_begin()
        self._in_head = False
        """A head is being parsed (set at its first byte): the next read may continue it."""

    def on_message_begin(self) -> None:  # httptools: an answer begins; its fresh state
        self.status = 0
        self.reason = b""
        self.fields: list[bytes] = []
        self.content_length: bytes | None = None
        self.chunked = False
        self.connection: bytes | None = None
        self.retry_after: bytes | None = None
        self.wait: bytes | None = None
        self._head_left = MAX_HEAD
        self._in_head = True

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = heard_poller(sock)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        # Field sizes are checked only when a field could be over MAX_FIELD: the read is
        # larger, or a head began in an earlier one (#15: a check a header cost ~1 % a call).
        self._checking = self._in_head or len(data) > MAX_FIELD
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
            self._fail(e)  # a 101 too: Upgrade is never forwarded, so none was asked for
            return
        if ex is not None and self.exchange is ex:  # one that let go has flushed (on_done)
            ex.flush()

    def eof_received(self) -> bool:
        return False  # close: a node that half-closes has nothing more to say

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        self.exchange = None
        if ex is not None:
            ex.on_lost(self, exc)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_paused(False)

    def close(self) -> None:
        """Close without telling any exchange (it has let go, or never had this one)."""
        self.exchange = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, e: Exception) -> None:
        ex = self.exchange
        self.close()
        if ex is not None:
            ex.on_bad(self, e)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._checking:  # answer head spanning reads: its limits (fnlb.proxy.http1)
            self._head_left = charge_field(self._head_left, name, value)
        kind = RESPONSE_KINDS.get(name)
        if kind is None:
            kind = kind_of(RESPONSE_KINDS, RESPONSE_HEADERS, name)
        # Written out, not a method per kind: a Python call per header costs (#15).
        if not kind:  # end-to-end: copied as it came
            self.fields += (name, b": ", value, CRLF)
        elif kind == CONTENT_LENGTH:
            self.fields += (name, b": ", value, CRLF)
            self.content_length = value
        elif kind == CONNECTION:
            self.connection = value
        elif kind == TRANSFER_ENCODING:
            self.chunked = is_chunked(value)
        elif kind == RETRY_AFTER:
            self.fields += (name, b": ", value, CRLF)
            self.retry_after = value
        elif kind == FXLB_WAIT:
            self.fields += (name, b": ", value, CRLF)
            self.wait = value
        # else DROP: hop-by-hop, never copied

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.status = status = self.parser.get_status_code()
        if status < 200:
            self.interim = True  # 1xx: not the answer; the real one follows
            return
        ex = self.exchange
        if ex is None:
            return
        ex.on_head(self)
        if self.head_request and self.exchange is ex:
            # llhttp would wait for the body a HEAD answer's headers describe: end here,
            # and do not reuse the connection (its parser is out of step).
            self.exchange = None
            ex.on_done(self, False)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self.interim:
            ex.on_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        keep = self.parser.should_keep_alive()
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.on_done(self, keep)
        elif self.discarding:
            self.discarding = False
            self.pool.release(self, keep)


class UpstreamPool:
    """Idle keep-alive connections per node, and new ones opened within the connect timeout."""

    __slots__ = ("_addresses", "_idle", "_loop", "connect_timeout", "idle_timeout")

    def __init__(self, connect_timeout: float, idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._addresses: dict[str, tuple[str, int]] = {}
        self._loop = asyncio.get_running_loop()

    def take(self, node: str) -> UpstreamConnection | None:
        """An idle connection to `node`, the most recently used first; None if none is left.
        Never one the node has closed or reset, even if the loop has not read that yet."""
        idle = self._idle.get(node)
        if not idle:
            return None
        oldest = self._loop.time() - self.idle_timeout
        while idle:
            up = idle.pop()
            if not up.closed and up.idle_since > oldest:
                poller = up.poller  # one poll(0) per reused connection: the node's close?
                if poller is None or not poller.poll(0):
                    return up
            up.close()
        return None

    def release(self, up: UpstreamConnection, keep_alive: bool) -> None:
        """Back to the pool after a whole exchange, or closed when it cannot carry another."""
        if not keep_alive or up.closed:
            up.close()
            return
        up.idle_since = self._loop.time()
        idle = self._idle.get(up.node)
        if idle is None:
            idle = self._idle[up.node] = []
        idle.append(up)

    def forget(self, up: UpstreamConnection) -> None:
        """An idle connection closed by the node leaves the pool."""
        idle = self._idle.get(up.node)
        if idle and up in idle:
            idle.remove(up)
            if not idle:
                del self._idle[up.node]

    async def connect(self, node: str) -> UpstreamConnection:
        """A new connection to `node`; OSError, TimeoutError or ValueError when it cannot be."""
        address = self._addresses.get(node)
        if address is None:
            address = node_address(node)
            if len(self._addresses) >= 4096:
                self._addresses.clear()
            self._addresses[node] = address
        async with asyncio.timeout(self.connect_timeout):
            _, up = await self._loop.create_connection(
                lambda: UpstreamConnection(self, node), address[0], address[1]
            )
        return up

    def idle_count(self, node: str) -> int:
        return len(self._idle.get(node, ()))

    def close(self) -> None:
        for idle in self._idle.values():
            for up in idle:
                up.close()
        self._idle.clear()
