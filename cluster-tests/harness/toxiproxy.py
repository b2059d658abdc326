"""Our own toxiproxy: its HTTP API and the toxics our scenarios use, in asyncio.

Scenarios drive TCP faults through toxiproxy's HTTP API only (harness.toxiproxy_client), so
they run unchanged against Shopify's `toxiproxy-server` when it is on PATH. These machines
have none, hence this implementation of the same API:

    GET    /proxies                       {name: proxy}
    POST   /proxies                       create {name, listen, upstream, enabled=true} -> 201
    POST   /populate                      create or replace a list of proxies -> 201
    GET    /proxies/{proxy}               proxy with its toxics
    POST   /proxies/{proxy}               update listen, upstream, enabled (false = "down")
    DELETE /proxies/{proxy}               -> 204
    GET    /proxies/{proxy}/toxics        [toxic]
    POST   /proxies/{proxy}/toxics        add {name, type, stream, toxicity, attributes}
    GET    /proxies/{proxy}/toxics/{t}    toxic
    POST   /proxies/{proxy}/toxics/{t}    update toxicity / attributes
    DELETE /proxies/{proxy}/toxics/{t}    -> 204
    POST   /reset                         every proxy enabled, every toxic removed -> 204
    GET    /version

Errors answer `{"error": message, "status": code}` (404 unknown, 409 exists, 400 bad body).

How bytes flow: each accepted connection opens one to the upstream and runs two Links,
`upstream` (client to server) and `downstream` (server to client). A Link reads chunks,
stamps their arrival time and queues them; its writer applies the toxics in force on its
stream when each chunk leaves: latency holds a chunk until arrival + latency (+/- jitter),
so a delay does not also cut throughput; bandwidth paces writes; timeout drops data and
closes the connection after its time (0: holds data until the toxic goes); reset_peer
aborts both sockets with an RST (SO_LINGER 0) a time after the first data; slow_close
holds back the end of a stream. Whether a toxic applies to a connection is rolled once
against its toxicity; toxics added or removed take effect on live connections at once.

Run it as `python -m harness.toxiproxy -host 10.213.0.9 -port 8474` (toxiproxy-server's flags).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from harness.toxics import ApiError, Toxic, toxic_from_json, toxic_updated

VERSION = "2.0.0-fnlb-harness"
CHUNK = 32 * 1024
UPSTREAM_CONNECT_TIMEOUT = 10.0


def split_hostport(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ApiError(400, f"{addr!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class Link:
    """One direction of one proxied connection: chunks in, toxics applied, chunks out."""

    def __init__(
        self,
        conn: Connection,
        stream: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.reader = reader
        self.writer = writer
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
        self.changed = asyncio.Event()
        self.rolls: dict[int, bool] = {}  # toxic serial -> applies to this link
        self.timers: dict[int, asyncio.Task[None]] = {}

    def active(self) -> list[tuple[int, Toxic]]:
        """The toxics of this link's stream that apply to this connection, in order."""
        out = []
        for serial, toxic in self.conn.proxy.toxics.values():
            if toxic.stream != self.stream:
                continue
            if serial not in self.rolls:
                rng = self.conn.proxy.rng
                self.rolls[serial] = toxic.toxicity >= 1 or rng.random() < toxic.toxicity
            if self.rolls[serial]:
                out.append((serial, toxic))
        return out

    def of_type(self, kind: str) -> list[Toxic]:
        return [t for _, t in self.active() if t.type == kind]

    def refresh(self) -> None:
        """The proxy's toxics changed: (re)arm timeout timers and wake a held writer."""
        armed = {s: t for s, t in self.active() if t.type == "timeout" and t.attr("timeout") > 0}
        for serial in list(self.timers):
            if serial not in armed:
                self.timers.pop(serial).cancel()
        for serial, toxic in armed.items():
            if serial not in self.timers:
                self.timers[serial] = asyncio.create_task(
                    self._close_after(toxic.attr("timeout") / 1000)
                )
        self.changed.set()

    async def _close_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.conn.close()

    async def pump_in(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self.reader.read(CHUNK)
            await self.queue.put((loop.time(), data))
            if not data:
                return

    async def pump_out(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrived, data = await self.queue.get()
            if not await self._through_timeout(bool(data)):
                continue  # dropped on the floor
            resets = self.of_type("reset_peer")
            if resets and data:
                await asyncio.sleep(min(t.attr("timeout") for t in resets) / 1000)
                self.conn.reset()
                return
            delay = 0.0
            for t in self.of_type("latency"):
                jitter = t.attr("jitter")
                delay += t.attr("latency") + (self.conn.proxy.rng.uniform(-jitter, jitter))
            wait = arrived + max(0.0, delay) / 1000 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                slow = max((t.attr("delay") for t in self.of_type("slow_close")), default=0)
                if slow > 0:
                    await asyncio.sleep(slow / 1000)
                if self.writer.can_write_eof() and not self.writer.is_closing():
                    with contextlib.suppress(OSError):
                        self.writer.write_eof()
                return
            await self._write(data)

    async def _through_timeout(self, has_data: bool) -> bool:
        """Wait while a `timeout` toxic holds this link; False if the chunk is dropped."""
        while True:
            timeouts = self.of_type("timeout")
            if not timeouts:
                return True
            if has_data and any(t.attr("timeout") > 0 for t in timeouts):
                return False
            self.changed.clear()
            await self.changed.wait()

    async def _write(self, data: bytes) -> None:
        rates = [t.attr("rate") for t in self.of_type("bandwidth") if t.attr("rate") > 0]
        if not rates:
            self.writer.write(data)
            await self.writer.drain()
            return
        per_second = min(rates) * 1000
        piece = max(1, int(per_second / 20))  # a twentieth of a second's worth at a time
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            self.writer.write(chunk)
            await self.writer.drain()
            await asyncio.sleep(len(chunk) / per_second)


class Connection:
    """One client connection through a Proxy, and the one it opened to the upstream."""

    def __init__(
        self, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_reader = reader
        self.client_writer = writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.links: list[Link] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def run(self) -> None:
        host, port = split_hostport(self.proxy.upstream)
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            self.close()
            return
        self.upstream_writer = up_writer
        if self.closed:  # disabled or deleted while we dialled
            up_writer.close()
            return
        self.links = [
            Link(self, "upstream", self.client_reader, up_writer),
            Link(self, "downstream", up_reader, self.client_writer),
        ]
        for link in self.links:
            link.refresh()
            self.tasks += [
                asyncio.create_task(self._guard(link.pump_in())),
                asyncio.create_task(self._guard(link.pump_out())),
            ]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.close()

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except (OSError, asyncio.IncompleteReadError):
            self.close()

    def refresh(self) -> None:
        for link in self.links:
            link.refresh()

    def _writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client_writer, self.upstream_writer) if w is not None]

    def _stop(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for link in self.links:
            for timer in link.timers.values():
                if timer is not current:
                    timer.cancel()
        return True

    def close(self) -> None:
        """Close both sockets the ordinary way (FIN); chunks still queued are dropped."""
        if self._stop():
            for w in self._writers():
                w.close()

    def reset(self) -> None:
        """Close both sockets with an RST: the peers see 'connection reset by peer'."""
        if self._stop():
            for w in self._writers():
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                w.transport.abort()


class Proxy:
    """A listening address whose connections go to `upstream` through the toxics."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics: dict[str, tuple[int, Toxic]] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._serial = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for _, t in self.toxics.values()],
        }

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = split_hostport(self.listen)
        split_hostport(self.upstream)
        try:
            self._server = await asyncio.start_server(self._accept, host, port)
        except OSError as e:
            raise ApiError(500, f"cannot listen on {self.listen}: {e.strerror or e}") from None
        bound = self._server.sockets[0].getsockname()
        self.listen = f"{host}:{bound[1]}" if ":" not in host else f"[{host}]:{bound[1]}"
        self.enabled = True

    async def stop(self) -> None:
        """Stop listening and drop every connection (toxiproxy's "down")."""
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    def set_toxic(self, toxic: Toxic) -> None:
        self._serial += 1
        self.toxics[toxic.name] = (self._serial, toxic)
        self._changed()

    def remove_toxic(self, name: str) -> None:
        if self.toxics.pop(name, None) is None:
            raise ApiError(404, "toxic not found")
        self._changed()

    def clear_toxics(self) -> None:
        self.toxics.clear()
        self._changed()

    def toxic(self, name: str) -> Toxic:
        if name not in self.toxics:
            raise ApiError(404, "toxic not found")
        return self.toxics[name][1]

    def _changed(self) -> None:
        for conn in self.connections:
            conn.refresh()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ToxiproxyServer:
    """The proxies and the HTTP API that manages them."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.app = web.Application(middlewares=[self._errors])
        r = self.app.router
        r.add_get("/proxies", self.list_proxies)
        r.add_post("/proxies", self.create_proxy)
        r.add_post("/populate", self.populate)
        r.add_get("/proxies/{proxy}", self.show_proxy)
        r.add_route("POST", "/proxies/{proxy}", self.update_proxy)
        r.add_route("PATCH", "/proxies/{proxy}", self.update_proxy)
        r.add_delete("/proxies/{proxy}", self.delete_proxy)
        r.add_get("/proxies/{proxy}/toxics", self.list_toxics)
        r.add_post("/proxies/{proxy}/toxics", self.create_toxic)
        r.add_get("/proxies/{proxy}/toxics/{toxic}", self.show_toxic)
        r.add_route("POST", "/proxies/{proxy}/toxics/{toxic}", self.update_toxic)
        r.add_route("PATCH", "/proxies/{proxy}/toxics/{toxic}", self.update_toxic)
        r.add_delete("/proxies/{proxy}/toxics/{toxic}", self.delete_toxic)
        r.add_post("/reset", self.reset)
        r.add_get("/version", self.version)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> str:
        """Serve the API on host:port (0: any free port); the base URL."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        return f"http://{host}:{bound[1]}"

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return web.json_response({"error": e.message, "status": e.status}, status=e.status)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "bad request body: not JSON") from None

    def _proxy(self, request: web.Request) -> Proxy:
        proxy = self.proxies.get(request.match_info["proxy"])
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def _create(self, body: Any) -> Proxy:
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: a JSON object is required")
        for key in ("name", "upstream"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, f"missing required field: {key}")
        name = body["name"]
        if name in self.proxies:
            raise ApiError(409, "proxy already exists")
        listen = body.get("listen") or "127.0.0.1:0"
        proxy = Proxy(name, str(listen), body["upstream"], self.rng)
        if body.get("enabled", True):
            await proxy.start()
        else:
            split_hostport(proxy.listen)
        self.proxies[name] = proxy
        return proxy

    async def list_proxies(self, request: web.Request) -> web.Response:
        return web.json_response({n: p.to_json() for n, p in self.proxies.items()})

    async def create_proxy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        async with self.lock:
            proxy = await self._create(body)
        return web.json_response(proxy.to_json(), status=201)

    async def populate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, list):
            raise ApiError(400, "bad request body: a JSON list of proxies is required")
        made = []
        async with self.lock:
            for item in body:
                if isinstance(item, dict) and item.get("name") in self.proxies:
                    await self.proxies.pop(item["name"]).stop()
                made.append(await self._create(item))
        return web.json_response({"proxies": [p.to_json() for p in made]}, status=201)

    async def show_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).to_json())

    async def update_proxy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: a JSON object is required")
        async with self.lock:
            proxy = self._proxy(request)
            moved = False
            for key in ("listen", "upstream"):
                if key in body and body[key] != getattr(proxy, key):
                    split_hostport(str(body[key]))
                    setattr(proxy, key, str(body[key]))
                    moved = True
            enabled = bool(body.get("enabled", proxy.enabled))
            if moved or not enabled:
                await proxy.stop()
            if enabled:
                await proxy.start()
        return web.json_response(proxy.to_json())

    async def delete_proxy(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self._proxy(request)
            del self.proxies[proxy.name]
            await proxy.stop()
        return web.Response(status=204)

    async def list_toxics(self, request: web.Request) -> web.Response:
        proxy = self._proxy(request)
        return web.json_response([t.to_json() for _, t in proxy.toxics.values()])

    async def create_toxic(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        proxy = self._proxy(request)
        toxic = toxic_from_json(body)
        if toxic.name in proxy.toxics:
            raise ApiError(409, "toxic already exists")
        proxy.set_toxic(toxic)
        return web.json_response(toxic.to_json())

    async def show_toxic(self, request: web.Request) -> web.Response:
        toxic = self._proxy(request).toxic(request.match_info["toxic"])
        return web.json_response(toxic.to_json())

    async def update_toxic(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        proxy = self._proxy(request)
        toxic = toxic_updated(proxy.toxic(request.match_info["toxic"]), body)
        proxy.set_toxic(toxic)
        return web.json_response(toxic.to_json())

    async def delete_toxic(self, request: web.Request) -> web.Response:
        self._proxy(request).remove_toxic(request.match_info["toxic"])
        return web.Response(status=204)

    async def reset(self, request: web.Request) -> web.Response:
        async with self.lock:
            for proxy in self.proxies.values():
                proxy.clear_toxics()
                await proxy.start()
        return web.Response(status=204)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})


@contextlib.contextmanager
def serve_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None
) -> Iterator[str]:
    """Run a ToxiproxyServer on its own event loop in a thread; yield the API's base URL.

    For tests in the test process itself (synchronous clients, no subprocess to start).
    """
    loop = asyncio.new_event_loop()
    server: ToxiproxyServer | None = None
    ready: list[str] = []
    failed: list[BaseException] = []
    started = threading.Event()

    async def boot() -> None:
        nonlocal server
        server = ToxiproxyServer(random.Random(seed))
        ready.append(await server.start(host, port))

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(boot())
        except BaseException as e:
            failed.append(e)
        started.set()
        if not failed:
            loop.run_forever()

    thread = threading.Thread(target=run, name="toxiproxy", daemon=True)
    thread.start()
    started.wait(30)
    if failed:
        loop.close()
        raise failed[0]
    try:
        yield ready[0]
    finally:
        assert server is not None
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)

        async def drain() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def _serve_forever(host: str, port: int, seed: int | None) -> None:
    server = ToxiproxyServer(random.Random(seed))
    url = await server.start(host, port)
    print(f"toxiproxy API listening on {url}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.toxiproxy", description="toxiproxy's HTTP API and toxics"
    )
    parser.add_argument("-host", "--host", default="localhost", help="API address")
    parser.add_argument("-port", "--port", type=int, default=8474, help="API port")
    parser.add_argument("-seed", "--seed", type=int, default=None, help="toxicity/jitter seed")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
