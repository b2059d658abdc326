"""The composition root of `fnlb serve`: build the parts, start and stop them in order.

Start: node registry (from -nodes) -> HTTP client pools -> health checker -> listeners.
Stop (SIGTERM/SIGINT): close the listeners so no new call is accepted, let in-flight calls
finish for up to -shutdown-timeout seconds (0: as long as they take, as the original fnlb
did; a second signal cuts the wait short), then close the pools and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from fnlb.api.cluster import ClusterApi
from fnlb.api.gossip import GossipApi
from fnlb.api.nodes import NodesApi, bad_request_as_json, unknown_command
from fnlb.cluster.feed import LoadFeed
from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.registry import NodeDirectory, NodeRegistry
from fnlb.cluster.service import ClusterService
from fnlb.config import Settings, node_list, parse_listen
from fnlb.gossip.runtime import GossipRuntime
from fnlb.health.checker import HealthChecker
from fnlb.metrics import metrics_handler
from fnlb.observe.access import AccessLog
from fnlb.observe.calls import CallObserver
from fnlb.observe.dash import DashApi
from fnlb.observe.outcome import outcome_for
from fnlb.observe.tracing import Tracer
from fnlb.observe.zipkin import ZipkinExporter
from fnlb.proxy.handler import Proxy, UpstreamRequest, expect_handled_by_proxy
from fnlb.proxy.stats import CallStats
from fnlb.proxy.wait import parse_wait_header
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.policy import make_policy

log = logging.getLogger("fnlb.server")

_NO_LIMIT_S = 365 * 24 * 3600.0
_HEADER_LINE_MAX = 64 * 1024
"""Longest request line or header field taken from clients and nodes. aiohttp's default
(8 KiB) refused long tokens and query strings that Go's servers (Fn's, the original fnlb's:
1 MiB of headers in all) take."""
_AS_SENT: dict[str, Any] = {
    "auto_decompress": False,  # a compressed body is forwarded compressed, as it came
    "max_line_size": _HEADER_LINE_MAX,
    "max_field_size": _HEADER_LINE_MAX,
}
"""Settings of the servers calls arrive on: the bytes pass through as they were sent."""


@dataclass(frozen=True, slots=True)
class BoundAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def bind_socket(address: str) -> socket.socket:
    """A listening socket for `[host]:port`; an empty host listens on every interface."""
    host, port = parse_listen(address)
    if not host:
        if socket.has_dualstack_ipv6():
            return socket.create_server(
                ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=1024
            )
        return socket.create_server(("", port), backlog=1024)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server(sockaddr[:2], family=family, backlog=1024)


def _bound(sock: socket.socket) -> BoundAddress:
    host, port = sock.getsockname()[:2]
    return BoundAddress(host if ":" not in host else f"[{host}]", port)


class Balancer:
    """One fnlb process: traffic listener, management listener, health checks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster: ClusterService | None = None
        self.registry: NodeDirectory
        if settings.cluster_mode:
            self.cluster = ClusterService(settings)
            self.registry = self.cluster
        else:
            self.registry = NodeRegistry(
                healthy=settings.hc_healthy,
                unhealthy=settings.hc_unhealthy,
                nodes=node_list(settings.nodes),
            )
        self.load = (
            self.cluster.local_load if self.cluster else LocalLoad(epoch=int(time.time() * 1000))
        )
        self.stats = CallStats(self.load)
        self._runners: list[web.BaseRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._hc_session: aiohttp.ClientSession | None = None
        self.health: HealthChecker | None = None
        self.feed: LoadFeed | None = None
        self.proxy: Proxy | None = None
        self.listen_address: BoundAddress | None = None
        self.mgmt_address: BoundAddress | None = None
        # Cluster mode (gossip): only with --join or --gossip-listen.
        self.gossip: GossipRuntime | None = None
        self.zipkin = ZipkinExporter(settings.zipkin) if settings.zipkin else None
        self.access_log = AccessLog(settings.log_format) if settings.access_log else None
        self.observer = CallObserver(lambda *_: 0, counting=False)

    async def start(self) -> None:
        s = self.settings
        # Only opening a new connection is bounded (a black-holed node must not hold a call
        # for the OS's SYN timeout); a bound on taking a pooled connection would arm a timer
        # on every call for nothing. Calls themselves have no deadline: functions run long.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=10),
            timeout=timeout,
            auto_decompress=False,
            max_line_size=_HEADER_LINE_MAX,
            max_field_size=_HEADER_LINE_MAX,
            cookie_jar=aiohttp.DummyCookieJar(),
            request_class=UpstreamRequest,
            trust_env=False,
        )
        self._hc_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        self.health = HealthChecker(self.registry, s, self._hc_session)
        self.routing = make_policy(s.routing, random.Random(), time.time)
        router = self.routing.router if isinstance(self.routing, HotSetPolicy) else None
        if self.cluster is not None:
            cluster = self.cluster
            self.feed = LoadFeed(
                cluster.state.load,
                self.load,
                lambda: cluster.view,
                router=router,
                send_backoff=cluster.state.queue_backoff,
                node_readings=lambda: cluster.node_metrics,
            )
            if router is not None:
                cluster.on_backoff(router)
        else:
            registry = self.registry
            self.feed = LoadFeed(
                ClusterLoad(),
                self.load,
                lambda: registry.view,
                router=router,
                own_digests_as="self",
                node_readings=lambda: registry.node_metrics,
            )
        self.observer = CallObserver(
            outcome_for(self.routing, self.registry),
            counting=s.call_metrics,
            access=self.access_log,
            tracer=None
            if self.zipkin is None
            else Tracer(self.zipkin, sample_rate=s.trace_sample_rate),
        )
        observer = self.observer
        self.registry.on_change(lambda node, added: None if added else observer.forget(node))
        self.proxy = Proxy(
            self.registry,
            self._session,
            passive_failure=self.health.passive_failure,
            parse_wait=parse_wait_header,
            load=self.load,
            routing=self.routing,
            observer=self.observer,
        )
        api = NodesApi(self.registry, self.stats)
        # Port 0 asks the OS for a free port per listener, so two ":0" addresses are two.
        shared = s.listen == s.mgmt_listen and parse_listen(s.listen)[1] != 0
        # Bind first: peers learn our management port from gossip, which starts before we serve.
        mgmt_sock = bind_socket(s.mgmt_listen)
        traffic_sock = None if shared else bind_socket(s.listen)
        self.mgmt_address = _bound(mgmt_sock)
        self.listen_address = self.mgmt_address if traffic_sock is None else _bound(traffic_sock)
        if self.cluster is not None:
            self.cluster.check_now = self.health.check_now
            await self.cluster.start(self.mgmt_address.port)
            self.gossip = self.cluster.runtime
        # No application-wide body limit: each API handler bounds its own body (413 beyond
        # 64 KiB), and on a shared port this application also carries calls, whose bodies the
        # proxy reads whole up to its buffer limit and streams beyond it.
        mgmt = web.Application(middlewares=[bad_request_as_json], client_max_size=0)
        api.add_routes(mgmt)
        GossipApi(self.gossip).add_routes(mgmt)
        ClusterApi(self.cluster, self.feed).add_routes(mgmt)
        mgmt.router.add_route("GET", "/metrics", metrics_handler(self))
        DashApi(self).add_routes(mgmt)
        if traffic_sock is None:
            # The proxy answers `Expect` itself (it has no router in front on its own port).
            mgmt.router.add_route(
                "*", "/{tail:.*}", self.proxy.handle, expect_handler=expect_handled_by_proxy
            )
        else:
            mgmt.router.add_route("*", "/{tail:.*}", unknown_command)
            await self._serve_calls(self.proxy.handle, traffic_sock)
        await self._serve(mgmt, mgmt_sock)
        self.health.start()
        self.feed.start()
        if self.zipkin is not None:
            self.zipkin.start()
        if self.access_log is not None:
            self.access_log.start()
        log.info(
            "fnlb is serving",
            extra={"listen": str(self.listen_address), "mgmt": str(self.mgmt_address)},
        )

    async def _serve(self, app: web.Application, sock: socket.socket) -> None:
        timeout = self.settings.shutdown_timeout or _NO_LIMIT_S
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=timeout,
            **_AS_SENT,  # on a shared port (the default) calls come through this app too
        )
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()

    async def _serve_calls(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        sock: socket.socket,
    ) -> None:
        """The traffic listener: aiohttp's low-level server, every request to `handler`.

        Every path goes to the proxy, so an `Application` would only add cost per call: a
        router lookup, a match-info object, middleware and signal checks: ~30k of the ~700k
        CPU instructions of a proxied call (callgrind).
        """
        loop = asyncio.get_running_loop()

        def request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            # No size limit: small bodies are read whole, large ones streamed (the proxy).
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=0
            )

        server = web.Server(
            handler,
            request_factory=request,
            handler_cancellation=True,
            access_log=None,
            **_AS_SENT,
        )
        runner = web.ServerRunner(
            server,
            handle_signals=False,
            shutdown_timeout=self.settings.shutdown_timeout or _NO_LIMIT_S,
        )
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()

    async def stop(self) -> None:
        """Stop accepting, drain in-flight calls (see module docstring), release everything."""
        if self.feed is not None:
            await self.feed.stop()
        if self.cluster is not None:
            await self.cluster.stop()  # leave the cluster first, so peers stop counting on us
        await asyncio.gather(*(r.cleanup() for r in self._runners))
        self._runners.clear()
        if self.health is not None:
            await self.health.stop()
        if self.zipkin is not None:
            await self.zipkin.stop()  # after the drain: the last calls' spans go too
        if self.access_log is not None:
            await self.access_log.stop()
        for session in (self._session, self._hc_session):
            if session is not None:
                await session.close()


async def serve(
    settings: Settings, ready: Callable[[Balancer], Awaitable[None]] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; the process exit code."""
    balancer = Balancer(settings)
    await balancer.start()
    # Everything alive now (modules, tables, pools) lives as long as the process: keep the
    # cyclic garbage collector from re-scanning it on every collection of the request path.
    gc.freeze()
    if ready is not None:
        await ready(balancer)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
        log.info("shutting down", extra={"drain_s": settings.shutdown_timeout or "unlimited"})
        stopping.clear()
        drain = asyncio.ensure_future(balancer.stop())
        interrupted = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait({drain, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if drain not in done:
            log.warning("second signal: not waiting for in-flight calls")
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        interrupted.cancel()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0
