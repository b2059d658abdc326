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
  cipher's reasons, the codec's, and the transport's: frame_too_large, bad_frame,
  stream_closed, stream_timeout, first_byte_timeout, stream_refused, too_many_streams,
  too_many_from_source, evicted_unauthenticated, send_failed).
- Envelopes are bound to their recipient (crypto.py): a datagram or stream to an address
  whose member we know is sealed `to` that member's name (learnt from the member's events);
  a stream's answer is bound to its request. Only a join's first contact with a seed, or an
  answer to an address we know no member at, goes out for any peer.
- Streams we serve (transport.py reads them in authenticated pieces): the first bytes must
  come within `FIRST_BYTE_TIMEOUT`; one source address holds at most
  `MAX_STREAMS_PER_SOURCE` of them; when all `MAX_STREAMS` are taken, a new connection
  evicts the oldest one that has not authenticated yet, so strangers holding connections
  open cannot keep a peer's join out.
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
from fnlb.gossip.codec import MAX_ENTRIES, MAX_STREAM_BYTES
from fnlb.gossip.crypto import GossipCipher, Keyring
from fnlb.gossip.delegate import GossipDelegate
from fnlb.gossip.member import EventKind, Member, MemberEvent, MemberInfo, StreamRequest
from fnlb.gossip.messages import Addr, MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.transport import (
    MAX_STREAMS,
    PIECE,
    FrameError,
    message_frames,
    read_message,
)

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
#: seconds a stream we serve may take to send its first bytes (capped by stream_timeout)
FIRST_BYTE_TIMEOUT = 2.0
#: streams one source address may hold open at once on this peer
MAX_STREAMS_PER_SOURCE = 16
#: bytes of UDP receive buffer asked for (see `_widen_receive_buffer`)
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

EventListener = Callable[[MemberEvent], None]
#: the events that say which member lives at an address now
_NAMES_AN_ADDRESS = frozenset((EventKind.JOINED, EventKind.ALIVE, EventKind.UPDATED))

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


def _widen_receive_buffer(udp: asyncio.DatagramTransport) -> int:
    """Ask for a UDP receive buffer of `UDP_RECEIVE_BUFFER` bytes; what the kernel granted.

    Why: with Linux's default (~208 KB) three 60 KB datagrams fill the buffer, and until the
    loop drains it the kernel drops everything else, probes and acks included (measured in
    bench/gossip_hostile.py). memberlist asks for 2 MB for the same reason. The kernel caps
    the request at net.core.rmem_max; a refusal keeps the default.
    """
    sock = udp.get_extra_info("socket")
    if sock is None:
        return 0
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, runtime: GossipRuntime) -> None:
        self._runtime = runtime

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._runtime._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable after sending to a dead peer: expected, counted.
        self._runtime.drops["udp_error"] += 1


