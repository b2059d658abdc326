"""The aiohttp data plane (-data-plane=aiohttp): one handler that forwards a call to the node
routing chose. The default plane (fnlb.proxy.fast_server) behaves as this one does; this is
its reference, and it still carries calls that follow an API request on a shared-port
connection.

Per call: function key -> the Peer's candidates over its current view -> first node that
takes the call -> response streamed back. Each attempt is told to the Peer when it starts
and, as one record (fnlb.routing.attempt), when it ends: the Peer feeds its load figures
(in-flight, rate, wait: what the cluster shares; the per-second counts of `/1/lb/stats`) and
the routing policy from it. The current view is read once, with no lock and no await.

Retries never risk running a POST twice. A call moves to the next candidate only when it is
known not to have started: the connection could not be opened (nothing was sent), or the
node answered 503 with `Retry-After` (Fn's "server too busy", sent before the call runs), or
- for idempotent methods only, as HTTP allows - the connection died before any answer.
A busy answer can only be retried when the request body is still in hand, so bodies up to
`BUFFER_LIMIT` are read first (cheaper too); larger or unsized ones are streamed and only the
connection failure is retried. A pooled connection the node has already closed is never
used, whatever the method (fnlb.proxy.node_connector). Anything after the request may have
reached the function — a reset, a timeout, a half-read response — ends in a 502 naming the
node, never a resend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from fnlb.api.jsonio import json_error
from fnlb.observe.calls import AFTER, ALL_FAILED, GONE, NO_NODE, CallObserver
from fnlb.peer.core import Peer
from fnlb.proxy.wait import retry_after_seconds, wait_seconds
from fnlb.proxy.warm_hold import FutureTicket, WarmHolds
from fnlb.routing.attempt import NO_ANSWER, Attempt
from fnlb.routing.function_key import function_key
from fnlb.routing.picked import FixedPick

log = logging.getLogger("fnlb.proxy")

BUFFER_LIMIT: Final = 1 << 20
"""Request and response bodies up to this size (bytes) are read whole; larger ones stream."""

_CHUNK: Final = 1 << 16

URL_CACHE_SIZE: Final = 4096
"""Node URLs kept parsed (node + path and query): parsing one per call is a measurable cost,
and calls repeat their paths. Past this many, the cache starts again (bounded memory)."""

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods a client may repeat after a failure (RFC 9110 9.2.2)."""

_REPLACED_UPSTREAM: Final = HOP_BY_HOP | {
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
}
"""Not copied to the node as they came: hop-by-hop, and the X-Forwarded-* we rewrite."""

_NOT_COPIED_FROM_BUFFERED_RESPONSE: Final = HOP_BY_HOP | {"content-length"}

_NOT_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""Attempts that failed before a byte of the call was sent (checked first: a connector error
is also an OS error)."""
_DIED_BEFORE_ANSWER: Final = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
"""Attempts whose connection died before any answer came."""
_NODE_SUSPECT: Final = (*_NOT_SENT, *_DIED_BEFORE_ANSWER)
"""Failures after which the node may be dead: it is checked at once."""


class UpstreamRequest(aiohttp.ClientRequest):
    """A request to a node that carries the client's headers only.

    aiohttp adds Accept, Accept-Encoding and User-Agent to requests that lack them; a proxy
    must not (a client that did not ask for gzip must not get it). Skipping them here, rather
    than through `skip_auto_headers`, also avoids a header copy per call.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        return None


