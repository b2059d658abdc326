"""The composition root of `fnlb serve`: build the parts, start and stop them in order.

One `Peer` (fnlb.peer.core) decides everything; the asyncio shells around it only pump: the
proxy (calls), the health checker, the pump (timer, checks to run, saves), and in cluster mode
the cluster shell (gossip, state dir, write acks). A lone fnlb is the same Peer without gossip.

Start: peer (from -nodes or the state dir) -> HTTP client pools -> health checker ->
gossip -> listeners -> pump.
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
import ssl
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

from fnlb.api import openapi
from fnlb.api.cluster import ClusterApi
from fnlb.api.gossip import GossipApi
from fnlb.api.metrics import metrics_handler
from fnlb.api.nodes import NodesApi, bad_request_as_json, unknown_command
from fnlb.api.probes import ProbesApi, readiness_problems
from fnlb.api.security import ManagementSecurity
from fnlb.api.stats import CallStats
from fnlb.config import Settings, node_list, parse_listen, worker_count
from fnlb.discovery.source import node_source
from fnlb.gossip.runtime import GossipRuntime
from fnlb.observe.access import AccessLog
from fnlb.observe.calls import CallObserver, CallTotals
from fnlb.observe.dash import DashApi
from fnlb.observe.outcome import outcome_for
from fnlb.observe.prom import ObservedCollector
from fnlb.observe.tracing import Tracer
from fnlb.observe.zipkin import ZipkinExporter
from fnlb.peer.control_loop import metrics_stale_ms
from fnlb.peer.core import LONE_NAME, Peer
from fnlb.proxy.fast_server import FastProxy, hand_to_protocol
from fnlb.proxy.handler import Proxy, UpstreamRequest, expect_handled_by_proxy
from fnlb.proxy.node_connector import CheckedConnector
from fnlb.proxy.warm_hold import WarmHolds
from fnlb.proxy.workers import WorkerPool, cpus_available
from fnlb.routing.policies import make_policy
from fnlb.shell.cluster import ClusterService, Restored, now_ms, peer_name, restore
from fnlb.shell.health_checks import HealthChecker
from fnlb.shell.pump import Pump

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
    """One fnlb process: traffic listener, management listener, health checks, gossip."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Tokens, audit and TLS of the management plane (#12; fnlb/api/security.py); first,
        # so that settings it refuses stop us before anything else is built.
        self.security = ManagementSecurity(
            settings, lambda: self.gossip.name if self.gossip else settings.node_name or "lone"
        )
        # -db picks who owns the node list: memory, a SQLite file, or Kubernetes (#13).
        self.discovery = node_source(settings)
        self.serving = False
        self.draining = False
        if settings.cluster_mode:
            name = peer_name(settings)
            restored = restore(settings, name)
        else:
            name = LONE_NAME
            restored = Restored(
                None, self.discovery.initial_nodes(node_list(settings.nodes)), [], None
            )
        self.peer = Peer(
            name,
            routing=make_policy(settings.routing, random.Random(), time.time),
            clock_ms=now_ms,
            healthy=settings.hc_healthy,
            unhealthy=settings.hc_unhealthy,
            gossip=settings.cluster_mode,
            nodeset=restored.nodeset,
            seed=restored.seed,
            epoch_ms=now_ms(),
            metrics_stale_ms=metrics_stale_ms(settings.hc_interval),
        )
        self.cluster = (
            ClusterService(settings, self.peer, restored) if settings.cluster_mode else None
        )
        self.stats = CallStats(self.peer.local)
        self._runners: list[web.BaseRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._hc_session: aiohttp.ClientSession | None = None
        self.health: HealthChecker | None = None
        self.pump: Pump | None = None
        self.proxy: Proxy | None = None
        self.fast: FastProxy | None = None
        """The fast data plane (-data-plane=fast): carries calls in place of `proxy`."""
        self._fast_servers: list[asyncio.AbstractServer] = []
        self.workers: WorkerPool | None = None
        """With -workers N > 1: the processes that serve calls (this one serves none)."""
        self.listen_address: BoundAddress | None = None
        self.mgmt_address: BoundAddress | None = None
        # Cluster mode (gossip): only with --join or --gossip-listen.
        self.gossip: GossipRuntime | None = None
        # What fnlb does, made visible (#14; fnlb/observe): call metrics, access log, traces.
        self.zipkin = ZipkinExporter(settings.zipkin) if settings.zipkin else None
        self.access_log = AccessLog(settings.log_format) if settings.access_log else None
        self.observer = CallObserver(
            outcome_for(self.peer),
            counting=settings.call_metrics,
            access=self.access_log,
            tracer=None
            if self.zipkin is None
            else Tracer(self.zipkin, sample_rate=settings.trace_sample_rate),
        )
        self.calls = CallTotals(self.observer)
        """What /metrics and the dashboard read: this process's calls and its workers'."""

    async def start(self) -> None:
        s = self.settings
        # Only opening a new connection is bounded (a black-holed node must not hold a call
        # for the OS's SYN timeout); a bound on taking a pooled connection would arm a timer
        # on every call for nothing. Calls themselves have no deadline: functions run long.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout)
        self._session = aiohttp.ClientSession(
            # never hands out a pooled connection the node has closed (fnlb.proxy.node_connector)
            connector=CheckedConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=10),
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
        self.health = HealthChecker(self.peer, s, self._hc_session)
        self.pump = Pump(self.peer, self.health, self.cluster)
        # One wait for warm per process, for both planes (calls after an API request on a
        # shared port take the aiohttp one): its counts are of this process's calls.
        self.warm = WarmHolds(s.warm_wait_s, self.observer) if s.warm_wait_s > 0 else None
        self.proxy = Proxy(self.peer, self._session, self.observer, self.warm)
        api = NodesApi(self.peer, self.cluster, self.stats, self.discovery)
        # Port 0 asks the OS for a free port per listener, so two ":0" addresses are two.
        shared = s.listen == s.mgmt_listen and parse_listen(s.listen)[1] != 0
        # Bind first: peers learn our management port from gossip, which starts before we serve.
        mgmt_sock = bind_socket(s.mgmt_listen)
        traffic_sock = None if shared else bind_socket(s.listen)
        self.mgmt_address = _bound(mgmt_sock)
        self.listen_address = self.mgmt_address if traffic_sock is None else _bound(traffic_sock)
        if self.cluster is not None:
            await self.cluster.start(self.mgmt_address.port, self.security.mgmt_ssl is not None)
            self.gossip = self.cluster.runtime
        # No application-wide body limit: each API handler bounds its own body (413 beyond
        # 64 KiB), and on a shared port this application also carries calls, whose bodies the
        # proxy reads whole up to its buffer limit and streams beyond it.
        mgmt = web.Application(
            middlewares=self.security.middlewares(bad_request_as_json), client_max_size=0
        )
        api.add_routes(mgmt)
        self.security.add_routes(mgmt)
        openapi.add_routes(mgmt)
        ProbesApi(self.readiness_problems).add_routes(mgmt)  # #13: /healthz, /readyz
        GossipApi(self.gossip).add_routes(mgmt)
        ClusterApi(self.peer, self.cluster).add_routes(mgmt)
        observed = ObservedCollector(self.calls, self.peer, self.cluster, self.zipkin, s.routing)
        mgmt.router.add_route(
            "GET", "/metrics", metrics_handler(self.peer, self.cluster, [observed])
        )
        DashApi(self.calls, self.peer, self.cluster).add_routes(mgmt)
        api_paths = frozenset(
            r.canonical.encode() for r in mgmt.router.resources() if "{" not in r.canonical
        )
        if traffic_sock is None:
            # The proxy answers `Expect` itself (it has no router in front on its own port).
            mgmt.router.add_route(
                "*", "/{tail:.*}", self.proxy.handle, expect_handler=expect_handled_by_proxy
            )
        else:
            mgmt.router.add_route("*", "/{tail:.*}", unknown_command)
        count = worker_count(s, cpus_available())
        if count > 1:
            # Shared port: the workers hand API connections to this process's aiohttp.
            # (Never with TLS there: fnlb.config refuses it, and -workers 0 means one then.)
            server = (await self._runner(mgmt)).server if traffic_sock is None else None
            if traffic_sock is not None:
                await self._serve(mgmt, mgmt_sock, self.security.mgmt_ssl)
            self.workers = WorkerPool(
                count,
                mgmt_sock if traffic_sock is None else traffic_sock,
                peer=self.peer,
                options={
                    "routing": s.routing,
                    "connect_timeout": s.connect_timeout,
                    "warm_wait_s": s.warm_wait_s,
                    "shutdown_timeout": s.shutdown_timeout,
                    "log_level": s.log_level,
                    "api_paths": sorted(p.decode() for p in api_paths),
                    # fnlb.observe in each worker (fnlb.proxy.worker)
                    "log_format": s.log_format,
                    "access_log": s.access_log,
                    "call_metrics": s.call_metrics,
                    "zipkin": s.zipkin,
                    "trace_sample_rate": s.trace_sample_rate,
                    # each worker loads them itself (and new workers, on SIGHUP, anew)
                    "tls_cert": s.tls_cert,
                    "tls_key": s.tls_key,
                },
                api_server=server,
                calls=self.calls,
            )
            await self.workers.start()
        elif s.data_plane == "fast":
            if traffic_sock is None:
                # Shared port: the fast plane reads every connection first and hands one
                # whose request is for the API to aiohttp's server (which then keeps it, and
                # proxies any call that follows on it by the aiohttp path). With TLS the
                # hand-over passes the TLS transport itself: aiohttp reads decrypted bytes.
                server = (await self._runner(mgmt)).server
                assert server is not None
                await self._serve_fast(mgmt_sock, self.security.mgmt_ssl, server, api_paths)
            else:
                await self._serve_fast(traffic_sock, self.security.traffic_ssl)
                await self._serve(mgmt, mgmt_sock, self.security.mgmt_ssl)
        else:
            if traffic_sock is not None:
                await self._serve_calls(self.proxy.handle, traffic_sock, self.security.traffic_ssl)
            await self._serve(mgmt, mgmt_sock, self.security.mgmt_ssl)
        await self.discovery.start(self.peer)  # e.g. the Kubernetes pod watch
        self.health.start()
        self.pump.start()
        if self.zipkin is not None:
            self.zipkin.start()
        if self.access_log is not None:
            self.access_log.start()
        self.serving = True
        log.info(
            "fnlb is serving",
            extra={"listen": str(self.listen_address), "mgmt": str(self.mgmt_address)},
        )

    async def _serve_fast(
        self,
        sock: socket.socket,
        tls: ssl.SSLContext | None,
        management: web.Server | None = None,
        api_paths: frozenset[bytes] = frozenset(),
    ) -> None:
        """Calls on `sock` through the fast data plane (fnlb.proxy.fast_server).

        `tls`: the listener's context (fnlb.tls: its SNI hook picks the newest certificate,
        so a SIGHUP reload reaches this listener as it reaches aiohttp's)."""
        self.fast = FastProxy(
            self.peer,
            connect_timeout=self.settings.connect_timeout,
            management=hand_to_protocol(management) if management is not None else None,
            management_paths=api_paths,
            scheme=b"http" if tls is None else b"https",
            observer=self.observer,
            warm=self.warm,
        )
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self.fast.protocol, sock=sock, backlog=1024, ssl=tls)
        self.fast.start()
        self._fast_servers.append(server)

    async def _serve(
        self, app: web.Application, sock: socket.socket, tls: ssl.SSLContext | None
    ) -> None:
        runner = await self._runner(app)
        await web.SockSite(runner, sock, ssl_context=tls).start()

    async def _runner(self, app: web.Application) -> web.AppRunner:
        """aiohttp's runner for `app`, set up (not yet on a socket)."""
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
        return runner

    async def _serve_calls(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        sock: socket.socket,
        tls: ssl.SSLContext | None,
    ) -> None:
        """The traffic listener: aiohttp's low-level server, every request to `handler`.

        Every path goes to the proxy, so an `Application` would only add cost per call: a
        router lookup, a match-info object, middleware and signal checks (docs/benchmarks.md,
        "Figures behind design choices", has the instruction counts).
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
        await web.SockSite(runner, sock, ssl_context=tls).start()

    async def stop(self) -> None:
        """Stop accepting, drain in-flight calls (see module docstring), release everything."""
        self.draining = True  # /readyz fails first
        if self.pump is not None:
            await self.pump.stop()
        if self.cluster is not None:
            await self.cluster.stop()  # leave the cluster first, so peers stop counting on us
        for server in self._fast_servers:
            server.close()
        if self.workers is not None:
            await self.workers.stop(self.settings.shutdown_timeout or None)
        if self.warm is not None:  # held calls go on now, and are answered within the drain
            self.warm.drain()
        drains = [r.cleanup() for r in self._runners]
        if self.fast is not None:
            drains.append(self.fast.drain(self.settings.shutdown_timeout or None))
        await asyncio.gather(*drains)
        self._fast_servers.clear()
        self._runners.clear()
        await self.discovery.stop()  # after the drain, which may still PUT to a -db file
        if self.health is not None:
            await self.health.stop()
        if self.zipkin is not None:
            await self.zipkin.stop()  # after the drain: the last calls' spans go too
        if self.access_log is not None:
            await self.access_log.stop()
        for session in (self._session, self._hc_session):
            if session is not None:
                await session.close()

    def reload(self) -> None:
        """SIGHUP: tokens and TLS files read again; with -workers, new workers replace the
        old ones gracefully (fnlb.proxy.workers: they read the TLS files anew too)."""
        self.security.reload()
        if self.workers is not None and not self.draining:
            self.workers.reload()

    def readiness_problems(self) -> list[str]:
        """Why /readyz answers 503 now (fnlb.api.probes); empty when ready."""
        return readiness_problems(
            serving=self.serving,
            draining=self.draining,
            node_count=len(self.peer.view.states),
            joined=self.gossip.joined if self.gossip is not None else None,
            source=self.discovery.ready(),
        )


async def serve(
    settings: Settings, ready: Callable[[Balancer], Awaitable[None]] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; the process exit code."""
    balancer = Balancer(settings)
    loop = asyncio.get_running_loop()
    # Signals are taken from the start: the API answers before the workers listen, so a
    # supervisor may signal while we start. SIGTERM/SIGINT then stop us once started, and a
    # SIGHUP (whose default would end the process) is acted on then.
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    early_hup: list[bool] = []
    loop.add_signal_handler(signal.SIGHUP, early_hup.append, True)
    try:
        await balancer.start()
    except BaseException:
        for sig in (*signals, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        raise
    # Everything alive now (modules, tables, pools) lives as long as the process: keep the
    # cyclic garbage collector from re-scanning it on every collection of the request path.
    gc.freeze()
    if ready is not None:
        await ready(balancer)
    loop.add_signal_handler(signal.SIGHUP, balancer.reload)  # tokens, TLS files, workers
    if early_hup and not stopping.is_set():
        balancer.reload()
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
        for sig in (*signals, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0
