"""The fast data plane: proxied calls on asyncio Protocols and httptools, both ways.

Why: a proxied call through aiohttp's server and client cost ~105-125 us of CPU (request and
response objects, header maps, a task and stream readers per call, bench/proxy); what a
load balancer must do per call is far less. Here one `ClientConnection` per client socket
parses requests with llhttp (httptools), and each call (`_Call`) is a small state machine
driven by the parsers' callbacks on both sides: bytes of a body go from one socket to the
other as they come (flat memory; a full socket pauses the other side's reading), headers are
copied as the bytes they arrived as, minus the hop-by-hop ones, and a task exists only while
a new connection to a node is being opened.

The behaviour is `fnlb.proxy.handler.Proxy.handle`'s, with the same calls into the Peer
(`candidates`, `attempt_started`, one `Attempt` record per attempt to `attempt_finished`,
`connect_failed`); read its docstring for what is retried. In short: the next candidate gets the
call when the connection could not be opened, when the node answered 503 with Retry-After
and the body is still in hand (bodies with a Content-Length up to `BUFFER_LIMIT` are read
whole first), or - idempotent methods only - when the connection died before any answer.
A pooled connection the node has already closed is never written to, whatever the method: the
pool looks before it hands one out (fnlb.proxy.upstream_pool).

Pipelined requests are answered in order: a request that arrives while another is being
proxied waits (its body buffered, reading paused) until the one before is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol, cast

import httptools

from fnlb.cluster.view import NodeView
from fnlb.observe.calls import (
    AFTER,
    ALL_FAILED,
    GONE,
    NO_NODE,
    CallObserver,
    CallRequest,
    HeaderLookup,
)
from fnlb.observe.tracing import CONTEXT_HEADERS, CallTrace
from fnlb.proxy.handler import BUFFER_LIMIT, IDEMPOTENT
from fnlb.proxy.http1 import (
    CHUNKED_HEADER,
    CLOSE_HEADER,
    CONNECTION,
    CONTENT_LENGTH,
    CONTINUE,
    CRLF,
    DROP,
    EXPECT,
    HOST,
    KEEP_ALIVE_HEADER,
    LAST_CHUNK,
    MAX_FIELD,
    MAX_HEAD,
    PLAIN_CONNECTION,
    REQUEST_HEADERS,
    REQUEST_KINDS,
    TRACE_CONTEXT,
    TRANSFER_ENCODING,
    XF_HOST,
    XF_PROTO,
    XFF,
    HeadTooLarge,
    charge_field,
    connection_options,
    decoded_path,
    is_chunked,
    json_answer,
    kind_of,
    status_line,
    without_named,
)
from fnlb.proxy.upstream_pool import UpstreamConnection, UpstreamPool
from fnlb.proxy.wait import retry_after_seconds, wait_seconds
from fnlb.proxy.warm_hold import Ticket, WarmHolds
from fnlb.routing.attempt import BUSY, NO_ANSWER, Attempt
from fnlb.routing.function_key import function_key
from fnlb.routing.picked import FixedPick
from fnlb.routing.warm_wait import Hold

log = logging.getLogger("fnlb.proxy")

HandOver = Callable[[asyncio.Transport, bytes], None]
"""Gives a client connection, and the bytes read from it so far, to the management API."""


class CallPeer(Protocol):
    """What the data plane asks of the Peer (fnlb.peer.core.Peer), exactly what
    `Proxy.handle` calls; a worker's stand-in (fnlb.proxy.worker) relays it to its primary."""

    @property
    def view(self) -> NodeView: ...

    def candidates(self, key: str, path: str) -> Sequence[str]: ...

    def attempt_started(self, key: str, node: str, now: float) -> None: ...

    def attempt_finished(self, attempt: Attempt) -> None: ...

    def connect_failed(self, node: str, error: str, now_ms: int) -> None: ...


IDLE_CLIENT_S: Final = 75.0
"""A client connection with no call under way for this long is closed (aiohttp's default)."""
_SWEEP_S: Final = 15.0
_IDLE_ROUNDS: Final = int(IDLE_CLIENT_S / _SWEEP_S)

STREAM_BUFFER: Final = 256 * 1024
"""Bytes of a streamed body held while its node connection opens; reading pauses beyond."""

_IDEMPOTENT_B: Final = frozenset(m.encode() for m in IDEMPOTENT)
_CONTEXT_B: Final = frozenset(h.encode() for h in CONTEXT_HEADERS)
"""The caller's trace context headers: a traced call's attempts send their own instead."""