class _Inbound:
    """A stream we serve: where from, and whether its first piece authenticated yet."""

    __slots__ = ("authenticated", "evicted", "source", "writer")

    def __init__(self, writer: asyncio.StreamWriter, source: str) -> None:
        self.writer = writer
        self.source = source
        self.authenticated = False
        self.evicted = False


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
        self._unauthenticated: dict[int, _Inbound] = {}
        """Served streams not authenticated yet, oldest first: evicted when slots run out."""
        self._per_source: Counter[str] = Counter()
        self._names: dict[Addr, str] = {}
        """Member name at each address we know one at: what our envelopes are sealed to."""
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

    def request_push_pull(self) -> bool:
        """A full-state exchange with one random alive member now, out of the regular turn
        (`Member.request_push_pull`: one at a time); False when none was opened."""
        if self._member is None or self._closing:
            return False
        asked = self._member.request_push_pull(self._now())
        self._pump()
        return asked

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
        self.cipher.name = name
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
            server = await asyncio.start_server(
                self._serve_stream, ip, port, backlog=256, limit=PIECE
            )
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
            _widen_receive_buffer(udp)
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
        sealed = self.cipher.seal(data, time.time(), to=self._names.get(addr, ""))
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
        if event.kind in _NAMES_AN_ADDRESS and event.name != self.cipher.name:
            self._remember_name(event.name, event.addr)
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

    def _remember_name(self, name: str, addr: Addr) -> None:
        """Seal what we send to `addr` to `name` from now on (see the module docstring).

        Only news that a member lives at an address counts (joined, alive, updated): the late
        death of a member that used to live there must not take the address back from its
        new occupant, whose packets would then all be refused as not for it. Bounded: when the
        table outgrows what a push-pull can list, it is rebuilt from the live members.
        """
        self._names[addr] = name
        if len(self._names) > 2 * MAX_ENTRIES and self._member is not None:
            self._names = {
                m.addr: m.name
                for m in self._member.members()
                if m.state in (MemberState.ALIVE, MemberState.SUSPECT) and m.name != self.name
            }

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
                    to = self._names.get(req.addr, "")
                    pieces, nonce = message_frames(self.cipher, req.data, time.time(), to=to)
                    for out in pieces:
                        writer.write(out)
                        self.traffic["tcp_bytes_sent"] += len(out)
                    await writer.drain()
                    reply, _ = await read_message(
                        reader, self.cipher, time.time, MAX_STREAM_BYTES, reply_to=nonce
                    )
                    self.traffic["tcp_bytes_received"] += len(reply)
                finally:
                    writer.close()
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

    def _admit(self, writer: asyncio.StreamWriter) -> _Inbound | None:
        """A slot for a new served stream, or None (counted) if it must be refused."""
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        if self._closing or self._member is None:
            self.drops["closing"] += 1
            return None
        if self._per_source[source] >= MAX_STREAMS_PER_SOURCE:
            self.drops["too_many_from_source"] += 1
            return None
        if self._serving >= MAX_STREAMS:
            if not self._unauthenticated:
                self.drops["too_many_streams"] += 1
                return None
            oldest = self._unauthenticated.pop(next(iter(self._unauthenticated)))
            oldest.evicted = True
            self._release(oldest)
            self.drops["evicted_unauthenticated"] += 1
            oldest.writer.transport.abort()
        inbound = _Inbound(writer, source)
        self._serving += 1
        self._per_source[source] += 1
        self._unauthenticated[id(inbound)] = inbound
        return inbound

    def _release(self, inbound: _Inbound) -> None:
        self._unauthenticated.pop(id(inbound), None)
        self._serving -= 1
        self._per_source[inbound.source] -= 1
        if self._per_source[inbound.source] <= 0:
            del self._per_source[inbound.source]

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A peer's stream: one request message in, at most one reply message out."""
        inbound = self._admit(writer)
        if inbound is None:
            writer.transport.abort()
            return
        self.traffic["tcp_streams_served"] += 1

        def authenticated() -> None:
            inbound.authenticated = True
            self._unauthenticated.pop(id(inbound), None)

        try:
            async with asyncio.timeout(self.profile.stream_timeout):
                payload, nonce = await read_message(
                    reader,
                    self.cipher,
                    time.time,
                    MAX_STREAM_BYTES,
                    first_byte_timeout=min(FIRST_BYTE_TIMEOUT, self.profile.stream_timeout),
                    on_authenticated=authenticated,
                )
                self.traffic["tcp_bytes_received"] += len(payload)
                peer = writer.get_extra_info("peername")
                addr: Addr = (str(peer[0]), int(peer[1])) if peer else ("", 0)
                assert self._member is not None
                reply = self._member.handle_stream_request(payload, addr, self._now())
                self._pump()
                if reply is not None and not self._closing:
                    pieces, _ = message_frames(self.cipher, reply, time.time(), reply_to=nonce)
                    for out in pieces:
                        writer.write(out)
                        self.traffic["tcp_bytes_sent"] += len(out)
                    await writer.drain()
        except TimeoutError:
            if not inbound.evicted:
                self.drops["stream_timeout"] += 1
        except FrameError as e:
            if not inbound.evicted:
                self.drops[e.reason] += 1
        except RemoteProtocolError as e:
            self.drops[e.reason] += 1
        except OSError:
            if not inbound.evicted:
                self.drops["stream_reset"] += 1
        finally:
            if not inbound.evicted:
                self._release(inbound)
            writer.close()
