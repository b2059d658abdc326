"""One SWIM + Lifeguard group member as a sans-I/O state machine.

Rule 1: no asyncio, socket, time or global random here (an import-linter contract enforces it).
Rule 2: every input carries `now` (seconds on any monotonic clock); every output is returned.

The owner (the asyncio runtime, or the simulator) drives it:

    m = Member("n1", ("10.0.0.1", 7946), GossipProfile.fnlb_default(), random.Random(seed))
    m.join([("10.0.0.2", 7946)], now)
    loop:
        m.receive_datagram(data, addr, now)            # a UDP datagram arrived
        m.handle_timer(now)                            # when now >= m.next_timer()
        reply = m.handle_stream_request(data, addr, now)   # a peer opened a stream to us
        m.handle_stream_response(req.id, data, now)    # our stream request was answered
        m.handle_stream_failure(req.id, now)           # ... or could not be (refused, timeout)
        m.request_push_pull(now)                       # the owner wants an exchange now
        then, after any of these: send every m.datagrams_to_send(now); open a stream for every
        m.stream_requests(now); re-arm one timer at m.next_timer(); drain m.next_event().

Theory of operation
- Failure detection (SWIM): every probe interval (stretched by Lifeguard's awareness score)
  ping the next member of a list reshuffled each pass. No ack within probe_timeout: ask
  indirect_checks random members to ping it for us (they answer Ack, or Nack when the target
  did not answer them), and ping it over a stream (memberlist's TCP fallback). No ack by the
  end of the interval: suspect it.
- Suspicion: broadcast Suspect; the suspect refutes with Alive at a higher incarnation. The
  timeout starts at its maximum and shrinks with independent confirmations (suspicion.py);
  a ping to a suspect carries the suspicion so it can refute at once (buddy system). On
  expiry: Dead. A member never accepts its own death: it refutes (or, leaving, ignores it).
  Two additions to memberlist (docs/gossip.md says why): a member that hears a fresh
  suspicion probes the suspect next, out of turn (a quick independent confirmation, or a
  quick refutation); and an accusation of an incarnation we already refuted re-queues our
  Alive, so an accuser that missed the refutation gets it on the ack to its buddy ping.
- Dissemination: state changes and user broadcasts are queued (broadcasts.py) and ride on
  every outgoing datagram; a gossip round every gossip_interval sends queued ones to
  gossip_nodes random members (recently dead included, so that they can refute).
- Anti-entropy: every push_pull_interval a full-state exchange over a stream with one random
  alive member; a peer's Dead rows are merged as Suspect (a stale view must not kill anyone).
  The owner may ask for one more out of turn (`request_push_pull`), one open at a time.
  Every reconnect_interval the same exchange with one random recently dead member, so that a
  healed partition merges by itself. Joining is such an exchange with every seed, retried
  until one answers.
- Graceful leave: broadcast Dead about ourselves at a new incarnation (seen as Left); the owner
  keeps the member running until `leave_broadcast_done` and then stops calling it.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from fnlb.errors import LocalProtocolError, RemoteProtocolError
from fnlb.gossip import codec
from fnlb.gossip.awareness import Awareness
from fnlb.gossip.broadcasts import BroadcastQueue, retransmit_limit
from fnlb.gossip.delegate import GossipDelegate, NullDelegate
from fnlb.gossip.messages import (
    Ack,
    Addr,
    Alive,
    DatagramMessage,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    PushPullEntry,
    StreamPing,
    Suspect,
    UserBroadcast,
    UserDirect,
)
from fnlb.gossip.profile import META_MAX, GossipProfile
from fnlb.gossip.suspicion import Suspicion

HEARSAY = ""
"""The accuser of a suspicion taken from a push-pull row: no member has this name, so no
real accuser's Suspect is mistaken for it (each still counts as a confirmation)."""
_SEEN_BROADCASTS = 4096  # user broadcasts remembered to stop echoes
_MAX_RELAYS = 1024  # indirect pings run for others at once (each lives probe_timeout)
_CLAIMANTS = 16  # other addresses whose claims to our name we remember (see _claimed_from)
NACK_FRACTION = 0.8
"""Helpers nack this fraction of the probe timeout after relaying a ping."""


def push_pull_interval(n: int, base: float) -> float:
    """Seconds between push-pulls in a group of `n`: `base`, stretched beyond 32 members.

    memberlist's scaling, so that the total push-pull load grows slower than N:
    base * (ceil(log2(n / 32)) + 1) for n > 32.
    """
    if n <= 32:
        return base
    mult = 1
    while 32 << (mult - 1) < n:
        mult += 1
    return base * mult


class Rng(Protocol):
    """The randomness a member needs; `random.Random(seed)` provides it."""

    def random(self) -> float: ...

    def randrange(self, start: int, /) -> int: ...

    def shuffle(self, x: list[Any], /) -> None: ...