class Proxy:
    """Forwards calls to Fn nodes; `handle` is the aiohttp handler."""

    def __init__(
        self,
        peer: Peer,
        session: aiohttp.ClientSession,
        observer: CallObserver | None = None,
        warm: WarmHolds | None = None,
    ) -> None:
        self._peer = peer
        self.warm = warm
        """Wait for warm (-warm-wait, fnlb.proxy.warm_hold); None: no call is held."""
        self._session = session
        self._urls: dict[str, URL] = {}
        self.observer = observer or CallObserver(FixedPick(), counting=False)
        """Metrics, access log and traces (fnlb.observe): told of each attempt that did not
        answer and of the call's end, with the same `Attempt` record the Peer gets."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = time.time()  # observe: the whole call's start
        if request.headers.get("Expect"):
            await expect_continue(request)
        raw_path = request.raw_path
        path = _decoded_path(request, raw_path)
        key = function_key(path)
        peer = self._peer
        nodes = peer.candidates(key, path)
        obs = self.observer
        picked = obs.routed.picked  # observe: what routing put first, read before any await
        if not nodes:
            known = len(peer.view.states)
            obs.end(None, request, key, picked, None, 0, 503, arrived, arrived, NO_NODE)
            return json_error(
                503,
                "no Fn node is online to take the call"
                + (f" ({known} known, none healthy)" if known else " (no nodes configured)"),
            )
        headers = upstream_headers(request)
        trace = obs.begin(request, headers) if obs.tracer is not None else None  # observe
        body: bytes | aiohttp.StreamReader | None = None
        replayable = True
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= BUFFER_LIMIT:
                body = await request.read()
            else:
                body = request.content
                replayable = False
        warm = self.warm
        if warm is not None:  # wait for warm: perhaps held until a container frees
            ticket = FutureTicket(asyncio.get_running_loop().create_future())
            hold = warm.hold(key, nodes[0], ticket, arrived)
            if hold is not None:
                try:
                    await ticket.future
                except asyncio.CancelledError:  # the client went away while held
                    warm.cancel(hold)
                    obs.end(trace, request, key, picked, None, 0, 499, arrived, arrived, GONE)
                    raise
        failures: list[str] = []
        last = len(nodes) - 1
        urls = self._urls
        for i, node in enumerate(nodes):
            target = f"http://{node}{raw_path}"
            url = urls.get(target)
            if url is None:
                if len(urls) >= URL_CACHE_SIZE:
                    urls.clear()
                url = urls[target] = URL(target, encoded=True)
            started = time.time()
            peer.attempt_started(key, node, started)
            if warm is not None:
                warm.started(key, node, started)
            if trace is not None:  # observe: the node's traceparent names this attempt
                trace.attempt_started(node, started)
            try:
                resp = await self._session.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
            except BaseException as e:
                failed = Attempt(key, node, path, NO_ANSWER, time.time())
                self._finished(failed)
                if not isinstance(e, aiohttp.ClientError | TimeoutError):
                    obs.end(trace, request, key, picked, failed, i, 499, arrived, started, GONE)
                    raise  # the client went away: the call is cancelled
                why = _describe(e)
                if isinstance(e, _NODE_SUSPECT):
                    peer.connect_failed(node, why, int(time.time() * 1000))  # check it now
                # Nothing was sent: the call can go to the next node, body untouched. Or the
                # connection died before any answer (typically a pooled keep-alive connection
                # to a node that just died): HTTP lets a client repeat an idempotent request
                # (RFC 9110 9.2.2); a POST may have run: never resent.
                if isinstance(e, _NOT_SENT):
                    obs.attempt(trace, failed, "connect", started, i < last)
                    failures.append(f"{node}: {why}")
                    continue
                if (
                    isinstance(e, _DIED_BEFORE_ANSWER)
                    and request.method in IDEMPOTENT
                    and replayable
                    and i < last
                ):
                    obs.attempt(trace, failed, "disconnect", started, True)
                    failures.append(f"{node}: {why}")
                    continue
                log.warning("call failed after it may have started", extra={"node": node})
                obs.end(trace, request, key, picked, failed, i, 502, arrived, started, AFTER)
                return json_error(502, f"node {node} failed during the call ({why}); not retried")
            status = resp.status
            if status == 503 and "Retry-After" in resp.headers and replayable and i < last:
                resp.release()
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                busy = Attempt(key, node, path, 503, time.time(), None, retry_after)
                self._finished(busy)
                obs.attempt(trace, busy, "busy", started, True)
                failures.append(f"{node}: busy (503)")
                continue
            # The answer: read small bodies whole (one write back), stream the rest.
            answered = time.time()
            try:
                length = resp.content_length
                if length is not None and length <= BUFFER_LIMIT and request.method != "HEAD":
                    return web.Response(
                        status=status,
                        reason=resp.reason,
                        body=await resp.read(),
                        headers=_filtered(resp.headers, _NOT_COPIED_FROM_BUFFERED_RESPONSE),
                    )
                return await _stream(request, resp, node)
            except aiohttp.ClientError as e:
                # The answer broke off before its end (the node closed, or sent a bad
                # chunk) while it was read whole, before its head went on: a 502, as a
                # call that failed after it may have started (never a 500).
                resp.close()
                status = 502  # what the client got, for the call's record below
                log.warning("call failed after it may have started", extra={"node": node})
                why = _describe(e)
                return json_error(502, f"node {node} failed during the call ({why}); not retried")
            except BaseException:
                resp.close()  # never hand a half-read connection back to the pool
                raise
            finally:
                resp.release()
                done = _answered(key, node, path, resp, started, answered)
                self._finished(done)
                obs.end(trace, request, key, picked, done, i, status, arrived, started)
        obs.end(trace, request, key, picked, None, last, 502, arrived, arrived, ALL_FAILED)
        return json_error(502, f"every Fn node failed: {'; '.join(failures)}")

    def _finished(self, attempt: Attempt) -> None:
        """An attempt ended: its record to the Peer, and to wait for warm (which may send a
        held call on, onto the container this one frees)."""
        self._peer.attempt_finished(attempt)
        if self.warm is not None:
            self.warm.finished(attempt.key, attempt.node, attempt.ended, attempt.answer_s)


def _answered(
    key: str, node: str, path: str, resp: aiohttp.ClientResponse, started: float, at: float
) -> Attempt:
    """The record of an attempt whose answer (its headers came at `at`) went to the client."""
    headers = resp.headers
    status = resp.status
    retry_after = retry_after_seconds(headers.get("Retry-After")) if status == 503 else None
    wait = wait_seconds(headers.get("Xxx-Fxlb-Wait"))
    return Attempt(key, node, path, status, time.time(), wait, retry_after, at - started, at)


async def _stream(
    request: web.BaseRequest, resp: aiohttp.ClientResponse, node: str
) -> web.StreamResponse:
    out = web.StreamResponse(
        status=resp.status, reason=resp.reason, headers=_filtered(resp.headers, HOP_BY_HOP)
    )
    await out.prepare(request)
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            await out.write(chunk)
    except aiohttp.ClientError:
        # The head went on and cannot be taken back: the client learns that the answer broke
        # off from its connection closing before the body's end (left open, it would wait
        # for the rest until its own timeout).
        resp.close()
        log.warning("call failed after it may have started", extra={"node": node})
        transport = request.transport
        if transport is not None:
            transport.close()
        return out
    await out.write_eof()
    return out


def upstream_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """End-to-end request headers plus X-Forwarded-For/-Proto/-Host.

    A plain list: aiohttp builds its own header map from it, so building one here too would
    copy every header twice per call.
    """
    src = request.headers
    out: list[tuple[str, str]] = []
    replaced: dict[str, str] = {}  # the first value of each header not copied as it came
    for k, v in src.items():
        lower = k.lower()
        if lower in _REPLACED_UPSTREAM:
            replaced.setdefault(lower, v)
        else:
            out.append((k, v))
    connection = replaced.get("connection")
    if connection:
        drop = _with_connection_options(_REPLACED_UPSTREAM, connection)
        if len(drop) > len(_REPLACED_UPSTREAM):  # it names more than keep-alive or close
            out = [(k, v) for k, v in out if k.lower() not in drop]
    prior = replaced.get("x-forwarded-for")
    peer = request.remote or ""
    out.append(("X-Forwarded-For", f"{prior}, {peer}" if prior else peer))
    out.append(("X-Forwarded-Proto", replaced.get("x-forwarded-proto") or request.scheme))
    host = replaced.get("x-forwarded-host") or request.host
    if host:
        out.append(("X-Forwarded-Host", host))
    return out


async def expect_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` so the client sends its body; 417 for other expectations.

    What aiohttp's router does for a route, done here because the traffic port has no router:
    HTTP/1.0 clients get nothing (they cannot expect), the header itself is never forwarded.
    """
    if request.version != aiohttp.HttpVersion11:
        return
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own size is counted from its status line
    await request.writer.drain()


