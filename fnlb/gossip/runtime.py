"""The asyncio runtime of a gossip member: sockets, one timer, and the member's clock.

The SWIM + Lifeguard `Member` (member.py) knows no I/O. This adapter, and only it, gives it
one: a UDP endpoint for probes and gossip, a TCP server and client for push-pull, join and
fallback-probe streams (transport.py frames them), every packet sealed and opened by the
`GossipCipher` (crypto.py). Theory of operation:

- Clocks: the member runs on `loop.time()` (monotonic); the cipher on `time.time()` (its
  replay window compares wall clocks across peers).
- After every input (a datagram, a stream request or reply, a timer) the runtime *pumps*:
  it seals and sends `datagrams_to_send`, opens a stream for each of `stream_requests`,
  drains `next_event` (logged, then handed to listeners) and re-arms exactly one
  `loop.call_at` timer at `next_timer()`.
- Bad bytes from the network never raise: they are dropped and counted by reason (the
  cipher's reasons, the codec's, and the transport's: frame_too_large, stream_closed,
  stream_timeout, stream_refused, too_many_streams, send_failed).
- Joining: every `--join` entry is resolved (a DNS name joins every address it resolves
  to); the member retries its seeds itself, and a background task re-resolves the names
  until a seed has answered, so peers may start in any order.
- Leaving (`stop`): broadcast that we left, keep the member running until that broadcast
  has been sent its full count (at most `leave_timeout` seconds), then close the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from fnlb.addresses import parse_listen, parse_peer
from fnlb.errors import ConfigError, RemoteProtocolError
from fnlb.gossip.crypto import GossipCipher, Keyring
from fnlb.gossip.delegate import GossipDelegate
from fnlb.gossip.member import EventKind, Member, MemberEvent, MemberInfo, StreamRequest
from fnlb.gossip.messages import Addr, MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.transport import MAX_STREAMS, FrameError, frame, read_frame

log = logging.getLogger("fnlb.gossip")

#: --gossip-profile -> the member's timings
PROFILES: dict[str, Callable[[], GossipProfile]] = {
    "default": GossipProfile.fnlb_default,
    "lan": GossipProfile.lan,
    "local": GossipProfile.local,
}
#: largest UDP payload on the wire, envelope included (memberlist's UDPBufferSize)
WIRE_LIMIT = 1400
#: seconds `stop` waits for our leave to be gossiped before closing the sockets
LEAVE_TIMEOUT = 3.0

EventListener = Callable[[MemberEvent], None]

_LOG_LEVEL = {
    EventKind.JOINED: logging.INFO,
    EventKind.ALIVE: logging.INFO,
    EventKind.UPDATED: logging.INFO,
    EventKind.SUSPECT: logging.WARNING,
    EventKind.DEAD: logging.WARNING,
    EventKind.LEFT: logging.INFO,
}


#: any routable address: connecting a UDP socket to it sends nothing but picks a source
_ANY_REMOTE: Addr = ("192.0.2.1", 9)  # TEST-NET-1


def _source_address(remote: Addr) -> str | None:
    """The local IPv4 address the kernel would send from to reach `remote`, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(remote)
            return str(s.getsockname()[0])
    except OSError:
        return None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, runtime: GossipRuntime) -> None:
        self._runtime = runtime

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._runtime._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable after sending to a dead peer: expected, counted.
        self._runtime.drops["udp_error"] += 1