class EventKind(Enum):
    """What changed about another member, as seen by this one."""

    JOINED = "joined"
    """New to us, or back after being dead or left."""
    SUSPECT = "suspect"
    ALIVE = "alive"
    """A suspect refuted the suspicion."""
    DEAD = "dead"
    LEFT = "left"
    UPDATED = "updated"
    """New metadata or address."""
    CONFLICT = "conflict"
    """Another live member claims *our* name from another address (two peers given one node
    name): the event's name is ours and its address the claimant's. Both keep refuting each
    other, so the others' view of that name flips between them until one is renamed."""


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """One change in this member's view of `name` (never about itself, but for CONFLICT)."""

    kind: EventKind
    name: str
    addr: Addr
    incarnation: int
    meta: bytes


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A row of the member table as `Member.members()` returns it."""

    name: str
    addr: Addr
    state: MemberState
    incarnation: int
    meta: bytes


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Open a stream to `addr`, write `data`, read one reply and hand it back by `id`.

    The runtime frames messages on the stream itself (e.g. a 4-byte length prefix) and gives
    up after profile.stream_timeout; the member also forgets the request at its own deadline.
    """

    id: int
    addr: Addr
    data: bytes


@dataclass(slots=True)
class _Node:
    name: str
    addr: Addr
    incarnation: int
    state: MemberState
    meta: bytes
    state_change: float


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    addr: Addr
    ack_deadline: float
    end: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    """An indirect ping we run on behalf of `requester`."""

    requester: Addr
    seq: int
    deadline: float
    nack: bool


class _StreamKind(Enum):
    JOIN = "join"
    PUSH_PULL = "push_pull"
    RECONNECT = "reconnect"
    PING = "ping"


@dataclass(slots=True)
class _Stream:
    kind: _StreamKind
    addr: Addr
    deadline: float
    seq: int = 0


_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