async def expect_handled_by_proxy(request: web.Request) -> None:
    """An `expect_handler` for a route to `Proxy.handle`, which answers `Expect` itself."""
    return None


def _decoded_path(request: web.BaseRequest, raw_path: str) -> str:
    """The request's decoded path, without yarl's decoding when there is nothing to decode."""
    if raw_path[:1] == "/" and "%" not in raw_path and "#" not in raw_path:
        return raw_path.partition("?")[0]
    return request.path


def _filtered(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> list[tuple[str, str]]:
    connection = headers.get("Connection")
    if connection:
        drop = _with_connection_options(drop, connection)
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


_DROP_CACHE_SIZE: Final = 256
_drop_sets: dict[tuple[frozenset[str], str], frozenset[str]] = {}


def _with_connection_options(drop: frozenset[str], connection: str) -> frozenset[str]:
    """`drop` plus the header names a `Connection` header lists (they are hop-by-hop too).

    Nodes send the same `Connection: keep-alive` on every answer, so the sets are kept rather
    than rebuilt per call; past `_DROP_CACHE_SIZE` distinct ones the cache starts again.
    """
    key = (drop, connection)
    found = _drop_sets.get(key)
    if found is None:
        if len(_drop_sets) >= _DROP_CACHE_SIZE:
            _drop_sets.clear()
        found = drop | {t.strip().lower() for t in connection.split(",")}
        _drop_sets[key] = found
    return found


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."
