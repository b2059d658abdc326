"""A deterministic simulator of many gossip members in one process, in virtual time.

Why: failure detection is about timing under loss, partitions and stalls, which real sockets
and wall clocks make slow and flaky to test. Here the very same sans-I/O `Member`s run on a
virtual clock; every datagram and stream message is encoded and decoded (so packet-size limits
and the codec are exercised), and a seed fixes latency, loss and every member's randomness, so
a failing run replays exactly: the seed is printed first.

Model
- Datagrams: one-way delay = latency + uniform(0, jitter); dropped with probability `loss`, or
  when a partition cuts src -> dst (full partitions cut both ways; `one_way` cuts one).
- Streams (the runtime's TCP: push-pull, join, fallback probe): delivered unless cut; each
  loss adds a retransmission timeout (200 ms, doubling) instead of dropping. A stream to an
  address with no process is refused after one round trip; a cut stream is never answered
  (the member's own deadline fails it).
- Pause (an event-loop stall): the member neither processes nor sends; what arrives meanwhile
  waits in its socket buffers and is processed on wake, before its (late) timers fire.
- Crash: the process is gone; restart builds a fresh Member (incarnation 0) at the same address.

Invariants checked throughout (collected in `violations`): a member's own incarnation never
decreases, the incarnation it reports for another member never decreases between two events
about it, and a member never holds itself dead.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from fnlb.gossip.delegate import GossipDelegate, RecordingDelegate
from fnlb.gossip.member import EventKind, Member, MemberEvent, StreamRequest
from fnlb.gossip.messages import Addr, MemberState
from fnlb.gossip.profile import GossipProfile

PORT = 7946
SOCKET_BUFFER = 4096
"""Datagrams a paused member's socket holds (the kernel's receive buffer); more are dropped."""


@dataclass(frozen=True, slots=True)
class NetworkModel:
    """Seeded network behaviour: delays in seconds, loss as a probability per packet."""

    latency: float = 0.0005
    jitter: float = 0.001
    loss: float = 0.0
    stream_loss: float | None = None
    """Loss of stream segments (each costs a retransmission timeout); None: same as `loss`.
    0 with a high `loss` models a network that drops only UDP."""
    stream_rto: float = 0.2


class Status(Enum):
    UP = "up"
    PAUSED = "paused"
    DOWN = "down"  # crashed, or stopped after leaving


@dataclass(slots=True)
class Slot:
    """One simulated host: its address, its current process (Member) and its status."""

    name: str
    addr: Addr
    member: Member
    delegate: GossipDelegate
    status: Status = Status.UP
    gen: int = 0
    timer_at: float | None = None
    buffer: list[tuple[object, ...]] = field(default_factory=list)
    leaving: bool = False
    last_incarnation: int = 0
    node_name: str = ""  # the gossip name its member uses; the slot's name unless given


# heap entry kinds
_DGRAM, _TIMER, _SREQ, _SRESP, _WAKE, _CALL = range(6)

EventHook = Callable[[float, str, MemberEvent], None]


class Simulation:
    """Many members, one virtual clock, one seeded network."""

    def __init__(
        self,
        seed: int,
        profile: GossipProfile,
        net: NetworkModel | None = None,
        log: Callable[[str], None] | None = print,
    ) -> None:
        self.seed = seed
        self.profile = profile
        self.net = net or NetworkModel()
        self.now = 0.0
        self._rng = random.Random(seed)
        self._net_rng = random.Random(self._rng.getrandbits(64))
        self._heap: list[tuple[float, int, int, tuple[object, ...]]] = []
        self._seq = 0
        self.slots: dict[str, Slot] = {}
        self._by_addr: dict[Addr, Slot] = {}
        self._group: dict[Addr, int] = {}
        self._cuts: set[tuple[int, int]] = set()
        self.hooks: list[EventHook] = []
        self.violations: list[str] = []
        self.traffic: Counter[str] = Counter()
        self._seen_inc: dict[tuple[str, str], int] = {}
        if log is not None:
            log(f"gossip sim seed={seed}")

    # --- building the group -------------------------------------------------------------

    @staticmethod
    def addr_of(index: int) -> Addr:
        """The address of the index-th host: 10.x.y.z:7946."""
        return (f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}", PORT)

    def add(self, name: str, delegate: GossipDelegate | None = None, node_name: str = "") -> Slot:
        """A new host with a (not yet joined) member, gossiping as `node_name` (default:
        `name`; two hosts given one node name model a misconfigured pair of twins).
        `delegate` defaults to a recording one (fnlb.sim.cluster hands in real Peers)."""
        addr = self.addr_of(len(self.slots) + 1)
        delegate = delegate or RecordingDelegate()
        node_name = node_name or name
        slot = Slot(name, addr, self._new_member(node_name, addr, delegate), delegate)
        slot.node_name = node_name
        slot.status = Status.DOWN
        self.slots[name] = slot
        self._by_addr[addr] = slot
        return slot

    def _new_member(self, name: str, addr: Addr, delegate: GossipDelegate) -> Member:
        rng = random.Random(self._rng.getrandbits(64))
        return Member(name, addr, self.profile, rng, delegate)

    def start(self, name: str, seeds: Sequence[str] = ()) -> None:
        """Start `name`'s member now and have it join through the named seeds."""
        slot = self.slots[name]
        slot.status = Status.UP
        slot.member.join([self.slots[s].addr for s in seeds], self.now)
        self._after(slot)

    def spawn(self, n: int, prefix: str = "m", stagger: float = 0.01, seeds: int = 3) -> list[str]:
        """Add and start `n` members: the first alone, the rest joining the first `seeds`.

        Joins are spread `stagger` seconds apart; run the clock to let them settle.
        """
        names = [f"{prefix}{i}" for i in range(n)]
        for name in names:
            self.add(name)
        self.start(names[0])
        for i, name in enumerate(names[1:], start=1):
            self.at(i * stagger, functools.partial(self.start, name, names[: min(i, seeds)]))
        return names

    # --- faults -------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Kill `name`'s process now (kill -9): it stops answering and sending."""
        slot = self.slots[name]
        slot.status = Status.DOWN
        slot.buffer.clear()
        slot.timer_at = None

    def recording(self, name: str) -> RecordingDelegate:
        """`name`'s delegate when it is the default recording one."""
        delegate = self.slots[name].delegate
        assert isinstance(delegate, RecordingDelegate)
        return delegate

    def restart(
        self, name: str, seeds: Sequence[str], delegate: GossipDelegate | None = None
    ) -> None:
        """A fresh process (incarnation 0, empty table) for `name`, joining through `seeds`;
        `delegate`: the new process's (default: a fresh recording one)."""
        slot = self.slots[name]
        slot.gen += 1
        slot.delegate = delegate or RecordingDelegate()
        slot.member = self._new_member(slot.node_name, slot.addr, slot.delegate)
        slot.last_incarnation = 0
        slot.leaving = False
        self._seen_inc = {k: v for k, v in self._seen_inc.items() if k[0] != name}
        self.start(name, seeds)

    def pause(self, name: str, duration: float) -> None:
        """Stall `name` for `duration` seconds (it neither processes nor sends meanwhile)."""
        slot = self.slots[name]
        if slot.status is Status.UP:
            slot.status = Status.PAUSED
            self._push(self.now + duration, _WAKE, (name, slot.gen))

    def leave(self, name: str) -> None:
        """Graceful leave: the member broadcasts it, then stops once that is sent."""
        slot = self.slots[name]
        slot.leaving = True
        slot.member.leave(self.now)
        self._after(slot)

    def rejoin(self, name: str, seeds: Sequence[str]) -> None:
        """The same (left) process joins again."""
        slot = self.slots[name]
        slot.leaving = False
        slot.status = Status.UP
        slot.member.join([self.slots[s].addr for s in seeds], self.now)
        self._after(slot)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut the network between the groups (both ways); unnamed hosts talk to all."""
        self._set_groups(groups)
        ids = sorted(set(self._group.values()))
        self._cuts = {(a, b) for a in ids for b in ids if a != b}

    def one_way(self, src: Iterable[str], dst: Iterable[str]) -> None:
        """Drop everything from `src` hosts to `dst` hosts (not the reverse)."""
        self._set_groups([src, dst])
        self._cuts = {(0, 1)}

    def heal(self) -> None:
        """Remove every partition."""
        self._group.clear()
        self._cuts.clear()

    def _set_groups(self, groups: Iterable[Iterable[str]]) -> None:
        self._group = {}
        for gid, names in enumerate(groups):
            for name in names:
                self._group[self.slots[name].addr] = gid

    def _cut(self, src: Addr, dst: Addr) -> bool:
        if not self._cuts:
            return False
        a = self._group.get(src)
        b = self._group.get(dst)
        return a is not None and b is not None and (a, b) in self._cuts

    # --- the clock ----------------------------------------------------------------------

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `t`."""
        self._push(t, _CALL, (action,))

    def run_until(self, t: float) -> None:
        """Process everything scheduled up to virtual time `t`."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, kind, args = heapq.heappop(heap)
            self.now = when
            self._handle(kind, args)
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        """Advance the clock by `dt` seconds."""
        self.run_until(self.now + dt)

    def run_until_true(self, check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
        """Advance in `step`s until `check()` holds (True) or `timeout` passes (False)."""
        end = self.now + timeout
        while self.now < end:
            if check():
                return True
            self.run_for(step)
        return check()

    def _push(self, t: float, kind: int, args: tuple[object, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, args))

    def _handle(self, kind: int, args: tuple[object, ...]) -> None:
        if kind == _DGRAM:
            self._on_datagram(*args)  # type: ignore[arg-type]
        elif kind == _TIMER:
            self._on_timer(*args)  # type: ignore[arg-type]
        elif kind == _SREQ:
            self._on_stream_request(*args)  # type: ignore[arg-type]
        elif kind == _SRESP:
            self._on_stream_response(*args)  # type: ignore[arg-type]
        elif kind == _WAKE:
            self._on_wake(*args)  # type: ignore[arg-type]
        else:
            action = args[0]
            action()  # type: ignore[operator]

    # --- delivery -----------------------------------------------------------------------

    def _delay(self) -> float:
        return self.net.latency + self._net_rng.random() * self.net.jitter

    def _stream_delay(self) -> float:
        d = self._delay()
        rto = self.net.stream_rto
        loss = self.net.loss if self.net.stream_loss is None else self.net.stream_loss
        for _ in range(6):
            if not loss or self._net_rng.random() >= loss:
                break
            d += rto
            rto *= 2
        return d

    def _send_datagram(self, src: Addr, dst: Addr, data: bytes) -> None:
        self.traffic["datagrams"] += 1
        self.traffic["datagram_bytes"] += len(data)
        if len(data) > self.profile.packet_budget:
            self.violations.append(f"{self.now:.3f} {src} sent {len(data)} B > budget")
        if self._cut(src, dst):
            self.traffic["cut"] += 1
            return
        if self.net.loss and self._net_rng.random() < self.net.loss:
            self.traffic["lost"] += 1
            return
        self._push(self.now + self._delay(), _DGRAM, (dst, src, data))

    def _on_datagram(self, dst: Addr, src: Addr, data: bytes) -> None:
        slot = self._by_addr.get(dst)
        if slot is None or slot.status is Status.DOWN:
            return
        if slot.status is Status.PAUSED:
            if len(slot.buffer) < SOCKET_BUFFER:
                slot.buffer.append((_DGRAM, dst, src, data))
            else:
                self.traffic["buffer_overflow"] += 1
            return
        slot.member.receive_datagram(data, src, self.now)
        self._after(slot)

    def _open_stream(self, slot: Slot, req: StreamRequest) -> None:
        self.traffic["streams"] += 1
        self.traffic["stream_bytes"] += len(req.data)
        if self._cut(slot.addr, req.addr):
            return  # SYN never answered: the member's deadline fails it
        target = self._by_addr.get(req.addr)
        if target is None or target.status is Status.DOWN:
            rtt = 2 * self._delay()
            self._push(self.now + rtt, _SRESP, (slot.name, slot.gen, req.id, None))
            return
        args = (req.addr, slot.name, slot.gen, req.id, req.data)
        self._push(self.now + self._stream_delay(), _SREQ, args)

    def _on_stream_request(
        self, dst: Addr, requester: str, gen: int, req_id: int, data: bytes
    ) -> None:
        slot = self._by_addr[dst]
        if slot.status is Status.DOWN:
            self._push(self.now + self._delay(), _SRESP, (requester, gen, req_id, None))
            return
        if slot.status is Status.PAUSED:
            slot.buffer.append((_SREQ, dst, requester, gen, req_id, data))
            return
        reply = slot.member.handle_stream_request(data, self.slots[requester].addr, self.now)
        self._after(slot)
        if self._cut(dst, self.slots[requester].addr):
            return
        if reply is not None:
            self.traffic["stream_bytes"] += len(reply)
        self._push(self.now + self._stream_delay(), _SRESP, (requester, gen, req_id, reply))

    def _on_stream_response(
        self, requester: str, gen: int, req_id: int, data: bytes | None
    ) -> None:
        slot = self.slots[requester]
        if slot.gen != gen or slot.status is Status.DOWN:
            return
        if slot.status is Status.PAUSED:
            slot.buffer.append((_SRESP, requester, gen, req_id, data))
            return
        if data is None:
            slot.member.handle_stream_failure(req_id, self.now)
        else:
            slot.member.handle_stream_response(req_id, data, self.now)
        self._after(slot)

    def _on_timer(self, name: str, gen: int, t: float) -> None:
        slot = self.slots[name]
        if slot.gen != gen or slot.timer_at != t or slot.status is not Status.UP:
            return
        slot.timer_at = None
        slot.member.handle_timer(self.now)
        self._after(slot)

    def _on_wake(self, name: str, gen: int) -> None:
        slot = self.slots[name]
        if slot.gen != gen or slot.status is not Status.PAUSED:
            return
        slot.status = Status.UP
        pending, slot.buffer = slot.buffer, []
        for item in pending:  # the socket buffers first, as an event loop after a stall
            self._handle(int(item[0]), item[1:])  # type: ignore[call-overload]
        slot.timer_at = None
        slot.member.handle_timer(self.now)
        self._after(slot)

    def _after(self, slot: Slot) -> None:
        """Collect a member's outputs after an input; re-arm its timer; check invariants."""
        m = slot.member
        now = self.now
        for data, dst in m.datagrams_to_send(now):
            self._send_datagram(slot.addr, dst, data)
        for req in m.stream_requests(now):
            self._open_stream(slot, req)
        while (ev := m.next_event()) is not None:
            self._on_event(slot, ev)
        inc = m.incarnation
        if inc < slot.last_incarnation:
            self.violations.append(f"{now:.3f} {slot.name} own incarnation went down")
        slot.last_incarnation = inc
        if m.state is MemberState.DEAD:
            self.violations.append(f"{now:.3f} {slot.name} holds itself dead")
        if slot.leaving and m.leave_broadcast_done:
            slot.status = Status.DOWN
            slot.timer_at = None
            return
        t = m.next_timer()
        if t is not None and t != slot.timer_at:
            slot.timer_at = t
            self._push(max(t, now), _TIMER, (slot.name, slot.gen, t))

    def _on_event(self, slot: Slot, ev: MemberEvent) -> None:
        key = (slot.name, ev.name)
        last = self._seen_inc.get(key, -1)
        if ev.incarnation < last:
            self.violations.append(
                f"{self.now:.3f} {slot.name}: {ev.name} incarnation {last}->{ev.incarnation}"
            )
        self._seen_inc[key] = ev.incarnation
        for hook in self.hooks:
            hook(self.now, slot.name, ev)

    def audit_every(self, interval: float) -> None:
        """Also check every member's whole table every `interval` s: no incarnation it holds
        for anyone may go down, even without an event (O(N^2) per audit: small groups)."""

        def audit() -> None:
            for slot in self.up():
                for info in slot.member.members():
                    key = (slot.name, "table:" + info.name)
                    last = self._seen_inc.get(key, -1)
                    if info.incarnation < last:
                        self.violations.append(
                            f"{self.now:.3f} {slot.name} table: {info.name} "
                            f"incarnation {last}->{info.incarnation}"
                        )
                    self._seen_inc[key] = info.incarnation
            self.at(self.now + interval, audit)

        self.at(self.now + interval, audit)

    # --- observation --------------------------------------------------------------------

    def up(self) -> list[Slot]:
        """Hosts whose process runs (paused ones included)."""
        return [s for s in self.slots.values() if s.status is not Status.DOWN]

    def state_of(self, observer: str, subject: str) -> MemberState | None:
        """What `observer` believes about `subject` (None: unknown to it)."""
        info = self.slots[observer].member.member(subject)
        return None if info is None else info.state

    def all_see(
        self, subject: str, state: MemberState, observers: Iterable[str] | None = None
    ) -> bool:
        """Every running observer (or the named ones) holds `subject` in `state`."""
        names = [s.name for s in self.up()] if observers is None else list(observers)
        return all(self.state_of(o, subject) is state for o in names if o != subject)

    def converged(self, alive: Iterable[str]) -> bool:
        """Every running member holds exactly `alive` as its alive members."""
        want = set(alive)
        for slot in self.up():
            got = {i.name for i in slot.member.members() if i.state is MemberState.ALIVE}
            if got != want:
                return False
        return True