class Member:
    """A SWIM + Lifeguard member: bytes and `now` in, bytes, timers and events out."""

    def __init__(
        self,
        name: str,
        addr: Addr,
        profile: GossipProfile,
        rng: Rng,
        delegate: GossipDelegate | None = None,
        meta: bytes = b"",
    ) -> None:
        if not 0 < len(name) <= codec.MAX_NAME:
            raise LocalProtocolError(f"member name must be 1..{codec.MAX_NAME} characters")
        if len(meta) > META_MAX:
            raise LocalProtocolError(f"metadata is {len(meta)} bytes, limit {META_MAX}")
        self.name = name
        self.addr = addr
        self.profile = profile
        self._rng = rng
        self._delegate: GossipDelegate = delegate if delegate is not None else NullDelegate()
        self._me = _Node(name, addr, 0, MemberState.ALIVE, meta, 0.0)
        self._nodes: dict[str, _Node] = {name: self._me}
        self._live = 1  # alive + suspect, ourselves included: the group-size estimate
        self._order: list[str] = []  # probe order (everyone but us), reshuffled each pass
        self._order_index = 0
        self._probe_first: list[str] = []  # fresh suspects, probed out of turn
        self._seq = 0
        self._seq_key = hashlib.blake2b(name.encode(), digest_size=32).digest()
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._streams: dict[int, _Stream] = {}
        self._stream_id = 0
        self._stream_out: list[StreamRequest] = []
        self._outbox: list[tuple[bytes, Addr]] = []
        self._events: deque[MemberEvent] = deque()
        self._queue = BroadcastQueue()
        self._suspicions: dict[str, Suspicion] = {}
        self._awareness = Awareness(profile.awareness_max_multiplier)
        self._seen: dict[tuple[str, bytes, bytes], None] = {}
        self._seeds: list[Addr] = []
        self._started = False
        self._joined = False
        self._leaving = False
        self._next_probe_at = 0.0
        self._next_gossip_at = 0.0
        self._next_push_pull_at: float | None = None
        self._next_reconnect_at: float | None = None
        self._join_retry_at: float | None = None
        self._asked: int | None = None  # the stream of the last `request_push_pull`
        # address -> (our incarnation after refuting its claim, whether reported as a conflict)
        self._claimants: dict[Addr, tuple[int, bool]] = {}
        self.drops: Counter[str] = Counter()
        """Inputs dropped, by reason: the codec's (codec.REASONS), plus 'misdirected' (a ping
        for another name), 'unexpected' (wrong message on a stream), 'relay_overflow',
        'oversized_broadcast' (a peer's, too big to relay), 'local_broadcast_too_large' and
        'local_broadcast_key_too_long' (our delegate's)."""
        self.stats: Counter[str] = Counter()
        """Traffic counters: datagrams/bytes sent and received, streams opened, and
        'name_conflicts' (claims to our name from a live member elsewhere)."""
        self.received: Counter[str] = Counter()
        """Datagram messages received, by type (Ping, Ack, Alive, Suspect, Dead, User...)."""
        self.sent: Counter[int] = Counter()
        """Datagram messages sent, by wire type code (codec.PING...), broadcasts included."""

    # --- the owner's API ----------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        """Our own incarnation number (only ever grows)."""
        return self._me.incarnation

    @property
    def state(self) -> MemberState:
        """Our own state: ALIVE, or LEFT after `leave` (never SUSPECT or DEAD)."""
        return self._me.state

    @property
    def joined(self) -> bool:
        """True once a seed answered (or there were none)."""
        return self._joined

    @property
    def awareness_score(self) -> int:
        """Lifeguard's local health score: 0 healthy .. awareness_max_multiplier - 1."""
        return self._awareness.score

    @property
    def leave_broadcast_done(self) -> bool:
        """After `leave`: our Left message has been sent its full number of times."""
        return self._leaving and self.name not in self._queue

    @property
    def max_broadcast_size(self) -> int:
        """Largest len(key) + len(payload) a delegate broadcast may have (larger: dropped and
        counted under drops['local_broadcast_too_large'])."""
        # The empty message has two 2-byte bin headers; a key <= 128 B keeps its 2-byte
        # header, a payload of 256..65535 B takes a 3-byte one.
        empty = len(codec.encode_message(UserBroadcast(self.name, b"", b"")))
        return self._broadcast_room() - (empty + 1)

    def join(self, seeds: Sequence[Addr], now: float) -> None:
        """Start (or rejoin after `leave`) and contact `seeds` by push-pull until one answers.

        With no seeds (other than our own address) we are a group of one, already joined.
        """
        self._seq_key = hashlib.blake2b(
            f"{self.name}\x00{now!r}".encode(), digest_size=32
        ).digest()  # see _next_seq
        if not self._started:
            self._started = True
            p = self.profile
            self._next_probe_at = now + self._rng.random() * p.probe_interval
            self._next_gossip_at = now
            if p.push_pull_interval > 0:
                self._next_push_pull_at = now + self._rng.random() * self._push_pull_interval()
            if p.reconnect_interval > 0:
                self._next_reconnect_at = now + self._rng.random() * p.reconnect_interval
            self._queue_alive(self._me)
        if self._leaving:
            self._leaving = False
            self._joined = False
            self._me.incarnation += 1
            self._me.state = MemberState.ALIVE
            self._me.state_change = now
            self._queue_alive(self._me)
        self._seeds = [s for s in seeds if s != self.addr]
        # Joining again with new seeds while already in a group keeps us "joined".
        self._joined = self._joined or not self._seeds
        self._join_retry_at = None
        for seed in self._seeds:
            self._open_stream(_StreamKind.JOIN, seed, self._encode_state(join=True), now)

    def leave(self, now: float) -> None:
        """Leave gracefully: broadcast that we left; stop probing. Idempotent.

        Keep calling the member (timers, datagrams) until `leave_broadcast_done`, then stop.
        """
        if self._leaving or not self._started:
            return
        self._leaving = True
        self._me.incarnation += 1
        self._me.state = MemberState.LEFT
        self._me.state_change = now
        self._probe = None
        self._queue.queue(
            self.name, codec.encode_message(Dead(self._me.incarnation, self.name, self.name))
        )

    def set_meta(self, meta: bytes, now: float) -> None:
        """Publish new metadata (<= 512 bytes) under a new incarnation."""
        if len(meta) > META_MAX:
            raise LocalProtocolError(f"metadata is {len(meta)} bytes, limit {META_MAX}")
        self._me.meta = meta
        self._me.incarnation += 1
        self._queue_alive(self._me)

    def request_push_pull(self, now: float) -> bool:
        """Exchange full state with one random alive member now, out of turn: True when a
        stream was queued (take it from `stream_requests`).

        Why: the owner may know that a peer holds state it lacks right now (fnlb: a peer
        started less than a window ago wants the cluster's placement of a new epoch, which
        the regular exchange, every push_pull_interval, brings up to 30 s late). The regular
        schedule is left as it is. Bounded: while the stream of the last request is open
        (until its answer, failure or timeout), asking again queues nothing; nor does
        asking with no other alive member, before `join` or after `leave`."""
        if not self._started or self._leaving:
            return False
        if self._asked is not None and self._asked in self._streams:
            return False
        asked = self._push_pull(now)
        if asked is None:
            return False
        self.stats["push_pull_asked"] += 1
        self._asked = asked
        return True

    def members(self) -> list[MemberInfo]:
        """Every member we know of (ourselves included), dead and left ones until forgotten."""
        return [
            MemberInfo(n.name, n.addr, n.state, n.incarnation, n.meta) for n in self._nodes.values()
        ]

    def member(self, name: str) -> MemberInfo | None:
        """One row of the member table, or None."""
        n = self._nodes.get(name)
        return None if n is None else MemberInfo(n.name, n.addr, n.state, n.incarnation, n.meta)

    def num_live(self) -> int:
        """Members alive or suspect, ourselves included: the group-size estimate."""
        return self._live

    def next_event(self) -> MemberEvent | None:
        """The oldest membership change not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Datagrams built since the last call, each <= profile.packet_budget bytes."""
        out, self._outbox = self._outbox, []
        return out

    def stream_requests(self, now: float) -> list[StreamRequest]:
        """Streams to open since the last call (push-pull, join, fallback probe)."""
        out, self._stream_out = self._stream_out, []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` must next be called (None before `join`)."""
        if not self._started:
            return None
        t = self._next_gossip_at
        if not self._leaving:
            probe = self._probe
            if probe is None:
                t = min(t, self._next_probe_at)
            else:
                t = min(t, probe.end if probe.indirect_sent else probe.ack_deadline)
            for opt in (self._next_push_pull_at, self._next_reconnect_at, self._join_retry_at):
                if opt is not None and opt < t:
                    t = opt
        for s in self._suspicions.values():
            if s.deadline < t:
                t = s.deadline
        for r in self._relays.values():
            if r.deadline < t:
                t = r.deadline
        for st in self._streams.values():
            if st.deadline < t:
                t = st.deadline
        return t

    def handle_timer(self, now: float) -> None:
        """Run every timer due at `now` (late ones too: a stalled loop catches up here)."""
        if not self._started:
            return
        for name in [n for n, s in self._suspicions.items() if s.deadline <= now]:
            self._suspicion_expired(name, now)
        for seq in [q for q, r in self._relays.items() if r.deadline <= now]:
            relay = self._relays.pop(seq)
            if relay.nack:
                self._send(relay.requester, [codec.encode_message(Nack(relay.seq))])
        for sid in [i for i, s in self._streams.items() if s.deadline <= now]:
            self.handle_stream_failure(sid, now)
        if not self._leaving:
            self._probe_timers(now)
            if self._next_push_pull_at is not None and now >= self._next_push_pull_at:
                self._next_push_pull_at = now + self._push_pull_interval()
                self._push_pull(now)
            if self._next_reconnect_at is not None and now >= self._next_reconnect_at:
                self._next_reconnect_at = now + self.profile.reconnect_interval
                self._reconnect(now)
            if self._join_retry_at is not None and now >= self._join_retry_at:
                self._join_retry_at = None
                for seed in self._seeds:
                    self._open_stream(_StreamKind.JOIN, seed, self._encode_state(join=True), now)
        if now >= self._next_gossip_at:
            self._next_gossip_at = now + self.profile.gossip_interval
            self._gossip(now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram from `addr`: act on each message; garbage is dropped and counted."""
        if not self._started:
            return
        self.stats["datagrams_received"] += 1
        self.stats["bytes_received"] += len(data)
        try:
            messages, unknown = codec.decode_compound(data)
        except RemoteProtocolError as exc:
            self.drops[exc.reason] += 1
            return
        if unknown:
            # A newer peer's message types: skip them, keep what rides with them.
            self.drops[codec.UNKNOWN_TYPE] += unknown
        for msg in messages:
            self._dispatch(msg, addr, now)

    def handle_stream_request(self, data: bytes, addr: Addr, now: float) -> bytes | None:
        """A peer's stream message: the reply to write back, or None to close the stream."""
        try:
            msg = codec.decode_stream(data)
        except RemoteProtocolError as exc:
            self.drops[exc.reason] += 1
            return None
        if isinstance(msg, StreamPing):
            if msg.target != self.name:
                self.drops["misdirected"] += 1
                return None
            return codec.encode_stream(Ack(msg.seq))
        if isinstance(msg, PushPull):
            self.stats["push_pull_served"] += 1
            # Merge first, so that a refutation of what the peer believed about us is already
            # in the state we answer with (it heals partitions one round sooner).
            self._merge_state(msg.entries, now, rebroadcast=True)
            self._delegate.merge_remote_state(msg.user_state, msg.join)
            return self._encode_state(join=False)
        self.drops["unexpected"] += 1
        return None

    def handle_stream_response(self, request_id: int, data: bytes, now: float) -> None:
        """The reply to our stream request `request_id` (late replies are ignored)."""
        st = self._streams.pop(request_id, None)
        if st is None:
            return
        try:
            msg = codec.decode_stream(data)
        except RemoteProtocolError as exc:
            self.drops[exc.reason] += 1
            self._stream_failed(st, now)
            return
        if st.kind is _StreamKind.PING:
            probe = self._probe
            if isinstance(msg, Ack) and probe is not None and msg.seq == probe.seq == st.seq:
                self._probe_succeeded()
            return
        if not isinstance(msg, PushPull):
            self.drops["unexpected"] += 1
            self._stream_failed(st, now)
            return
        join = st.kind is _StreamKind.JOIN
        self._merge_state(msg.entries, now, rebroadcast=not join)
        self._delegate.merge_remote_state(msg.user_state, msg.join)
        if join:
            self._joined = True
            self._join_retry_at = None

    def handle_stream_failure(self, request_id: int, now: float) -> None:
        """Our stream request `request_id` failed (refused, reset, timed out)."""
        st = self._streams.pop(request_id, None)
        if st is not None:
            self._stream_failed(st, now)

    # --- probing ------------------------------------------------------------------------

    def _probe_timers(self, now: float) -> None:
        probe = self._probe
        if probe is not None and not probe.indirect_sent and now >= probe.ack_deadline:
            self._probe_indirect(probe, now)
        if probe is not None and probe.indirect_sent and now >= probe.end:
            self._probe_failed(probe, now)
        if self._probe is None and now >= self._next_probe_at:
            self._start_probe(now)

    def _next_probe_target(self, now: float) -> _Node | None:
        while self._probe_first:
            node = self._nodes.get(self._probe_first.pop())
            if node is not None and node.state is MemberState.SUSPECT:
                return node
        for _ in range(len(self._order) + 1):
            if self._order_index >= len(self._order):
                self._reshuffle(now)
                if not self._order:
                    return None
            name = self._order[self._order_index]
            self._order_index += 1
            node = self._nodes.get(name)
            if node is not None and node.state in _LIVE:
                return node
        return None

    def _reshuffle(self, now: float) -> None:
        """Start a new probe pass: forget long-dead members, shuffle everyone else."""
        keep = self.profile.dead_retention
        order = []
        for name in self._order:
            node = self._nodes.get(name)
            if node is None:
                continue
            if node.state not in _LIVE and now - node.state_change > keep:
                del self._nodes[name]
                continue
            order.append(name)
        self._rng.shuffle(order)
        self._order = order
        self._order_index = 0

    def _start_probe(self, now: float) -> None:
        interval = self._awareness.scale(self.profile.probe_interval)
        self._next_probe_at = now + interval
        target = self._next_probe_target(now)
        if target is None:
            return
        seq = self._next_seq()
        self._probe = _Probe(
            seq, target.name, target.addr, now + self.profile.probe_timeout, now + interval
        )
        msgs = [codec.encode_message(Ping(seq, target.name))]
        if target.state is MemberState.SUSPECT:
            # Buddy system: tell the suspect directly, so it can refute at once. The
            # suspicion goes first: the suspect processes it (and queues its refutation)
            # before it answers the ping, so the refutation rides on the ack.
            suspect = Suspect(target.incarnation, target.name, self.name)
            msgs.insert(0, codec.encode_message(suspect))
        self._send(target.addr, msgs)

    def _next_seq(self) -> int:
        """A fresh probe sequence number: a per-probe nonce, not a shared count.

        Counting 1, 2, 3... (memberlist's way) made every member's numbers the same small
        integers, so an Ack captured between two other peers matched the probe a third one
        had open (issue #12). Each number is now a 62-bit hash of a key of this member (its
        name and the time it joined, so a restart under the same name draws other numbers)
        and a count: members' numbers never meet, and an Ack matches only the Ping it was sent
        for. No secret is needed (envelopes are sealed; a key holder is a member anyway), and
        the member's random generator is not drawn from, so seeded simulations keep their
        course.
        """
        while True:
            self._seq += 1
            digest = hashlib.blake2b(
                self._seq.to_bytes(8, "big"), key=self._seq_key, digest_size=8
            ).digest()
            seq = int.from_bytes(digest, "big") >> 2
            if seq not in self._relays and not (self._probe and self._probe.seq == seq):
                return seq

    def _probe_indirect(self, probe: _Probe, now: float) -> None:
        probe.indirect_sent = True
        # Even if this timer fired late (a stalled loop), give the helpers a full timeout.
        probe.end = max(probe.end, now + self.profile.probe_timeout)
        helpers = self._random_nodes(
            self.profile.indirect_checks,
            lambda n: n.state is MemberState.ALIVE and n.name != probe.target,
        )
        # Tell the helpers when we need their nack: a helper with a longer probe timeout than
        # ours (another profile) would otherwise nack after our probe has ended.
        nack_after_ms = round(NACK_FRACTION * self.profile.probe_timeout * 1000)
        req = codec.encode_message(
            IndirectPing(probe.seq, probe.target, probe.addr, True, nack_after_ms)
        )
        for helper in helpers:
            self._send(helper.addr, [req])
        probe.expected_nacks = len(helpers)
        if self.profile.stream_probe:
            data = codec.encode_stream(StreamPing(probe.seq, probe.target))
            sid = self._open_stream(_StreamKind.PING, probe.addr, data, now, deadline=probe.end)
            self._streams[sid].seq = probe.seq

    def _probe_succeeded(self) -> None:
        self._probe = None
        self._awareness.apply_delta(-1)

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self._probe = None
        # Lifeguard: missing nacks mean *we* may be the slow one.
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply_delta(1)
        node = self._nodes.get(probe.target)
        if node is not None and node.state in _LIVE and node.addr == probe.addr:
            self._on_suspect(Suspect(node.incarnation, node.name, self.name), now)

    # --- incoming messages --------------------------------------------------------------

    def _dispatch(self, msg: DatagramMessage, addr: Addr, now: float) -> None:
        self.received[type(msg).__name__] += 1  # by type, for /metrics
        if isinstance(msg, Ping):
            if msg.target == self.name:
                self._send(addr, [codec.encode_message(Ack(msg.seq))])
            else:
                self.drops["misdirected"] += 1
        elif isinstance(msg, Ack):
            probe = self._probe
            if probe is not None and msg.seq == probe.seq:
                self._probe_succeeded()
            else:
                relay = self._relays.pop(msg.seq, None)
                if relay is not None:
                    self._send(relay.requester, [codec.encode_message(Ack(relay.seq))])
        elif isinstance(msg, Alive):
            self._on_alive(msg, now, rebroadcast=True)
        elif isinstance(msg, Suspect):
            self._on_suspect(msg, now)
        elif isinstance(msg, Dead):
            self._on_dead(msg, now)
        elif isinstance(msg, UserBroadcast):
            self._on_user(msg)
        elif isinstance(msg, UserDirect):
            if msg.origin == self.name:
                self.drops["own_direct"] += 1
            else:
                self._delegate.notify_broadcast(msg.origin, msg.key, msg.payload)
        elif isinstance(msg, IndirectPing):
            if len(self._relays) >= _MAX_RELAYS:
                self.drops["relay_overflow"] += 1
                return
            seq = self._next_seq()
            # Nack at 80 % of the probe timeout (as Lifeguard suggests): a nack sent at the full
            # timeout reaches the prober after its probe ended, so every real failure would
            # count as missing nacks and wrongly raise the prober's awareness score. The
            # prober's own delay, when it gives one, caps ours (mixed profiles).
            delay = NACK_FRACTION * self.profile.probe_timeout
            if msg.nack_after_ms is not None:
                delay = min(delay, msg.nack_after_ms / 1000)
            self._relays[seq] = _Relay(addr, msg.seq, now + delay, msg.nack)
            self._send(msg.target_addr, [codec.encode_message(Ping(seq, msg.target))])
        elif isinstance(msg, Nack):
            probe = self._probe
            if probe is not None and msg.seq == probe.seq:
                probe.nacks += 1

    def _on_alive(self, msg: Alive, now: float, rebroadcast: bool) -> None:
        if msg.node == self.name:
            me = self._me
            if self._leaving or msg.incarnation < me.incarnation:
                return
            if msg.incarnation == me.incarnation and msg.meta == me.meta and msg.addr == me.addr:
                return
            if msg.addr != me.addr:
                self._claimed_from(msg)
            self._refute(msg.incarnation)
            return
        node = self._nodes.get(msg.node)
        if node is None:
            node = _Node(msg.node, msg.addr, msg.incarnation, MemberState.ALIVE, msg.meta, now)
            self._nodes[msg.node] = node
            self._live += 1
            self._order.insert(self._rng.randrange(len(self._order) + 1), msg.node)
            self._emit(EventKind.JOINED, node)
            if rebroadcast:
                self._queue_alive(node)
            return
        if msg.incarnation <= node.incarnation:
            return
        prev = node.state
        changed = node.meta != msg.meta or node.addr != msg.addr
        node.incarnation = msg.incarnation
        node.addr = msg.addr
        node.meta = msg.meta
        self._set_state(node, MemberState.ALIVE, now)
        self._suspicions.pop(node.name, None)
        if rebroadcast:
            self._queue_alive(node)
        if prev in (MemberState.DEAD, MemberState.LEFT):
            self._emit(EventKind.JOINED, node)
        elif prev is MemberState.SUSPECT:
            self._emit(EventKind.ALIVE, node)
        elif changed:
            self._emit(EventKind.UPDATED, node)

    def _on_suspect(self, msg: Suspect, now: float, *, hearsay: bool = False) -> None:
        node = self._nodes.get(msg.node)
        if node is None:
            return
        if msg.incarnation < node.incarnation:
            if node is self._me:
                self._repeat_refutation()
            return
        running = self._suspicions.get(msg.node)
        if running is not None:
            if not hearsay and running.confirm(msg.accuser):
                self._queue.queue(msg.node, codec.encode_message(msg))
            return
        if node.state is not MemberState.ALIVE:
            return
        if node is self._me:
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        node.incarnation = msg.incarnation
        self._set_state(node, MemberState.SUSPECT, now)
        if not hearsay:
            self._queue.queue(msg.node, codec.encode_message(msg))
        self._suspicions[msg.node] = Suspicion.begin(msg.accuser, now, self._live, self.profile)
        if msg.accuser != self.name:
            # Probe a fresh suspect next, out of turn: our own probe either confirms the
            # suspicion independently (Lifeguard shrinks the timeout) or carries it to the
            # suspect, which refutes (buddy system) - both sooner than waiting for our turn.
            self._probe_first.append(msg.node)
        self._emit(EventKind.SUSPECT, node)

    def _suspicion_expired(self, name: str, now: float) -> None:
        self._suspicions.pop(name, None)
        node = self._nodes.get(name)
        if node is not None and node.state is MemberState.SUSPECT:
            self._on_dead(Dead(node.incarnation, name, self.name), now)

    def _on_dead(self, msg: Dead, now: float) -> None:
        node = self._nodes.get(msg.node)
        if node is None:
            return
        if msg.incarnation < node.incarnation:
            if node is self._me:
                self._repeat_refutation()
            return
        left = msg.accuser == msg.node
        if node.state is MemberState.LEFT or (node.state is MemberState.DEAD and not left):
            return
        if node is self._me:
            # Never accept our own death: refute it (unless we are the one leaving).
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        node.incarnation = msg.incarnation
        self._set_state(node, MemberState.LEFT if left else MemberState.DEAD, now)
        self._suspicions.pop(node.name, None)
        self._queue.queue(msg.node, codec.encode_message(msg))
        self._emit(EventKind.LEFT if left else EventKind.DEAD, node)

    def _repeat_refutation(self) -> None:
        """Someone still accuses an incarnation we already refuted: it missed our Alive.

        Queue it afresh, so that it rides on our very next packets - the ack to a
        buddy-system ping included, since the ping carries the suspicion first. Afresh even
        when still queued: an accusation that arrives after our refutation was sent to
        others may find it one transmission from its limit, and in a small group (no
        confirmations, the shortest suspicion timeout) that last copy can be lost too.
        """
        if not self._leaving:
            self._queue_alive(self._me)

    def _claimed_from(self, msg: Alive) -> None:
        """Someone at another address says it is us: a stale rumour, or a second live peer?

        A rumour of our own past (we restarted on another port) is refuted once and dies out:
        nothing newer than our refutation can come from a process that is gone. A live
        claimant answers the refutation with a higher incarnation still; such a claim is
        counted, and reported as a CONFLICT event once per address.
        """
        if len(self._claimants) >= _CLAIMANTS:
            self._claimants.clear()
        refuted_with, reported = self._claimants.get(msg.addr, (None, False))
        live = refuted_with is not None and msg.incarnation >= refuted_with
        refute_with = max(self._me.incarnation, msg.incarnation) + 1  # what _refute announces
        self._claimants[msg.addr] = (refute_with, reported or live)
        if not live:
            return
        self.stats["name_conflicts"] += 1
        if not reported:
            self._events.append(
                MemberEvent(EventKind.CONFLICT, self.name, msg.addr, msg.incarnation, msg.meta)
            )

    def _refute(self, accused_incarnation: int) -> None:
        me = self._me
        me.incarnation = max(me.incarnation, accused_incarnation) + 1
        self._awareness.apply_delta(1)
        self._queue_alive(me)

    def _on_user(self, msg: UserBroadcast) -> None:
        ident = (msg.origin, msg.key, hashlib.blake2b(msg.payload, digest_size=8).digest())
        if ident in self._seen:
            return
        self._remember(ident)
        if msg.origin == self.name:
            return
        encoded = codec.encode_message(msg)
        if len(encoded) > self._broadcast_room():
            self.drops["oversized_broadcast"] += 1
            return
        if self._delegate.notify_broadcast(msg.origin, msg.key, msg.payload):
            # Relay only what was news to the delegate: a stale copy arriving after a newer
            # one (same origin and key) must not replace it in the queue.
            self._queue.queue(("user", msg.origin, msg.key), encoded)

    def _remember(self, ident: tuple[str, bytes, bytes]) -> None:
        self._seen[ident] = None
        if len(self._seen) > _SEEN_BROADCASTS:
            del self._seen[next(iter(self._seen))]

    def _merge_state(self, entries: Iterable[PushPullEntry], now: float, rebroadcast: bool) -> None:
        for e in entries:
            if e.state is MemberState.ALIVE:
                self._on_alive(Alive(e.incarnation, e.name, e.addr, e.meta), now, rebroadcast)
            elif e.state is MemberState.LEFT:
                self._on_dead(Dead(e.incarnation, e.name, e.name), now)
            else:
                # A peer's Dead may be stale (a partition): suspect instead, so a live
                # member gets its chance to refute. It is hearsay: we did not probe it, and
                # the row names no accuser, so it is neither rebroadcast under our name nor
                # counted as a confirmation (docs/gossip.md); our own probe, made next,
                # confirms it for real or carries it to the suspect.
                self._on_suspect(Suspect(e.incarnation, e.name, HEARSAY), now, hearsay=True)

    # --- outgoing -----------------------------------------------------------------------

    def _send(self, addr: Addr, encoded: list[bytes], piggyback: bool = True) -> None:
        """Queue a datagram of `encoded` messages plus as many broadcasts as fit."""
        room = self.profile.packet_budget - codec.packet_overhead() - sum(map(len, encoded))
        if piggyback and room > 8 and self._queue:
            encoded = encoded + self._queue.take(room, self._limit(), overhead=0)
        data = codec.encode_packet(encoded)
        sent = self.sent
        for message in encoded:  # each is a msgpack array [type code, ...]: code at byte 1
            sent[message[1]] += 1
        self._outbox.append((data, addr))
        self.stats["datagrams_sent"] += 1
        self.stats["bytes_sent"] += len(data)

    def _gossip(self, now: float) -> None:
        for key, payload in self._delegate.take_broadcasts():
            self._broadcast_user(key, payload)
        for key, payload in self._delegate.take_direct():
            self._send_direct(key, payload)
        for to, key, payload in self._delegate.take_sends():
            self._send_to(to, key, payload)
        if not self._queue:
            return
        dead_time = self.profile.gossip_to_the_dead_time

        def eligible(n: _Node) -> bool:
            if n.state in _LIVE:
                return True
            return n.state is MemberState.DEAD and now - n.state_change <= dead_time

        room = self.profile.packet_budget - codec.packet_overhead()
        for node in self._random_nodes(self.profile.gossip_nodes, eligible):
            msgs = self._queue.take(room, self._limit())
            if not msgs:
                break
            data = codec.encode_packet(msgs)
            self._outbox.append((data, node.addr))
            self.stats["datagrams_sent"] += 1
            self.stats["bytes_sent"] += len(data)

    def _broadcast_user(self, key: bytes, payload: bytes) -> None:
        encoded = self._encode_user(UserBroadcast(self.name, key, payload))
        if encoded is not None:
            self._remember((self.name, key, hashlib.blake2b(payload, digest_size=8).digest()))
            self._queue.queue(("user", self.name, key), encoded)

    def _send_direct(self, key: bytes, payload: bytes) -> None:
        encoded = self._encode_user(UserDirect(self.name, key, payload))
        if encoded is None:
            return
        # In random order: queued broadcasts ride on these datagrams, and in a fixed order
        # every member spent a broadcast's retransmissions on the same first few peers, so
        # peers late in that order waited seconds for news nobody was relaying any more.
        live = [n for n in self._nodes.values() if n is not self._me and n.state in _LIVE]
        self._rng.shuffle(live)
        for node in live:
            self._send(node.addr, [encoded])
            self.stats["direct_sent"] += 1

    def _send_to(self, to: str, key: bytes, payload: bytes) -> None:
        node = self._nodes.get(to)
        if node is None or node is self._me or node.state not in _LIVE:
            self.drops["send_to_not_live"] += 1
            return
        encoded = self._encode_user(UserDirect(self.name, key, payload))
        if encoded is not None:
            # No broadcasts ride along: the load tree sends to the same members every period,
            # and a broadcast's retransmissions spent there never reach anyone new.
            self._send(node.addr, [encoded], piggyback=False)
            self.stats["sent_to"] += 1

    def _encode_user(self, msg: UserBroadcast | UserDirect) -> bytes | None:
        # The delegate's bug, but found inside our timer: raising here would stop gossip for
        # everyone, so the message is dropped and counted (check max_broadcast_size first).
        if len(msg.key) > codec.MAX_USER_KEY:
            self.drops["local_broadcast_key_too_long"] += 1
            return None
        encoded = codec.encode_message(msg)
        if len(encoded) > self._broadcast_room():
            self.drops["local_broadcast_too_large"] += 1
            return None
        return encoded

    def _broadcast_room(self) -> int:
        # Leave room for a probe message next to any one broadcast.
        return self.profile.packet_budget - codec.packet_overhead() - 64

    def _push_pull(self, now: float) -> int | None:
        """Open a full-state exchange with one random alive member: its stream id, or None
        when no other member is alive."""
        nodes = self._random_nodes(1, lambda n: n.state is MemberState.ALIVE)
        if not nodes:
            return None
        return self._open_stream(
            _StreamKind.PUSH_PULL, nodes[0].addr, self._encode_state(False), now
        )

    def _reconnect(self, now: float) -> None:
        # A scan, not random probing of the table: the dead may be few among many.
        keep = self.profile.dead_retention
        dead = [
            n
            for n in self._nodes.values()
            if n.state is MemberState.DEAD and now - n.state_change <= keep
        ]
        if dead:
            node = dead[self._rng.randrange(len(dead))]
            self._open_stream(_StreamKind.RECONNECT, node.addr, self._encode_state(False), now)

    def _open_stream(
        self, kind: _StreamKind, addr: Addr, data: bytes, now: float, deadline: float = 0.0
    ) -> int:
        self._stream_id += 1
        sid = self._stream_id
        self._streams[sid] = _Stream(kind, addr, deadline or now + self.profile.stream_timeout)
        self._stream_out.append(StreamRequest(sid, addr, data))
        self.stats[f"streams_{kind.value}"] += 1
        return sid

    def _stream_failed(self, st: _Stream, now: float) -> None:
        if st.kind is not _StreamKind.JOIN or self._joined:
            return
        if not any(s.kind is _StreamKind.JOIN for s in self._streams.values()):
            self._join_retry_at = now + self.profile.join_retry_interval

    def _encode_state(self, join: bool) -> bytes:
        entries = tuple(
            PushPullEntry(n.name, n.addr, n.incarnation, n.state, n.meta)
            for n in self._nodes.values()
        )
        return codec.encode_stream(PushPull(join, entries, self._delegate.local_state(join)))

    # --- helpers ------------------------------------------------------------------------

    def _queue_alive(self, node: _Node) -> None:
        msg = Alive(node.incarnation, node.name, node.addr, node.meta)
        self._queue.queue(node.name, codec.encode_message(msg))

    def _limit(self) -> int:
        return retransmit_limit(self._live, self.profile.retransmit_mult)

    def _push_pull_interval(self) -> float:
        return push_pull_interval(self._live, self.profile.push_pull_interval)

    def _set_state(self, node: _Node, state: MemberState, now: float) -> None:
        was_live = node.state in _LIVE
        node.state = state
        node.state_change = now
        self._live += (state in _LIVE) - was_live

    def _random_nodes(self, k: int, eligible: Any) -> list[_Node]:
        """Up to k distinct random members (not us) satisfying `eligible`."""
        order = self._order
        if not order or k <= 0:
            return []
        picked: list[_Node] = []
        names: set[str] = set()
        for _ in range(3 * len(order) if len(order) < 3 * k else 6 * k):
            name = order[self._rng.randrange(len(order))]
            if name in names:
                continue
            node = self._nodes.get(name)
            if node is None or not eligible(node):
                continue
            names.add(name)
            picked.append(node)
            if len(picked) >= k:
                break
        return picked

    def _emit(self, kind: EventKind, node: _Node) -> None:
        self._events.append(MemberEvent(kind, node.name, node.addr, node.incarnation, node.meta))
