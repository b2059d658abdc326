"""`-workers N`: N processes serve calls from the listening socket they share; this one (the
primary) keeps the single gossip identity, health checks and management API of the fnlb.

Why processes: one Python process uses one core; the data plane is where the CPU goes. The
workers inherit the listening socket (the kernel hands each new connection to one of them),
serve calls with the fast data plane, and are fed over one Unix socket each
(fnlb.proxy.worker_link): the Peer's node view each time it changes, and every tick (50 ms)
the routing figures - with the calls in flight from the other peers and from the sibling
workers - and the back-off entries new in the Peer's router. They report every attempt back,
in order, and the primary replays each into its Peer (`attempt_started`, the worker's
`Attempt` record to `attempt_finished`, `connect_failed`), so `LocalLoad` (gossiped digests,
/1/lb/stats, placement), the routing policy and the back-off count the calls of all workers
exactly as if the primary had made them.

A worker that dies is started again at once; the calls it had under way are booked as failed
(their clients saw the connection close) and the other workers' calls are untouched.

SIGHUP (`reload`) replaces every worker gracefully: the new ones start and say they are ready
(listening) before the old ones get SIGTERM, stop accepting and finish their calls (up to
-shutdown-timeout). The primary holds the listening socket throughout, so a connection that
arrives meanwhile waits in the kernel's queue for whichever worker accepts first: none is
refused. New workers read the TLS files anew: a reload is also how workers take a renewed
certificate. If a new worker exits before it is ready (bad TLS files, say), the old ones stay.

On a shared port the workers hand a connection whose first request is for the API to the
primary (the socket itself, over SCM_RIGHTS), whose aiohttp server then keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from fnlb.observe.calls import CallTotals
from fnlb.payloads.backoff import pack_entries
from fnlb.peer.core import Peer
from fnlb.proxy.worker_link import attempt_of, frame, read_frame
from fnlb.routing.attempt import NO_ANSWER, Attempt

log = logging.getLogger("fnlb.workers")

TICK_S: Final = 0.05
_HANDOFF_MAX: Final = 256 * 1024


def cpus_available() -> int:
    """The CPUs this process may use: its affinity (not the machine's count), capped by a
    cgroup CPU quota when one is set (a container's `--cpus`, a Kubernetes CPU limit), whose
    extra workers would only be throttled."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = quota_cpus(_read("/sys/fs/cgroup/cpu.max"))  # cgroup v2
    if quota is None:  # cgroup v1
        quota = quota_cpus(
            f"{_read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')} "
            f"{_read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')}"
        )
    return min(cpus, quota) if quota is not None else cpus


def quota_cpus(text: str) -> int | None:
    """CPUs a cgroup quota allows, rounded up, from "QUOTA PERIOD" (cgroup v2's cpu.max; v1's
    two files joined); None without a quota ("max", -1, empty or unreadable)."""
    parts = text.split()
    if len(parts) != 2:
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:  # "max": no quota
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, -(-quota // period))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class WorkerStartError(Exception):
    """A worker exited before it listened when fnlb started (its log line says why)."""


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.handoff: socket.socket | None = None
        self.open: dict[tuple[str, str], int] = {}
        """Attempts started and not yet finished, by (function, node)."""
        self.in_flight: dict[str, int] = {}
        self.view_sent = -1
        self.states_sent: object = None
        """The states of the view last sent (a new version with the same states is not)."""
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        """Set when the worker listens (its "ready" message); cleared at each start."""
        self.exited = asyncio.Event()
        """Set when the worker is gone for good: retired, stopped, or never ready in a reload."""
        self.retiring = False
        """Sent SIGTERM by a reload (or a failed one): not started again when it exits."""
        self.on_trial = False
        """Started by a reload and not yet ready: an exit abandons the reload, no restart."""
        self.homes_sent: Mapping[str, str] | None = None
        """The placed homes in the figures last sent (None: none yet, e.g. just started)."""

    def send(self, message: list[Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame(message))


class WorkerPool:
    """Starts, feeds, watches and stops the call-serving workers of one fnlb."""

    def __init__(
        self,
        count: int,
        listen: socket.socket,
        *,
        peer: Peer,
        options: dict[str, Any],
        api_server: web.Server | None = None,
        calls: CallTotals | None = None,
    ) -> None:
        """`calls`: where the workers' call figures go (for /metrics and the dashboard)."""
        self.listen = listen
        self.peer = peer
        self.router = peer.routing.load_router
        self._backoff_sent: dict[tuple[str, str], float] = {}
        self.options = options
        self.api_server = api_server
        self.calls = calls
        self.count = count
        self._ids = itertools.count()
        """Worker indices: never reused, so a reload's old and new workers report apart."""
        self.workers = [_Worker(next(self._ids)) for _ in range(count)]
        self.stopping = False
        self.restarts = 0
        self.reloads = 0
        self._reload: asyncio.Task[bool] | None = None
        self._again = False
        self._ticker: asyncio.Task[None] | None = None
        self._handoffs: set[asyncio.Task[None]] = set()
        self._view_send_due = False

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc is not None]

    async def start(self) -> None:
        """Start the workers and return once every one listens (WorkerStartError if one
        exits first: fnlb cannot serve as asked)."""
        self.peer.state.on_change = self.view_changed
        for w in self.workers:
            w.on_trial = True
            await self._spawn(w)
        self._ticker = asyncio.ensure_future(self._tick())
        if not all(await asyncio.gather(*(self._until_ready(w) for w in self.workers))):
            raise WorkerStartError("a worker exited before it listened (see its log above)")

    async def _until_ready(self, w: _Worker) -> bool:
        """Whether worker `w` became ready (False: it exited first)."""
        ready = asyncio.ensure_future(w.ready.wait())
        gone = asyncio.ensure_future(w.exited.wait())
        try:
            await asyncio.wait((ready, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            gone.cancel()
        return w.ready.is_set()

    def reload(self) -> asyncio.Task[bool] | None:
        """SIGHUP: replace every worker gracefully (see the module docstring). The task's
        result says whether the new workers took over. During a reload, one more is queued
        (files renewed meanwhile must reach workers too); None when stopping or queued."""
        if self.stopping:
            return None
        if self._reload is not None and not self._reload.done():
            log.info("workers: a reload is under way; another follows it")
            self._again = True
            return None
        self._reload = asyncio.ensure_future(self._replace())
        self._reload.add_done_callback(self._after_reload)
        return self._reload

    def _after_reload(self, _: asyncio.Task[bool]) -> None:
        if self._again and not self.stopping:
            self._again = False
            self.reload()

    async def _replace(self) -> bool:
        old = list(self.workers)
        new = [_Worker(next(self._ids)) for _ in range(self.count)]
        # Listed at once: the ticker feeds them, and each counts the others' calls in flight.
        self.workers.extend(new)
        for w in new:
            if self.stopping:  # stop() did not see this one: it must not start now
                return False
            w.on_trial = True
            await self._spawn(w)
        took_over = all(await asyncio.gather(*(self._until_ready(w) for w in new)))
        if self.stopping:  # stop() has sent SIGTERM to every worker listed, new ones too
            return False
        retired = old if took_over else new
        for w in retired:
            self._retire(w)
        if took_over:
            self.reloads += 1
            log.info(
                "workers reloaded",
                extra={"pids": [w.proc.pid for w in new if w.proc is not None]},
            )
        else:
            log.error("workers not reloaded: a new worker exited before it listened; "
                      "the old ones stay")  # fmt: skip
        await asyncio.gather(*(w.exited.wait() for w in retired))
        return took_over

    def _retire(self, w: _Worker) -> None:
        """SIGTERM: `w` stops accepting, finishes its calls, reports them and exits."""
        w.retiring = True
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)

    async def _spawn(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [self.listen.fileno(), theirs.fileno()]
        args = [
            sys.executable,
            "-m",
            "fnlb.proxy.worker",
            f"--listen-fd={fds[0]}",
            f"--channel-fd={fds[1]}",
            f"--options={json.dumps(self.options)}",
        ]
        handoff_theirs = None
        if self.api_server is not None:
            w.handoff, handoff_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            w.handoff.setblocking(False)
            fds.append(handoff_theirs.fileno())
            args.append(f"--handoff-fd={fds[2]}")
        w.proc = await asyncio.create_subprocess_exec(*args, pass_fds=fds)
        theirs.close()
        if handoff_theirs is not None:
            handoff_theirs.close()
        reader, w.writer = await asyncio.open_unix_connection(sock=ours)
        w.view_sent = -1
        w.homes_sent = None
        w.states_sent = None  # the first frame a worker reads is the view: always sent
        w.ready.clear()
        self._send_view(w)
        if self.router is not None:  # a restarted worker: the back-off in force, all of it
            for message in pack_entries(self.router.backoff.entries(time.time())):
                w.send(["backoff", message])
        if w.handoff is not None:
            loop.add_reader(w.handoff.fileno(), self._take_handoff, w.handoff)
        w.task = asyncio.ensure_future(self._serve(w, reader))
        log.info("worker started", extra={"worker": w.index, "pid": w.proc.pid})

    async def _serve(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await read_frame(reader)) is not None:
                self._apply(w, message)
        except (ValueError, ConnectionError) as e:
            log.warning("worker link failed", extra={"worker": w.index, "error": str(e)})
        assert w.proc is not None
        code = await w.proc.wait()
        self._release(w)
        if self.stopping or w.retiring or (w.on_trial and not w.ready.is_set()):
            if not self.stopping and w in self.workers:  # retired, or failed its reload
                self.workers.remove(w)
            if not w.ready.is_set():
                log.error("worker exited before it listened", extra={"worker": w.index,
                                                                     "code": code})  # fmt: skip
            w.exited.set()
            return
        self.restarts += 1
        log.warning("worker exited; starting it again", extra={"worker": w.index, "code": code})
        await self._spawn(w)

    def _release(self, w: _Worker) -> None:
        """The worker is gone: its unfinished attempts end (as failed), its links close."""
        now = time.time()
        for (key, node), count in w.open.items():
            for _ in range(count):  # as Proxy.handle books a call cut off: no answer
                self.peer.attempt_finished(Attempt(key, node, "", NO_ANSWER, now))
        w.open.clear()
        w.in_flight.clear()
        if self.calls is not None:
            self.calls.retire(w.index)  # its figures stay; a new worker counts from zero
        if w.writer is not None:
            w.writer.close()
        if w.handoff is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(w.handoff.fileno())
            w.handoff.close()
            w.handoff = None

    def _apply(self, w: _Worker, message: list[Any]) -> None:
        kind = message[0]
        if kind == "ready":
            w.ready.set()
            w.on_trial = False
        elif kind == "attempts":
            peer, open_, in_flight = self.peer, w.open, w.in_flight
            for e in message[1]:
                pair = (e[1], e[2])
                if e[0] == 0:
                    peer.attempt_started(e[1], e[2], e[3])
                    open_[pair] = open_.get(pair, 0) + 1
                    in_flight[e[2]] = in_flight.get(e[2], 0) + 1
                elif open_.get(pair, 0) > 0:
                    peer.attempt_finished(attempt_of(e))
                    if open_[pair] == 1:
                        del open_[pair]
                    else:
                        open_[pair] -= 1
                    in_flight[e[2]] -= 1
        elif kind == "fail":
            self.peer.connect_failed(message[1], message[2], message[3])
        elif kind == "calls" and self.calls is not None:
            # ValueError: the link is dropped
            self.calls.report(w.index, message[1], message[2] if len(message) > 2 else None)

    def backoff_news(self, now: float) -> list[bytes]:
        """The back-off entries in force in the Peer's router that the workers have not
        been sent yet (its own, from the replayed attempts, and its peers'), as messages."""
        if self.router is None:
            return []
        sent = self._backoff_sent
        fresh = [e for e in self.router.backoff.entries(now) if sent.get((e.fn, e.node)) != e.until]
        for e in fresh:
            sent[(e.fn, e.node)] = e.until
        for pair in [p for p, until in sent.items() if until <= now]:
            del sent[pair]
        return pack_entries(fresh)

    def _take_handoff(self, sock: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _HANDOFF_MAX, 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        for fd in fds:
            conn = socket.socket(fileno=fd)
            task = asyncio.ensure_future(self._serve_api(conn, data))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)

    async def _serve_api(self, conn: socket.socket, data: bytes) -> None:
        assert self.api_server is not None
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.connect_accepted_socket(self.api_server, sock=conn)
        except OSError:
            conn.close()
            return
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)

    def _send_view(self, w: _Worker) -> None:
        view = self.peer.view
        if w.view_sent == view.version:
            return
        w.view_sent = view.version
        if view.states != w.states_sent:
            w.send(["view", view.version, dict(view.states)])
            w.states_sent = view.states

    def view_changed(self) -> None:
        """The view changed: every worker gets it at the end of this loop turn, not at the
        next tick, so a caller who saw a node online through the API finds it online in
        every worker. Once per turn: a merge of many verdicts builds and sends one view."""
        if not self._view_send_due:
            self._view_send_due = True
            asyncio.get_running_loop().call_soon(self._send_views)

    def _send_views(self) -> None:
        self._view_send_due = False
        for w in self.workers:
            self._send_view(w)

    async def _tick(self) -> None:
        while True:
            for w in self.workers:
                self._send_view(w)
            news = self.backoff_news(time.time())
            for w in self.workers:
                self._send_figures(w)
                for message in news:
                    w.send(["backoff", message])
            await asyncio.sleep(TICK_S)

    def _send_figures(self, w: _Worker) -> None:
        figures = self.figures_for(w)
        if figures is not None:
            w.send(figures)
            w.homes_sent = figures[4]

    def sent_homes(self, homes: Mapping[str, str]) -> bool:
        """Whether every worker has been sent `homes` (placed homes reach the workers at
        the pool's next tick: `fnlb demo` waits for it before calls that must use them)."""
        return all(w.homes_sent == homes for w in self.workers)

    def figures_for(self, w: _Worker) -> list[Any] | None:
        """hotset's shared figures for worker `w`: the primary's, with the calls in flight
        from the sibling workers added to the other peers' (None: no hotset router)."""
        if self.router is None:
            return None
        shared = self.router.shared
        in_flight = dict(shared.peers_in_flight)
        for other in self.workers:
            if other is not w:
                for node, n in other.in_flight.items():
                    in_flight[node] = in_flight.get(node, 0) + n
        caps = {n: [c.slots, c.used] for n, c in shared.capacity.items()}
        return [
            "figures",
            dict(shared.widths),
            in_flight,
            caps,
            dict(shared.homes),
            list(shared.tail),  # admission's tail nodes: without them a worker sent the
        ]  # tail's functions anywhere and they evicted the protected set's containers

    async def stop(self, within: float | None) -> None:
        """SIGTERM every worker (each finishes its calls), wait up to `within` seconds (None:
        as long as they take), then kill what is left."""
        self.stopping = True
        self.peer.state.on_change = None
        if self._ticker is not None:
            self._ticker.cancel()
        procs = [w.proc for w in self.workers if w.proc is not None]  # retiring ones too
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        # Our copy of the listening socket kept it open through reloads; now, once each
        # worker has closed its own, new connections are refused (as with one process)
        # rather than queued until we exit.
        self.listen.close()
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            await asyncio.gather(*(p.wait() for p in procs))
        tasks = [w.task for w in self.workers if w.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._reload is not None:
            await asyncio.gather(self._reload, return_exceptions=True)
