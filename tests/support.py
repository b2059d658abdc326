"""Test helpers: a scriptable Fn-like backend and an in-process fnlb on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from fnlb.config import Settings
from fnlb.server import Balancer
from testkit.peers import wait_for as wait_for  # one poller for tests and testkit

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoopbackNode:
    """A raw TCP stand-in for an Fn node on 127.0.0.1 (an ephemeral port): a subclass says
    what it answers in `_serve`, byte for byte, where a real HTTP server would correct it."""

    address: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


@dataclasses.dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body_len: int


class Backend:
    """An Fn-like aiohttp server that records calls; `handler` decides each call's answer.

    `GET /version` answers `{"version": self.version}` (or `self.version_status`) and
    `GET /metrics` answers 404, neither recorded, so health checks do not disturb what a test
    counts.
    """

    def __init__(self, name: str, handler: Handler | None = None) -> None:
        self.name = name
        self.handler: Handler = handler or self.default
        self.version = "0.3.579"
        self.version_status = 200
        self.record_metrics = False
        """Treat GET /metrics (read by health checks) as a call, to test how it is read."""
        self.seen: list[Seen] = []
        self.peer_ports: set[int] = set()
        self.cancelled = 0
        self.address = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def default(self, request: web.Request) -> web.StreamResponse:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        self.seen[-1].body_len = total
        return web.json_response(
            {"node": self.name, "received": total},
            headers={"Fn-Call-Id": f"call-{len(self.seen)}", "Xxx-Fxlb-Wait": "1.5ms"},
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/version":
            return web.json_response({"version": self.version}, status=self.version_status)
        if request.path == "/metrics" and request.method == "GET" and not self.record_metrics:
            return web.Response(status=404)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peer_ports.add(peer[1])
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), 0))
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, reuse_address=True)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


BALANCER_DEFAULTS: dict[str, Any] = {}
"""Settings every `running_balancer` starts from (tests/proxy runs its tests on both data planes
by setting `data_plane` here)."""


@contextlib.asynccontextmanager
async def running_balancer(**overrides: Any) -> AsyncIterator[Balancer]:
    """An fnlb on loopback ports chosen by the OS (traffic and management separate)."""
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "mgmt_listen": "127.0.0.1:0",
        "hc_interval": 0.2,
        "hc_timeout": 1.0,
        # In-process tests look at this process's own data plane; tests/test_workers_*.py and
        # the CLI tests run the default (one worker per CPU) in real processes.
        "workers": 1,
    }
    values.update(BALANCER_DEFAULTS)
    values.update(overrides)
    balancer = Balancer(Settings(**values))
    await balancer.start()
    try:
        yield balancer
    finally:
        await balancer.stop()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


async def eventually(check: Callable[[], Any], within: float = 20.0) -> None:
    """Poll `check()` (plain or a coroutine) until true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.1)
