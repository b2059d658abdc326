"""One emulated Fn server: aiohttp routes like Fn's around one PoolModel.

This is the thin asyncio adapter of the sans-I/O model (as aioquic's protocol is of its
connection): it feeds `loop.time()` in, keeps exactly one `loop.call_at` timer armed at the
model's `next_timer()`, and turns model events into HTTP answers. Per call it does one
submit, one timer step and one future; nothing is logged and no metric is updated (the
collector reads the model when /metrics is scraped).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Hashable

from aiohttp import web

from fnlb.fnsim.callid import CallIds
from fnlb.fnsim.metrics import CONTENT_TYPE, exposition, new_registry
from fnlb.fnsim.model import CallFinished, CallRejected, CallStarted, Event, PoolModel, PoolStats
from fnlb.fnsim.options import FnSimOptions
from fnlb.goduration import format_go_duration

_HELLO = b'{"hello":"world!","goto":"https://github.com/fnproject/fn"}'
_BUSY_BODY = b'{"error":{"message":"Timed out - server too busy"}}'
_SHUTDOWN_BODY = b'{"error":{"message":"Server is shutting down"}}'
_JSON = "application/json"
RETRY_AFTER = "15"  # seconds; a constant in Fn, so that a load balancer tries elsewhere


def _error(status: int, message: str) -> web.Response:
    body = json.dumps({"error": {"message": message}}, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type=_JSON)


def format_address(host: str, port: int) -> str:
    """`host:port`, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FnSimNode:
    """An emulated Fn server on `host:port`; `start()`/`stop()` may alternate.

    Each start begins with a fresh model (a restarted Fn server has no hot containers) on
    the same port. `model`, `stats()` and `registry` describe the current run.
    """

    def __init__(
        self, options: FnSimOptions, host: str = "127.0.0.1", port: int = 0, index: int = 0
    ) -> None:
        options.check()
        self.options = options
        self.host = host
        self.port = port
        self.index = index
        self.model = self._new_model()
        self.registry = new_registry(lambda: self.model.stats())
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._waiters: dict[Hashable, asyncio.Future[Event]] = {}
        self._ids = CallIds()
        self._next_call = 0
        self._default_s = options.default_ms / 1000.0
        self._wait_header = options.wait_header
        self._version_body = json.dumps(
            {"version": options.version}, separators=(",", ":")
        ).encode()

    @property
    def address(self) -> str:
        """`host:port` as clients dial it (the real port once started with port 0)."""
        return format_address(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._runner is not None

    def stats(self) -> PoolStats:
        return self.model.stats()

    def _new_model(self) -> PoolModel:
        seed = self.options.seed
        rng = random.Random(seed + self.index if seed is not None else None)
        return PoolModel(self.options.pool_config(), rng)

    def make_app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        add("GET", "/", self._hello)
        add("GET", "/version", self._version)
        add("GET", "/metrics", self._metrics)
        add("*", "/r/{app}", self._invoke_path)
        add("*", "/r/{app}/{route:.*}", self._invoke_path)
        add("*", "/t/{app}", self._invoke_path)
        add("*", "/t/{app}/{trigger:.*}", self._invoke_path)
        add("*", "/invoke/{fn_id}", self._invoke_fn)
        return app

    async def start(self) -> None:
        """Listen on host:port (a free port if 0, remembered for the next start)."""
        if self._runner is not None:
            return
        if self._closing:
            self.model = self._new_model()
        self._closing = False
        runner = web.AppRunner(
            self.make_app(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=max(self.options.shutdown_timeout_s, 0.001),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        self._runner = runner

    def begin_shutdown(self) -> None:
        """Answer 503 `Server is shutting down` to new calls while still listening.

        `stop()` does this first; calling it alone emulates a server caught between the
        two (in-flight calls still finish), for tests of a balancer's retries.
        """
        self._closing = True

    async def stop(self) -> None:
        """Stop listening; calls in flight may finish within shutdown_timeout_s, new ones 503."""
        runner = self._runner
        if runner is None:
            return
        self.begin_shutdown()
        self._runner = None
        try:
            await runner.cleanup()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = math.inf
            for fut in self._waiters.values():
                fut.cancel()
            self._waiters.clear()

    # ---- the model's clock --------------------------------------------------------------

    def _pump(self, now: float) -> None:
        model = self.model
        model.handle_timer(now)
        waiters = self._waiters
        event = model.next_event()
        while event is not None:
            if type(event) is not CallStarted:
                fut = waiters.pop(event.call_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
            event = model.next_event()
        self._arm()

    def _arm(self) -> None:
        when = self.model.next_timer()
        if when is None or when >= self._timer_at:
            return  # nothing due, or the armed timer fires first and re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        due = self._timer_at
        self._timer = None
        self._timer_at = math.inf
        if self._runner is None and not self._waiters:
            return
        # The loop may run a timer a clock tick early; the model must see it as due.
        self._pump(max(asyncio.get_running_loop().time(), due))

    # ---- routes -------------------------------------------------------------------------

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(body=_HELLO, content_type=_JSON)

    async def _version(self, request: web.Request) -> web.Response:
        return web.Response(body=self._version_body, content_type=_JSON)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=exposition(self.registry), headers={"Content-Type": CONTENT_TYPE})

    async def _invoke_path(self, request: web.Request) -> web.StreamResponse:
        return await self._invoke(request, request.path[1:])

    async def _invoke_fn(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            response = _error(405, "Method not allowed")
            response.headers["Allow"] = "POST"
            return response
        return await self._invoke(request, request.match_info["fn_id"])

    async def _invoke(self, request: web.Request, fn: str) -> web.StreamResponse:
        call_id = self._ids.next()
        if self._closing:
            headers = {"Fn-Call-Id": call_id, "Fnsim-Node": self.address}
            return web.Response(
                status=503, body=_SHUTDOWN_BODY, headers=headers, content_type=_JSON
            )
        exec_s = self._default_s
        status = 200
        if request.query_string:
            query = request.query
            try:
                if "ms" in query:
                    exec_s = float(query["ms"]) / 1000.0
                    if not 0 <= exec_s < math.inf:
                        raise ValueError
            except ValueError:
                return _error(400, f"invalid ms {query['ms']!r}: milliseconds >= 0 expected")
            try:
                if "status" in query:
                    status = int(query["status"])
                    if not 200 <= status <= 599:
                        raise ValueError
            except ValueError:
                return _error(400, f"invalid status {query['status']!r}: 200..599 expected")
        await request.read()
        if self._closing:  # stopped while the body was read
            headers = {"Fn-Call-Id": call_id, "Fnsim-Node": self.address}
            return web.Response(
                status=503, body=_SHUTDOWN_BODY, headers=headers, content_type=_JSON
            )

        self._next_call += 1
        key = self._next_call
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()
        self._waiters[key] = fut
        now = loop.time()
        self.model.submit(key, fn, exec_s, now)
        self._pump(now)
        try:
            event = await fut
        except asyncio.CancelledError:
            # Client gone (or the node stopping): withdraw the call if it still waits.
            self._waiters.pop(key, None)
            if self.model.cancel(key, loop.time()):
                self._arm()
            raise

        headers = {"Fn-Call-Id": call_id, "Fnsim-Node": self.address}
        if self._wait_header:
            headers["Xxx-Fxlb-Wait"] = format_go_duration(event.waited_s)
        if isinstance(event, CallRejected):
            if event.reason == "too_big":
                return web.Response(
                    status=400,
                    body=b'{"error":{"message":"Function memory exceeds the node\'s"}}',
                    headers=headers,
                    content_type=_JSON,
                )
            headers["Retry-After"] = RETRY_AFTER
            return web.Response(status=503, body=_BUSY_BODY, headers=headers, content_type=_JSON)
        assert isinstance(event, CallFinished)
        cold = event.cold
        headers["Fnsim-Cold"] = "true" if cold else "false"
        body = json.dumps(
            {"fn": fn, "node": self.address, "cold": cold, "call_id": call_id},
            separators=(",", ":"),
        )
        return web.Response(status=status, text=body, headers=headers, content_type=_JSON)