class GossipRuntime:
    """One gossip member on real sockets; `start()`, then `stop()` (which leaves gracefully).

    `listen` is `[host]:port` (port 0 picks a free one, the same for UDP and TCP); `join`
    holds `host[:port]` entries; `advertise` is the `host:port` peers should reach us at
    (default: the bound address, or for a wildcard bind the address that routes to the
    first seed). `node_name` defaults to `hostname:port`. `keyring=None` gossips in
    plaintext (--gossip-insecure). `delegate` is the cluster layer (see delegate.py).
    """

    def __init__(
        self,
        *,
        listen: str,
        profile: GossipProfile,
        keyring: Keyring | None,
        join: Sequence[str] = (),
        advertise: str = "",
        node_name: str = "",
        cluster_name: str = "fnlb",
        keyring_file: str = "",
        delegate: GossipDelegate | None = None,
        meta: bytes = b"",
        leave_timeout: float = LEAVE_TIMEOUT,
    ) -> None:
        self._listen = listen
        self._join = tuple(join)
        self._advertise = advertise
        self._node_name = node_name
        self._delegate = delegate
        self._meta = meta
        self.leave_timeout = leave_timeout
        self.keyring = keyring
        self.keyring_file = keyring_file
        self.cipher = GossipCipher(keyring, cluster_name)
        self.profile = profile.replace(packet_budget=self.cipher.payload_budget(WIRE_LIMIT))
        self.drops: Counter[str] = Counter()
        """Inputs the runtime dropped, by reason (see the module docstring)."""
        self.traffic: Counter[str] = Counter()
        """On the wire, envelopes included: udp_{packets,bytes}_{sent,received},
        tcp_streams_{opened,served}, tcp_bytes_{sent,received}."""
        self._member: Member | None = None
        self._listeners: list[EventListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving = 0
        self._opened = 0
        self._closing = False
        self._left = asyncio.Event()
        self.bound: Addr | None = None
        """The address the sockets are bound to (after `start`)."""

    # --- what the rest of fnlb reads ------------------------------------------------------

    @property
    def member(self) -> Member:
        """The state machine (after `start`). Read it; drive it only through this runtime."""
        if self._member is None:
            raise RuntimeError("the gossip runtime is not started")
        return self._member

    @property
    def started(self) -> bool:
        """True between `start` and `stop`: `member`, `members()` and `stats()` work."""
        return self._member is not None and not self._closing

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def address(self) -> Addr:
        """The advertised address peers gossip with us at."""
        return self.member.addr

    @property
    def joined(self) -> bool:
        """True once a seed answered (or there was none to contact)."""
        return self._member is not None and self._member.joined

    def members(self) -> list[MemberInfo]:
        """Every member we know of, ourselves included (dead and left ones until forgotten)."""
        return self.member.members()

    def add_listener(self, listener: EventListener) -> None:
        """Call `listener(event)` for every membership change, after it is logged."""
        self._listeners.append(listener)

    def set_meta(self, meta: bytes) -> None:
        """Publish new metadata (<= 512 bytes) for this member to every peer."""
        self.member.set_meta(meta, self._now())
        self._pump()

    def all_drops(self) -> dict[str, int]:
        """Drops by reason, the runtime's (wire, crypto) and the member's (codec) together."""
        total = Counter(self.drops)
        if self._member is not None:
            total.update(self._member.drops)
        return dict(total)

    def stats(self) -> dict[str, Any]:
        """Counters for the debug endpoint and the benchmark."""
        m = self.member
        return {
            "traffic": dict(self.traffic),
            "member": dict(m.stats),
            "drops": self.all_drops(),
            "awareness": m.awareness_score,
            "live": m.num_live(),
            "joined": m.joined,
            "encrypted": self.cipher.encrypted,
            "opened_by_key": dict(self.cipher.opened_by_key),
        }

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on the same port, start the member, begin joining."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        host, port = parse_listen(self._listen)
        bind_ip = await self._resolve_one(host) if host else "0.0.0.0"
        await self._bind(bind_ip, port)
        assert self.bound is not None
        seeds = await self._resolve_join()
        advertised = await self._advertised_address(seeds)
        name = self._node_name or f"{socket.gethostname()}:{advertised[1]}"
        self._member = Member(
            name, advertised, self.profile, random.Random(), self._delegate, self._meta
        )
        self._member.join(seeds, self._now())
        self._pump()
        log.info(
            "gossip is listening",
            extra={
                "node": name,
                "bind": f"{self.bound[0]}:{self.bound[1]}",
                "advertise": f"{advertised[0]}:{advertised[1]}",
                "encrypted": self.cipher.encrypted,
                "seeds": len(seeds),
            },
        )
        if self._join:
            self._spawn(self._keep_joining(seeds))

    async def stop(self) -> None:
        """Leave gracefully (see the module docstring), then close every socket. Idempotent."""
        if self._closing or self._loop is None:
            return
        member = self._member
        if member is not None:
            member.leave(self._now())
            self._pump()
            others = [
                m
                for m in member.members()
                if m.name != member.name and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
            ]
            if others and not member.leave_broadcast_done:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.leave_timeout):
                        await self._left.wait()
            log.info("left the gossip cluster", extra={"node": member.name})
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._tcp.wait_closed()

    async def _bind(self, ip: str, port: int) -> None:
        loop = self._loop
        assert loop is not None
        # Port 0: let TCP pick, then take the same number for UDP (retry if UDP's is taken).
        for _ in range(1 if port else 20):
            server = await asyncio.start_server(self._serve_stream, ip, port, backlog=256)
            bound_port = int(server.sockets[0].getsockname()[1])
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(ip, bound_port)
                )
            except OSError:
                server.close()
                if port:
                    raise
                continue
            self._tcp = server
            self._udp = udp
            self.bound = (ip, bound_port)
            return
        raise OSError(f"no port free for both UDP and TCP on {ip}")

    # --- joining --------------------------------------------------------------------------

    async def _resolve_one(self, host: str) -> str:
        assert self._loop is not None
        infos = await self._loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        return str(infos[0][4][0])

    async def _resolve_join(self) -> list[Addr]:
        """Every address every --join entry resolves to; names that fail are logged."""
        assert self._loop is not None
        seeds: list[Addr] = []
        for entry in self._join:
            host, port = parse_peer(entry)
            try:
                infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as e:
                log.warning("cannot resolve a gossip seed", extra={"seed": entry, "error": e})
                continue
            for info in infos:
                addr = (str(info[4][0]), int(info[4][1]))
                if addr not in seeds:
                    seeds.append(addr)
        return seeds

    async def _keep_joining(self, seeds: list[Addr]) -> None:
        """Until a seed answers: re-resolve the names and join any new addresses."""
        interval = max(0.5, self.profile.join_retry_interval)
        while not self._closing:
            if seeds and self.member.joined:
                log.info("joined the gossip cluster", extra={"node": self.name})
                return
            await asyncio.sleep(interval)
            fresh = await self._resolve_join()
            if fresh and set(fresh) != set(seeds):
                seeds = fresh
                self.member.join(seeds, self._now())
                self._pump()

    async def _advertised_address(self, seeds: Sequence[Addr]) -> Addr:
        assert self.bound is not None
        port = self.bound[1]
        if self._advertise:
            host, adv_port = parse_listen(self._advertise)
            if not host:
                raise ConfigError("-advertise: give the host peers reach this one at")
            return (await self._resolve_one(host), adv_port or port)
        ip = self.bound[0]
        if not ipaddress.ip_address(ip).is_unspecified:
            return (ip, port)
        # A wildcard bind: advertise the address this host reaches its first seed from, else
        # its name's address, else the source address of its default route; never loopback
        # when anything else exists, since other hosts would then talk to themselves.
        for seed in seeds:
            source = _source_address(seed)
            if source is not None:
                return (source, port)
        with contextlib.suppress(OSError):
            named = await self._resolve_one(socket.gethostname())
            if not ipaddress.ip_address(named).is_loopback:
                return (named, port)
        source = _source_address(_ANY_REMOTE)
        if source is not None and not ipaddress.ip_address(source).is_loopback:
            return (source, port)
        log.warning(
            "advertising a loopback address for gossip: give --advertise so that peers on "
            "other hosts can reach this one"
        )
        return ("127.0.0.1", port)

    # --- the adapter: inputs in, outputs out, one timer -----------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        if self._closing or self._member is None:
            return
        self.traffic["udp_packets_received"] += 1
        self.traffic["udp_bytes_received"] += len(data)
        try:
            payload = self.cipher.open(data, time.time())
        except RemoteProtocolError as e:
            self.drops[e.reason] += 1
            return
        self._member.receive_datagram(payload, addr, self._now())
        self._pump()

    def _on_timer(self, when: float) -> None:
        self._timer = None
        if self._closing or self._member is None:
            return
        # call_at may fire a hair early (clock resolution): never hand the member a `now`
        # before the deadline it asked for, or it would ask for the same one again.
        self._member.handle_timer(max(self._now(), when))
        self._pump()

    def _pump(self) -> None:
        """Send what the member queued, open its streams, drain events, re-arm the timer."""
        member = self._member
        if member is None or self._closing:
            return
        now = self._now()
        for _ in range(8):  # a refused stream may queue more output; bounded anyway
            datagrams = member.datagrams_to_send(now)
            requests = member.stream_requests(now)
            if not datagrams and not requests:
                break
            for data, addr in datagrams:
                self._send_datagram(data, addr)
            for req in requests:
                if self._opened >= MAX_STREAMS:
                    self.drops["too_many_streams"] += 1
                    member.handle_stream_failure(req.id, now)
                else:
                    self._opened += 1
                    self._spawn(self._request_stream(req))
        while (event := member.next_event()) is not None:
            self._publish(event)
        if member.leave_broadcast_done:
            self._left.set()
        self._arm_timer()

    def _send_datagram(self, data: bytes, addr: Addr) -> None:
        assert self._udp is not None
        sealed = self.cipher.seal(data, time.time())
        try:
            self._udp.sendto(sealed, addr)
        except (OSError, ValueError):
            self.drops["send_failed"] += 1
            return
        self.traffic["udp_packets_sent"] += 1
        self.traffic["udp_bytes_sent"] += len(sealed)

    def _arm_timer(self) -> None:
        assert self._loop is not None
        assert self._member is not None
        when = self._member.next_timer()
        if self._timer is not None:
            # (uvloop's handles have no when(): remember the deadline ourselves)
            if when is not None and self._timer_when == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer, when)
            self._timer_when = when

    def _publish(self, event: MemberEvent) -> None:
        if event.kind is EventKind.CONFLICT:
            log.error(
                "another gossip peer uses this peer's name: give each peer its own --node-name",
                extra={"node": event.name, "theirs": f"{event.addr[0]}:{event.addr[1]}"},
            )
            return  # not a change to the membership: listeners are not told
        log.log(
            _LOG_LEVEL.get(event.kind, logging.INFO),
            f"gossip peer {event.kind.value}",
            extra={
                "peer": event.name,
                "addr": f"{event.addr[0]}:{event.addr[1]}",
                "incarnation": event.incarnation,
            },
        )
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a gossip event listener failed", extra={"peer": event.name})

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- streams --------------------------------------------------------------------------

    async def _request_stream(self, req: StreamRequest) -> None:
        """Open a stream for the member, send its request, hand back the reply (or failure)."""
        member = self.member
        reply: bytes | None = None
        try:
            async with asyncio.timeout(self.profile.stream_timeout):
                reader, writer = await asyncio.open_connection(req.addr[0], req.addr[1])
                self.traffic["tcp_streams_opened"] += 1
                try:
                    out = frame(self.cipher.seal(req.data, time.time()))
                    writer.write(out)
                    self.traffic["tcp_bytes_sent"] += len(out)
                    await writer.drain()
                    data = await read_frame(reader, self.cipher.max_envelope)
                    self.traffic["tcp_bytes_received"] += len(data) + 4
                finally:
                    writer.close()
            reply = self.cipher.open(data, time.time())
        except TimeoutError:
            self.drops["stream_timeout"] += 1
        except FrameError as e:
            self.drops[e.reason] += 1
        except RemoteProtocolError as e:
            self.drops[e.reason] += 1
        except OSError:
            self.drops["stream_refused"] += 1
        finally:
            self._opened -= 1
        if self._closing:
            return
        if reply is None:
            member.handle_stream_failure(req.id, self._now())
        else:
            member.handle_stream_response(req.id, reply, self._now())
        self._pump()

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A peer's stream: one request frame in, at most one reply frame out."""
        if self._closing or self._member is None or self._serving >= MAX_STREAMS:
            self.drops["too_many_streams" if not self._closing else "closing"] += 1
            writer.close()
            return
        self._serving += 1
        self.traffic["tcp_streams_served"] += 1
        try:
            async with asyncio.timeout(self.profile.stream_timeout):
                data = await read_frame(reader, self.cipher.max_envelope)
                self.traffic["tcp_bytes_received"] += len(data) + 4
                payload = self.cipher.open(data, time.time())
                peer = writer.get_extra_info("peername")
                addr: Addr = (str(peer[0]), int(peer[1])) if peer else ("", 0)
                reply = self._member.handle_stream_request(payload, addr, self._now())
                self._pump()
                if reply is not None and not self._closing:
                    out = frame(self.cipher.seal(reply, time.time()))
                    writer.write(out)
                    self.traffic["tcp_bytes_sent"] += len(out)
                    await writer.drain()
        except TimeoutError:
            self.drops["stream_timeout"] += 1
        except FrameError as e:
            self.drops[e.reason] += 1
        except RemoteProtocolError as e:
            self.drops[e.reason] += 1
        except OSError:
            self.drops["stream_reset"] += 1
        finally:
            self._serving -= 1
            writer.close()