def detection_times(
    sim: Simulation, victim: str, kind: EventKind = EventKind.DEAD
) -> dict[str, float]:
    """Install a hook recording when each observer first reports `kind` about `victim`."""
    seen: dict[str, float] = {}

    def hook(now: float, observer: str, ev: MemberEvent) -> None:
        if ev.name == victim and ev.kind is kind and observer not in seen:
            seen[observer] = now

    sim.hooks.append(hook)
    return seen


def settled_group(
    n: int,
    seed: int,
    profile: GossipProfile,
    net: NetworkModel | None = None,
    log: Callable[[str], None] | None = print,
    timeout: float = 120.0,
) -> tuple[Simulation, list[str]]:
    """A simulation of `n` members that all know each other alive (or RuntimeError)."""
    sim = Simulation(seed, profile, net, log=log)
    names = sim.spawn(n, stagger=min(0.01, 10.0 / n))
    if not sim.run_until_true(lambda: sim.converged(names), timeout, step=0.25):
        raise RuntimeError(f"seed {seed}: {n} members did not converge in {timeout} s")
    return sim, names


def crash_trial(
    n: int, seed: int, profile: GossipProfile, net: NetworkModel | None = None
) -> list[float]:
    """Crash one member of a settled group; seconds until each other member marks it dead.

    The crash happens at a seed-dependent phase; runs until all have marked it dead (or 60 s).
    """
    sim, names = settled_group(n, seed, profile, net, log=None)
    sim.run_for(2.0 + (seed % 11) * 0.0913)
    victim = names[seed % n]
    seen = detection_times(sim, victim)
    start = sim.now
    sim.crash(victim)
    sim.run_until_true(lambda: len(seen) == n - 1, 60.0, step=0.05)
    return sorted(t - start for t in seen.values())