# How an answer's body goes to the client.
_NONE: Final = 0  # no body (HEAD, 1xx, 204, 304)
_AS_IS: Final = 1  # framed as the node framed it (Content-Length), or until close
_CHUNKED: Final = 2  # re-framed as chunks (the node's chunks, or its close-delimited body)


class FastProxy:
    """Shared state of the fast listener(s): routing, load figures, the node pool."""

    def __init__(
        self,
        peer: CallPeer,
        *,
        connect_timeout: float,
        management: HandOver | None = None,
        management_paths: frozenset[bytes] = frozenset(),
        scheme: bytes = b"http",
        observer: CallObserver | None = None,
        warm: WarmHolds | None = None,
    ) -> None:
        """`management`: on a shared port, what takes a connection whose request is for one
        of `management_paths` (the API stays on aiohttp: `hand_to_protocol`). `scheme`: the
        listener's (b"https" with TLS), the X-Forwarded-Proto a client did not send.
        `observer`: metrics, access log and traces (fnlb.observe), told what `Proxy.handle`
        tells it. `warm`: wait for warm (-warm-wait, fnlb.proxy.warm_hold), shared with
        the process's aiohttp plane; None: no call is held."""
        self.peer = peer
        self.scheme = scheme
        self.observer = observer or CallObserver(FixedPick(), counting=False)
        self.pool = UpstreamPool(connect_timeout)
        self.warm = warm
        self.management = management
        self.management_paths = management_paths
        self.connections: set[ClientConnection] = set()
        self.closing = False
        self._drained = asyncio.Event()
        self._sweeper: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin closing client connections idle for `IDLE_CLIENT_S` (aiohttp's default)."""
        self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        # No clock read per call: a connection that received nothing for IDLE_ROUNDS sweeps
        # in a row, and has no call under way, is idle.
        for c in list(self.connections):
            if c.active is not None or c.seen:
                c.seen = False
                c.idle_rounds = 0
            else:
                c.idle_rounds += 1
                if c.idle_rounds >= _IDLE_ROUNDS:
                    c.close()
        self.start()

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    # -- shutdown -------------------------------------------------------------------------------

    async def drain(self, within: float | None) -> None:
        """Close idle client connections now, the others once their call is answered;
        after `within` seconds (None: no limit), close what is left."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.warm is not None:  # held calls go on now, and are answered within the drain
            self.warm.drain()
        for c in list(self.connections):
            if c.active is None:
                c.close()
        if self.connections:
            try:
                async with asyncio.timeout(within):
                    await self._drained.wait()
            except TimeoutError:
                for c in list(self.connections):
                    c.close()
        self.pool.close()

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self.closing and not self.connections:
            self._drained.set()


class ClientConnection(asyncio.Protocol):
    """One client socket: parses its requests and runs their calls one at a time, in order."""

    __slots__ = (
        "_between",
        "_checking",
        "_head_left",
        "_in_head",
        "_sniff",
        "active",
        "client",
        "closed",
        "idle_rounds",
        "parser",
        "parsing",
        "paused",
        "proxy",
        "queue",
        "seen",
        "transport",
        "write_paused",
    )

    def __init__(self, proxy: FastProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: _Call | None = None
        self.active: _Call | None = None
        self.queue: deque[_Call] | None = None
        self.client = b""
        """The client's address (X-Forwarded-For), as bytes."""
        self.closed = False
        self.seen = True
        self.idle_rounds = 0
        self.paused = False
        self.write_paused = False
        self._between = True
        self._sniff = b""
        self._head_left = MAX_HEAD
        self._in_head = False
        """A head is being parsed (set at its first byte): the next read may continue it."""
        self._checking = False

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        address = transport.get_extra_info("peername")
        self.client = str(address[0]).encode() if isinstance(address, tuple) else b""
        self.proxy.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.seen = True
        # Field sizes are checked only when a field could be over MAX_FIELD: the read is
        # larger, or a head began in an earlier one (#15: a check a header cost ~1 % a call).
        self._checking = self._in_head or len(data) > MAX_FIELD
        if self._between and self.active is None and self.proxy.management is not None:
            if self._sniff:
                data = self._sniff + data
                self._sniff = b""
            if self._to_management(data):
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            # llhttp stops at a request asking to switch protocols (Connection: upgrade) and
            # skips its body. Upgrade is hop-by-hop and never forwarded, so a request without
            # a body is proxied as plain HTTP/1.1 (the client keeps speaking it: it got no
            # 101); one with a body, or CONNECT, cannot be and is refused.
            call = self.active
            if call is None or call.method == b"CONNECT" or call.chunked or call.length:
                self._refuse(501, "protocol upgrades and CONNECT are not proxied")
                return
            rest = data[e.args[0] :] if e.args else b""
            if rest:
                self.data_received(rest)
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, HeadTooLarge):
                self._refuse(431, f"request head too large: {e.__context__}")
            else:  # a fault of ours in a callback: say so, keep the traceback for the log
                log.error("proxy fault", exc_info=e.__context__ or e)
                self._refuse(502, "fnlb failed to handle the call (logged); not retried")
        except httptools.HttpParserError as e:
            self._refuse(400, f"malformed request: {_parser_reason(e)}")

    def _to_management(self, data: bytes) -> bool:
        """On a shared port, hand the connection to aiohttp if it asks for the API."""
        first = data.find(b" ")
        second = data.find(b" ", first + 1) if first >= 0 else -1
        if second < 0:
            if b"\n" not in data and len(data) < MAX_FIELD:
                self._sniff = data  # the request line is not whole yet
                return True
            return False  # let the parser refuse it
        if not _is_api(data[first + 1 : second], self.proxy.management_paths):
            return False
        hand_over = self.proxy.management
        assert hand_over is not None
        assert self.transport is not None
        self.proxy.forget(self)
        self.closed = True
        hand_over(self.transport, data)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.forget(self)
        if self.active is not None:
            self.active.abort()
        self.active = self.parsing = self.queue = None

    def pause_writing(self) -> None:
        self.write_paused = True
        call = self.active
        if call is not None and call.up is not None and call.up.transport is not None:
            call.up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        call = self.active
        if call is not None and call.up is not None and call.up.transport is not None:
            call.up.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.proxy.forget(self)

    def _refuse(self, status: int, msg: str) -> None:
        """A request the parser refuses: a JSON error if no answer is under way, then close."""
        if self.closed:
            return
        if self.active is None or not self.active.answering:
            assert self.transport is not None
            self.transport.write(json_answer(status, msg, close=True))
        if self.active is not None:
            self.active.abort()
            self.active = None
        self.close()

    def pause(self, paused: bool) -> None:
        """Stop or resume reading the client (a full node socket, a buffer over its bound)."""
        if paused != self.paused and not self.closed and self.transport is not None:
            self.paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._between = False
        self._in_head = True
        self._head_left = MAX_HEAD
        self.parsing = _Call(self)

    def on_url(self, url: bytes) -> None:
        call = self.parsing
        assert call is not None
        call.target += url
        if len(call.target) > MAX_FIELD:
            raise HeadTooLarge("request target over 64 KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        call = self.parsing
        assert call is not None
        if self._checking:  # request head spanning reads: its limits (fnlb.proxy.http1)
            self._head_left = charge_field(self._head_left, name, value)
        kind = REQUEST_KINDS.get(name)
        if kind is None:
            kind = kind_of(REQUEST_KINDS, REQUEST_HEADERS, name)
        if not kind:  # end-to-end: copied as it came
            call.fields += (name, b": ", value, CRLF)
        elif kind == HOST:  # Host and Content-Length, in nearly every request: no call
            call.fields += (name, b": ", value, CRLF)
            if call.host is None:
                call.host = value
        elif kind == CONTENT_LENGTH:
            call.fields += (name, b": ", value, CRLF)
            call.length = int(value)
        else:
            self._special(call, kind, name, value)

    def _special(self, call: _Call, kind: int, name: bytes, value: bytes) -> None:
        if kind == DROP:
            pass
        elif kind == TRANSFER_ENCODING:
            call.chunked = is_chunked(value)
        elif kind == CONNECTION:
            call.connection = value if call.connection is None else call.connection + b"," + value
        elif kind == EXPECT:
            call.expect = value
        elif kind == XFF:
            if call.xff is None:
                call.xff = value
        elif kind == XF_PROTO:
            if call.xf_proto is None:
                call.xf_proto = value
        elif kind == TRACE_CONTEXT:  # copied as it came, unless the call is traced here
            call.fields += (name, b": ", value, CRLF)
            call.context = True
        elif kind == XF_HOST and call.xf_host is None:
            call.xf_host = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        call = self.parsing
        assert call is not None
        if self.closed:
            return
        parser = self.parser
        call.method = parser.get_method()
        call.http11 = parser.get_http_version() == "1.1"
        call.keep_alive = parser.should_keep_alive()
        # _Call's head is complete (written out here: a Python call less per call, #15)
        call.arrived = time.time()  # observe: the whole call's start, as Proxy.handle's
        length = call.length
        call.streaming = call.chunked or (length is not None and length > BUFFER_LIMIT)
        call.replayable = not call.streaming
        if call.connection is not None:
            named = connection_options(call.connection)
            if named:
                call.fields = without_named(call.fields, named)
        if self.active is None:
            self.active = call
            if call.expect is None and self.proxy.management is None:  # activate()'s usual
                if call.streaming or call.body_done:
                    call.start()
            else:
                call.activate()
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(call)

    def on_body(self, body: bytes) -> None:
        call = self.parsing
        if call is not None:
            if call.streaming or call.done:
                call.body_received(body)
            else:  # body_received's common case, written out
                call.body.append(body)
                call.body_size += len(body)

    def on_message_complete(self) -> None:
        call = self.parsing
        self.parsing = None
        self._between = True
        if call is None or self.closed:
            return
        call.body_done = True
        if call is self.active:
            if call.streaming:
                call.body_complete()
            else:
                call.start()
        else:
            self.pause(True)  # a pipelined request waits: read no further for now

    # -- calls ----------------------------------------------------------------------------------

    def call_done(self, call: _Call, close: bool) -> None:
        """`call`'s answer is written: close, or go on with the next request."""
        if call is not self.active:
            return
        self.active = None
        if close or self.proxy.closing:
            self.close()
            return
        queue = self.queue
        if queue:
            nxt = self.active = queue.popleft()
            nxt.activate()
        if not queue and self.paused:
            self.pause(False)


def _is_api(target: bytes, paths: frozenset[bytes]) -> bool:
    return target.partition(b"?")[0] in paths


def hand_to_protocol(factory: Callable[[], asyncio.BaseProtocol]) -> HandOver:
    """A `HandOver` to a protocol of this process (aiohttp's server: `web.Server`)."""

    def hand_over(transport: asyncio.Transport, data: bytes) -> None:
        handler = factory()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        assert isinstance(handler, asyncio.Protocol)
        handler.data_received(data)

    return hand_over


_ROUTES: dict[bytes, tuple[str, str]] = {}
"""(decoded path, function key) by request target, for the targets clients repeat: decoding
and keying a target was ~5 % of a call's instructions (#15). Bounded in entries and size."""
_ROUTES_MAX: Final = 4096
_ROUTE_TARGET_MAX: Final = 512


def _route(target: bytes) -> tuple[str, str]:
    path = decoded_path(target)
    route = (path, function_key(path))
    if len(target) <= _ROUTE_TARGET_MAX:
        if len(_ROUTES) >= _ROUTES_MAX:
            _ROUTES.clear()
        _ROUTES[target] = route
    return route


def _parser_reason(e: Exception) -> str:
    cause = e.__context__
    if isinstance(cause, ValueError):
        return str(cause)
    return str(e) or type(e).__name__


class _Call:
    """One proxied request: parsed head, body in hand or in flight, attempts over candidates."""

    __slots__ = (
        "answered_at",
        "answering",
        "arrived",
        "body",
        "body_done",
        "body_size",
        "chunked",
        "close_after",
        "conn",
        "connecting",
        "connection",
        "context",
        "done",
        "expect",
        "failures",
        "fields",
        "head",
        "held",
        "host",
        "http11",
        "i",
        "in_attempt",
        "keep_alive",
        "key",
        "last",
        "length",
        "method",
        "mode",
        "node",
        "nodes",
        "out",
        "path",
        "picked",
        "replayable",
        "retry_after",
        "started",
        "status",
        "streaming",
        "target",
        "trace",
        "up",
        "up_paused",
        "wait_header",
        "xf_host",
        "xf_proto",
        "xff",
    )

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.target = b""
        self.fields: list[bytes] = []
        self.method = b""
        self.host: bytes | None = None
        self.length: int | None = None
        self.chunked = False
        self.connection: bytes | None = None
        self.expect: bytes | None = None
        self.xff: bytes | None = None
        self.xf_proto: bytes | None = None
        self.xf_host: bytes | None = None
        self.http11 = True
        self.keep_alive = True
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_done = False
        self.streaming = False
        self.replayable = True
        self.up: UpstreamConnection | None = None
        self.up_paused = False
        self.connecting: asyncio.Task[None] | None = None
        self.nodes: Sequence[str] = ()
        self.i = 0
        self.last = -1
        self.node = ""
        self.started = 0.0
        self.in_attempt = False
        self.failures: list[str] | None = None
        self.answering = False
        self.done = False
        self.out: list[bytes] = []
        self.mode = _AS_IS
        self.close_after = False
        self.status = 0
        self.answered_at = 0.0
        self.wait_header: bytes | None = None
        self.retry_after: bytes | None = None
        self.head = b""
        self.path = ""
        self.key = ""
        self.picked = 0
        """What routing reported for the first node (fnlb.routing.picked), for the metrics."""
        self.arrived = 0.0
        self.trace: CallTrace | None = None
        self.context = False
        """The request carries trace context headers (traceparent, b3, X-B3-*)."""
        self.held: Hold[Ticket] | None = None
        """Held by wait for warm (fnlb.proxy.warm_hold) until `resume`."""

    # -- the request ----------------------------------------------------------------------------

    def activate(self) -> None:
        """This request is next to be answered on its connection."""
        proxy = self.conn.proxy
        if proxy.management is not None and _is_api(self.target, proxy.management_paths):
            # On a shared port the API is reached by handing over a connection whose next
            # request asks for it; one pipelined behind a call is already in the parser.
            # Refused rather than proxied to an Fn node that knows no such path.
            self.answer_error(
                400,
                "a management API request pipelined behind a call on the shared port is not "
                "taken: send it when the answers before it have arrived, or on its own connection",
                close=True,
            )
            return
        if self.expect is not None and self.http11:
            if self.expect.lower() != b"100-continue":
                expect = self.expect.decode("latin-1")
                self.answer_error(417, f"Unknown Expect: {expect}", close=True)
                return
            assert self.conn.transport is not None
            self.conn.transport.write(CONTINUE)
        if self.streaming or self.body_done:
            self.start()

    def body_received(self, data: bytes) -> None:
        if self.done:
            return
        up = self.up
        if self.streaming and up is not None and up.transport is not None:
            if self.chunked:
                up.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                up.transport.write(data)
            return
        self.body.append(data)
        self.body_size += len(data)
        if self.streaming and self.body_size > STREAM_BUFFER:
            self.conn.pause(True)

    def body_complete(self) -> None:
        """The whole request has been read (this call is the connection's active one)."""
        if self.done:
            return
        if not self.streaming:
            self.start()
        elif self.up is not None and self.chunked and self.up.transport is not None:
            self.up.transport.write(LAST_CHUNK)

    def start(self) -> None:
        """Route the call and make its first attempt."""
        if self.done or self.nodes:
            return
        proxy = self.conn.proxy
        route = _ROUTES.get(self.target)
        if route is None:
            route = _route(self.target)
        self.path, self.key = path, key = route
        peer = proxy.peer
        nodes = peer.candidates(key, path)
        obs = proxy.observer
        self.picked = obs.routed.picked  # observe: what routing put first, read right away
        if not nodes:
            known = len(peer.view.states)
            obs.end(None, self.observed(), key, self.picked, None, 0, 503, self.arrived,
                    self.arrived, NO_NODE)  # fmt: skip
            self.answer_error(
                503,
                "no Fn node is online to take the call"
                + (f" ({known} known, none healthy)" if known else " (no nodes configured)"),
            )
            return
        self.nodes = nodes
        self.last = len(nodes) - 1
        if obs.tracer is not None:  # observe: each attempt then names its span to the node
            self.trace = obs.begin(_CallView(self), None)
            if self.trace is not None and self.context:
                self.fields = without_named(self.fields, _CONTEXT_B)
        xff = self.xff
        client = self.conn.client
        parts = [self.method, b" ", self.target, b" HTTP/1.1\r\n", *self.fields]
        parts += (b"X-Forwarded-For: ", xff + b", " + client if xff else client, CRLF)
        parts += (b"X-Forwarded-Proto: ", self.xf_proto or proxy.scheme, CRLF)
        host = self.xf_host or self.host
        if host:
            parts += (b"X-Forwarded-Host: ", host, CRLF)
        if self.chunked:
            parts.append(CHUNKED_HEADER)
        self.head = b"".join(parts)
        warm = proxy.warm
        if warm is not None:
            self.held = warm.hold(self.key, nodes[0], self, self.arrived)
            if self.held is not None:
                return  # `resume` sends it on
        self.attempt()

    def resume(self) -> None:
        """Wait for warm let the held call go (a container freed, its deadline, shutdown)."""
        self.held = None
        if not self.done:
            self.attempt()

    # -- attempts -------------------------------------------------------------------------------

    def attempt(self) -> None:
        proxy = self.conn.proxy
        node = self.node = self.nodes[self.i]
        self.started = now = time.time()
        proxy.peer.attempt_started(self.key, node, now)
        if proxy.warm is not None:
            proxy.warm.started(self.key, node, now)
        if self.trace is not None:  # observe: the node's traceparent names this attempt
            self.trace.attempt_started(node, now)
        self.in_attempt = True
        up = proxy.pool.take(node)
        if up is not None:
            self.send(up)
        else:
            self.connecting = asyncio.get_running_loop().create_task(self.connect(node))

    async def connect(self, node: str) -> None:
        try:
            up = await self.conn.proxy.pool.connect(node)
        except (OSError, TimeoutError, ValueError) as e:
            self.connecting = None
            if not self.done:
                self.connect_failed(_describe(e))
            return
        self.connecting = None
        if self.done:
            self.conn.proxy.pool.release(up, True)
            return
        try:
            self.send(up)
        except Exception:  # a fault of ours: the client must still get an answer
            log.exception("proxy fault")
            up.close()
            self.ended(self.finish(), 502, AFTER)
            self.answer_error(502, "fnlb failed to handle the call (logged); not retried")

    def connect_failed(self, why: str) -> None:
        # Nothing was sent: the call can go to the next node, body untouched.
        node = self.node
        record = self.finish()
        self._failed(f"{node}: {why}")
        proxy = self.conn.proxy
        proxy.peer.connect_failed(node, why, int(time.time() * 1000))  # check it now
        if record is not None:
            proxy.observer.attempt(self.trace, record, "connect", self.started, self.i < self.last)
        self.next_or_fail()

    def _failed(self, line: str) -> None:
        if self.failures is None:
            self.failures = []
        self.failures.append(line)

    def next_or_fail(self) -> None:
        self.i += 1
        if self.i <= self.last:
            self.attempt()
        else:
            self.conn.proxy.observer.end(self.trace, self.observed(), self.key, self.picked, None,
                                         self.last, 502, self.arrived, self.arrived,
                                         ALL_FAILED)  # fmt: skip
            self.answer_error(502, f"every Fn node failed: {'; '.join(self.failures or ())}")

    def send(self, up: UpstreamConnection) -> None:
        self.up = up
        up.exchange = self
        up.head_request = self.method == b"HEAD"
        transport = up.transport
        assert transport is not None
        head = self.head
        if self.host is None:  # HTTP/1.0 without Host: name the node, as a client would
            head += b"Host: %s\r\n" % self.node.encode()
        if self.trace is not None:  # observe: W3C (and B3) context naming this attempt
            head += self.trace.propagation()
        if not self.streaming:
            transport.write(b"".join((head, CRLF, *self.body)))
        else:
            parts = [head, CRLF]
            for data in self.body:
                parts.append(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            if self.body_done and self.chunked:
                parts.append(LAST_CHUNK)
            transport.write(b"".join(parts))
            self.body = []
            self.body_size = 0
            if not self.up_paused:
                self.conn.pause(False)
        if self.conn.write_paused:
            transport.pause_reading()

    def finish(self, status: int = NO_ANSWER, answered: bool = False) -> Attempt | None:
        """The attempt in progress ended: its one record to the Peer, once (and returned, for
        the observer; None when no attempt was in progress). `status`: the node's (NO_ANSWER
        when none came; BUSY for a busy answer the call moves on from); `answered`: its
        answer went to the client. The same records as `Proxy.handle`."""
        if not self.in_attempt:
            return None
        self.in_attempt = False
        now = time.time()
        retry_after = None
        if status == BUSY and self.retry_after is not None:
            retry_after = retry_after_seconds(self.retry_after.decode("latin-1"))
        if answered:
            wait = self.wait_header
            attempt = Attempt(
                self.key,
                self.node,
                self.path,
                status,
                now,
                wait_seconds(wait.decode("latin-1")) if wait else None,
                retry_after,
                self.answered_at - self.started,
                self.answered_at,
            )
        else:
            attempt = Attempt(self.key, self.node, self.path, status, now, None, retry_after)
        proxy = self.conn.proxy
        proxy.peer.attempt_finished(attempt)
        if proxy.warm is not None:  # may send a held call on, onto the container this frees
            proxy.warm.finished(self.key, self.node, now, attempt.answer_s)
        return attempt

    def ended(self, record: Attempt | None, status: int, error: str | None = None) -> None:
        """The call ended after attempt `record` (None: none was in progress): tell the
        observer, as `Proxy.handle` does. `status`: what the client got."""
        if record is not None:
            self.conn.proxy.observer.end(self.trace, self.observed(), self.key, self.picked,
                                         record, self.i, status, self.arrived, self.started,
                                         error)  # fmt: skip

    def observed(self) -> CallRequest:
        """This request as the observer reads it: only its access log reads the fields."""
        return _CallView(self) if self.conn.proxy.observer.access is not None else _UNREAD

    # -- Exchange: what the node's connection reports -------------------------------------------

    def on_head(self, up: UpstreamConnection) -> None:
        status = up.status
        if status == 503 and up.retry_after is not None and self.replayable and self.i < self.last:
            up.exchange = None
            up.discarding = True  # read the rest, then back to the pool
            self.up = None
            self.retry_after = up.retry_after
            busy = self.finish(BUSY)
            self.retry_after = None
            if busy is not None:
                self.conn.proxy.observer.attempt(self.trace, busy, "busy", self.started, True)
            self._failed(f"{self.node}: busy (503)")
            self.i += 1
            self.attempt()
            return
        self.answered_at = time.time()
        self.status = status
        self.wait_header = up.wait
        self.retry_after = up.retry_after
        self.answering = True
        fields = up.fields
        if up.connection is not None and up.connection not in PLAIN_CONNECTION:
            named = connection_options(up.connection)
            if named:
                fields = without_named(fields, named)
        parts = [status_line(status, up.reason or b"-"), *fields]
        close = not self.keep_alive or not self.body_done or self.conn.proxy.closing
        if self.method == b"HEAD" or status in (204, 304):
            self.mode = _NONE
        elif up.content_length is not None:
            self.mode = _AS_IS
        elif self.http11:
            self.mode = _CHUNKED
            parts.append(CHUNKED_HEADER)
        else:
            self.mode = _AS_IS  # an HTTP/1.0 client reads to the close
            close = True
        self.close_after = close
        if close:
            parts.append(CLOSE_HEADER)
        elif not self.http11:
            parts.append(KEEP_ALIVE_HEADER)
        parts.append(CRLF)
        self.out.append(b"".join(parts))

    def on_body(self, data: bytes) -> None:
        mode = self.mode
        if mode == _AS_IS:
            self.out.append(data)
        elif mode == _CHUNKED:
            self.out += (b"%x\r\n" % len(data), data, CRLF)

    def flush(self) -> None:
        out = self.out
        if out:
            transport = self.conn.transport
            if transport is not None and not self.conn.closed:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def on_done(self, up: UpstreamConnection, keep_alive: bool) -> None:
        # Every call ends here: flush() and ended() are written out (#15: a Python call
        # costs ~1,000 instructions).
        out = self.out
        if self.mode == _CHUNKED:
            out.append(LAST_CHUNK)
        conn = self.conn
        if out:
            transport = conn.transport
            if transport is not None and not conn.closed:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        self.up = None
        proxy = conn.proxy
        proxy.pool.release(up, keep_alive and self.body_done and not up.head_request)
        status = self.status
        record = self.finish(status, answered=True)
        if record is not None:
            obs = proxy.observer
            seen = _CallView(self) if obs.access is not None else _UNREAD
            obs.end(self.trace, seen, self.key, self.picked, record, self.i, status, self.arrived,
                    self.started, None)  # fmt: skip
        self.done = True
        conn.call_done(self, self.close_after)

    def on_lost(self, up: UpstreamConnection, exc: BaseException | None) -> None:
        self.up = None
        node = self.node
        why = _describe(exc) if exc is not None else "Server disconnected"
        if not self.answering:
            record = self.finish()
            self.conn.proxy.peer.connect_failed(node, why, int(time.time() * 1000))  # check it
            if self.method in _IDEMPOTENT_B and self.replayable and self.i < self.last:
                # The connection died before any answer (typically a pooled keep-alive
                # connection to a node that just died). HTTP lets a client repeat an
                # idempotent request (RFC 9110 9.2.2); a POST may have run: never resent.
                if record is not None:
                    self.conn.proxy.observer.attempt(
                        self.trace, record, "disconnect", self.started, True
                    )
                self._failed(f"{node}: {why}")
                self.next_or_fail()
                return
            log.warning("call failed after it may have started", extra={"node": node})
            self.ended(record, 502, AFTER)
            self.answer_error(502, f"node {node} failed during the call ({why}); not retried")
            return
        if exc is None and up.content_length is None and not up.chunked:
            self.on_done(up, False)  # a body delimited by the close: complete
            return
        # A half-read answer: the client sees its connection close before the end.
        self.ended(self.finish(self.status, answered=True), self.status)
        self.done = True
        self.flush()
        self.conn.close()

    def on_bad(self, up: UpstreamConnection, exc: Exception) -> None:
        self.up = None
        why = f"bad answer: {_parser_reason(exc)}"
        if self.answering:  # cut short: the client already has its head (Proxy.handle's
            # `finally` books the same record)
            self.ended(self.finish(self.status, answered=True), self.status)
        else:
            self.ended(self.finish(), 502, AFTER)
        log.warning("call failed after it may have started", extra={"node": self.node})
        if self.answering:
            self.done = True
            self.flush()
            self.conn.close()
            return
        self.answer_error(502, f"node {self.node} failed during the call ({why}); not retried")

    def upstream_paused(self, paused: bool) -> None:
        self.up_paused = paused
        self.conn.pause(paused)

    # -- endings --------------------------------------------------------------------------------

    def answer_error(self, status: int, msg: str, close: bool = False) -> None:
        """Answer with fnlb's own JSON error (no node answer was passed on)."""
        if self.done:
            return
        self.done = True
        close = close or not self.keep_alive or not self.body_done or self.conn.proxy.closing
        transport = self.conn.transport
        if transport is not None and not self.conn.closed:
            transport.write(json_answer(status, msg, close=close, head_only=self.method == b"HEAD"))
        self.conn.call_done(self, close)

    def abort(self) -> None:
        """The client went away: cancel the call, wherever it is."""
        if self.done:
            return
        self.done = True
        if self.held is not None:  # held by wait for warm: no node was tried
            warm = self.conn.proxy.warm
            assert warm is not None
            warm.cancel(self.held)
            self.held = None
            self.conn.proxy.observer.end(self.trace, self.observed(), self.key, self.picked,
                                         None, 0, 499, self.arrived, self.arrived,
                                         GONE)  # fmt: skip
            return
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        up = self.up
        if up is not None:
            self.up = None
            up.close()  # the node sees the connection close: the call is cancelled
        if self.answering:
            self.ended(self.finish(self.status, answered=True), self.status)
        else:  # the client went away before an answer: Proxy.handle's cancelled call
            self.ended(self.finish(), 499, GONE)


class _Fields:
    """A request's header fields (name, b": ", value, CRLF, ...) looked up by name, as the
    tracer reads a caller's context: only for a call that is traced or access-logged."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[bytes]) -> None:
        self._fields = fields

    def get(self, name: str, /) -> str | None:
        want = name.lower().encode("latin-1")
        fields = self._fields
        for i in range(0, len(fields), 4):
            if fields[i].lower() == want:
                return fields[i + 2].decode("latin-1")
        return None


class _CallView:
    """A `_Call` as the observer reads a request (fnlb.observe.calls.CallRequest), made only
    when a trace or the access log will read it."""

    __slots__ = ("_call",)

    def __init__(self, call: _Call) -> None:
        self._call = call

    @property
    def method(self) -> str:
        return self._call.method.decode("latin-1")

    @property
    def path(self) -> str:
        return self._call.path

    @property
    def remote(self) -> str | None:
        return self._call.conn.client.decode("latin-1") or None

    @property
    def headers(self) -> HeaderLookup:
        """Read by the tracer only, for a caller's context: a request that carries no
        context header (the parser notes them) answers None without a scan."""
        call = self._call
        return _Fields(call.fields) if call.context else _NO_FIELDS


class _NoContext:
    """The headers of a request without trace context, as the tracer looks for one."""

    __slots__ = ()

    def get(self, name: str, /) -> str | None:
        return None


_NO_FIELDS: Final = _NoContext()


class _Unread:
    """What the observer is handed when nothing will read the request (counting only)."""

    __slots__ = ()
    method = ""
    path = ""
    remote: str | None = None
    headers: HeaderLookup = _NO_FIELDS


_UNREAD: Final = _Unread()


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."
