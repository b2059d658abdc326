"""One call-serving worker of an fnlb with `-workers N` (started by fnlb.proxy.workers).

It accepts calls on the listening socket it inherited, routes them on the view its primary's
Peer sends (never more than one tick old), serves them with the fast data plane through a
`WorkerPeer` - the Peer's call interface, relayed - and reports every attempt back, as the
Peer's own records, so the primary's Peer (LocalLoad, /1/lb/stats, gossip, back-off) counts
all workers' calls as its own.
SIGTERM: stop accepting, finish the calls under way (up to the shutdown timeout), report, exit.
With TLS (-tls-cert) it loads the certificate itself and says "ready" once it listens, so that
a graceful reload (the primary's SIGHUP: new workers, then the old ones retired) never leaves
the port without a worker; a SIGHUP sent to the worker itself re-reads the TLS files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from fnlb.cluster.view import NodeView
from fnlb.errors import ConfigError
from fnlb.logs import setup_logging
from fnlb.observe.access import AccessLog
from fnlb.observe.calls import CallObserver
from fnlb.observe.outcome import outcome_for
from fnlb.observe.tracing import Tracer
from fnlb.observe.zipkin import ZipkinExporter
from fnlb.payloads.backoff import decode_entries
from fnlb.proxy.fast_server import ClientConnection, FastProxy
from fnlb.proxy.warm_hold import WarmHolds
from fnlb.proxy.worker_link import AttemptRelay, frame, read_frame
from fnlb.routing.attempt import Attempt
from fnlb.routing.load_router import NodeCapacity
from fnlb.routing.policies import RoutingPolicy, make_policy
from fnlb.tls import ServerTls

log = logging.getLogger("fnlb.worker")

TICK_S: Final = 0.05
"""How often attempts are reported (and the primary's figures arrive about as often)."""
CALLS_EVERY: Final = 20
"""Ticks between two reports of the call figures for /metrics (once a second)."""
NEW_GRACE_S: Final = 5.0
"""How long a stopping worker waits for connections it accepted that have not sent their
first request yet (TLS handshake included), as Go's http.Server.Shutdown does for new ones:
closing them at once would fail a call whose client connected just before a reload."""


class WorkerPeer:
    """The Peer's call interface (fnlb.proxy.fast_server.CallPeer) inside a worker.

    Routes on the view the primary last sent with a policy of its own (fed the primary's
    routing figures and back-off every tick); books nothing here: each attempt is kept for
    the primary's Peer, and the policy observes it too, so the worker's own in-flight counts
    and back-off react at once rather than a tick later.
    """

    def __init__(self, routing: RoutingPolicy, send: Callable[[list[Any]], None]) -> None:
        self.view = NodeView(0, {})
        self.routing = routing
        self.relay = AttemptRelay()
        self._send = send

    def candidates(self, key: str, path: str) -> Sequence[str]:
        return self.routing.candidates(self.view, key, path)

    def attempt_started(self, key: str, node: str, now: float) -> None:
        self.relay.started(key, node, now)
        if self.routing.observes:
            self.routing.attempt_started(node, key)

    def attempt_finished(self, attempt: Attempt) -> None:
        self.relay.finished(attempt)
        if self.routing.observes:
            self.routing.observe(attempt)

    def connect_failed(self, node: str, error: str, now_ms: int) -> None:
        self._send(["fail", node, error, now_ms])


class Worker:
    def __init__(self, options: dict[str, Any], listen: socket.socket) -> None:
        self.options = options
        self.listen = listen
        routing = make_policy(options["routing"], random.Random(), time.time)
        self.peer = WorkerPeer(routing, self.send)
        self.router = routing.load_router
        self.writer: asyncio.StreamWriter | None = None
        self.handoff: socket.socket | None = None
        self.fast: FastProxy | None = None
        # fnlb.observe in this process: its call figures go to the primary's /metrics, its
        # access lines to the stderr it shares with the primary, its spans to -zipkin.
        self.zipkin = ZipkinExporter(options["zipkin"]) if options.get("zipkin") else None
        self.access_log = (
            AccessLog(options.get("log_format", "text")) if options.get("access_log") else None
        )
        self.observer = CallObserver(
            outcome_for(self.peer),
            counting=options.get("call_metrics", True),
            access=self.access_log,
            tracer=None
            if self.zipkin is None
            else Tracer(self.zipkin, sample_rate=options.get("trace_sample_rate", 1.0)),
        )
        self._ticks = 0
        self._accepted: list[tuple[ClientConnection, float]] = []
        """Connections accepted and not yet made (TLS handshake under way), with the time."""
        # Loaded here, in __init__: files that do not load stop the worker before it is ready.
        self.tls = (
            ServerTls(options["tls_cert"], options["tls_key"], flag="-tls")
            if options.get("tls_cert")
            else None
        )

    def reload_tls(self) -> None:
        """SIGHUP to this worker: new connections get the TLS files as they are now."""
        if self.tls is None:
            return
        try:
            self.tls.reload()
        except ConfigError as e:
            log.error("TLS files not reloaded; the old ones stay", extra={"error": str(e)})

    def send(self, message: list[Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame(message))

    def hand_over(self, transport: asyncio.Transport, data: bytes) -> None:
        """An API connection: its socket and bytes so far go to the primary's aiohttp."""
        sock = transport.get_extra_info("socket")
        if self.handoff is not None and sock is not None:
            with contextlib.suppress(OSError):
                socket.send_fds(self.handoff, [data], [sock.fileno()])
        transport.abort()  # our copy only: the primary holds the connection now

    def apply(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "view":
            if message[1] != self.peer.view.version:
                self.peer.view = NodeView(message[1], message[2])
                self.observer.retain(self.peer.view.states)  # deleted nodes' figures end
        elif kind == "figures" and self.router is not None:
            widths, in_flight, caps, homes, tail = message[1:6]
            self.router.update(
                widths=widths,
                peers_in_flight=in_flight,
                capacity={n: NodeCapacity(c[0], c[1]) for n, c in caps.items()},
                homes=homes,
                tail=tuple(tail),
            )
        elif kind == "backoff" and self.router is not None:
            self.router.backoff.merge(decode_entries(message[1]), time.time())

    def accept(self) -> ClientConnection:
        """The listener's protocol factory: the fast plane's, with the connection noted
        until it is made (TLS: after its handshake), so a stopping worker can wait for it."""
        assert self.fast is not None
        conn = self.fast.protocol()
        self._accepted.append((conn, time.monotonic()))
        return conn

    def new_connections(self, now: float) -> int:
        """Connections accepted that have not begun a request yet: handshakes under way
        (those older than NEW_GRACE_S are dropped from the list: failed) and made ones
        whose parser has seen no request line."""
        self._accepted = [
            (c, t)
            for c, t in self._accepted
            if c.transport is None and not c.closed and now - t < NEW_GRACE_S
        ]
        assert self.fast is not None
        fresh = sum(
            1
            for c in self.fast.connections
            if c.active is None and c.parser.get_http_version() == "0.0"
        )
        return len(self._accepted) + fresh

    async def settle_new(self) -> None:
        """Wait, up to NEW_GRACE_S, until every connection accepted has a call under way or
        has gone: then the drain closes none that was about to send its first request."""
        deadline = time.monotonic() + NEW_GRACE_S
        await asyncio.sleep(0)  # a plain connection just accepted is made on the next turn
        for _ in range(int(NEW_GRACE_S / 0.01)):  # bounded: a loaded machine sleeps longer
            now = time.monotonic()
            if not self.new_connections(now) or now >= deadline:
                return
            await asyncio.sleep(0.01)

    def report(self, final: bool = False) -> None:
        events = self.peer.relay.take()
        if events:
            self.send(["attempts", events])
        self._ticks += 1
        due = final or self._ticks % CALLS_EVERY == 0
        if due and (self.observer.counting or self.zipkin is not None):
            spans = dict(self.zipkin.spans) if self.zipkin is not None else None
            self.send(["calls", self.observer.snapshot(), spans])
        if self._accepted:  # made or failed handshakes leave the list
            self.new_connections(time.monotonic())
        if self.router is not None:
            self.router.backoff.expire(time.time())
            # The primary's router makes the same entries from the attempts it replays and
            # shares them (gossip, siblings): ours need not travel.
            while self.router.backoff.take_updates():
                pass

    async def run(self, channel: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        reader, self.writer = await asyncio.open_unix_connection(sock=channel)
        first = await read_frame(reader)  # the view, before the first call is taken
        if first is None:
            return 1
        self.apply(first)
        o = self.options
        self.fast = FastProxy(
            self.peer,
            connect_timeout=o["connect_timeout"],
            management=self.hand_over if self.handoff is not None else None,
            management_paths=frozenset(p.encode() for p in o["api_paths"]),
            scheme=b"http" if self.tls is None else b"https",
            observer=self.observer,
            warm=WarmHolds(o["warm_wait_s"], self.observer) if o.get("warm_wait_s") else None,
        )
        if self.zipkin is not None:
            self.zipkin.start()
        if self.access_log is not None:
            self.access_log.start()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the primary decides
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)  # not the default: exit
        server = await loop.create_server(
            self.accept,
            sock=self.listen,
            backlog=1024,
            ssl=None if self.tls is None else self.tls.context,
        )
        self.fast.start()
        self.send(["ready"])  # a reload retires the old workers only after this

        async def receive() -> None:
            try:
                while (message := await read_frame(reader)) is not None:
                    self.apply(message)
            except (ConnectionError, ValueError) as e:  # a killed primary resets the link
                log.warning("link to the primary failed", extra={"error": str(e)})
            finally:
                stopping.set()  # the primary is gone (or unreadable): so are we

        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                self.report()

        tasks = [asyncio.ensure_future(receive()), asyncio.ensure_future(tick())]
        await stopping.wait()
        server.close()
        await self.settle_new()
        await self.fast.drain(o["shutdown_timeout"] or None)
        for t in tasks:
            t.cancel()
        self.report(final=True)
        if self.zipkin is not None:
            await self.zipkin.stop()  # after the drain: the last calls' spans go too
        if self.access_log is not None:
            await self.access_log.stop()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self.writer.close()
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fnlb.proxy.worker")
    p.add_argument("--listen-fd", type=int, required=True)
    p.add_argument("--channel-fd", type=int, required=True)
    p.add_argument("--handoff-fd", type=int, default=-1)
    p.add_argument("--options", required=True, help="JSON: routing, timeouts, api_paths")
    args = p.parse_args(argv)
    options = json.loads(args.options)
    setup_logging(options["log_level"], options.get("log_format", "text"))
    listen = socket.socket(fileno=args.listen_fd)
    channel = socket.socket(fileno=args.channel_fd)
    try:
        worker = Worker(options, listen)
    except ConfigError as e:  # TLS files that do not load (the primary keeps the old workers)
        log.error("worker cannot start", extra={"error": str(e)})
        return 2
    if args.handoff_fd >= 0:
        worker.handoff = socket.socket(fileno=args.handoff_fd)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(worker.run(channel))


if __name__ == "__main__":
    sys.exit(main())
