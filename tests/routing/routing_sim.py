"""A virtual-time cluster of fnlb peers routing calls to modelled Fn nodes, for routing tests.

Each peer has what the runtime gives it: a `LocalLoad` written per call, a `ClusterLoad` fed
with every peer's digest (its own at once, the others' after 50-400 ms, each transmission
lost with `loss` and retried up to 3 times), a `WidthTracker` fed once per tick with settled
figures at aligned cuts read on the peer's own (slightly skewed) wall clock, and a `Router`
fed the widths and the other peers' in-flight per node. Back-off entries travel by the same
simulated gossip. Calls arrive at a random peer; the peer walks its candidates as the proxy
does: a 503 busy moves the call to the next candidate, nothing else is resent.

Nothing here sleeps: a 10 ms step drives arrivals, gossip and the `Fleet`'s timers.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.view import NodeView
from fnlb.fnsim.fleet import Fleet
from fnlb.fnsim.model import CallFinished, CallRejected, PoolConfig
from fnlb.routing.backoff import Backoff, decode_entries, pack_entries
from fnlb.routing.hotset import WidthPolicy, WidthTracker, aligned_cut
from fnlb.routing.placement import EPOCH_MS, place
from fnlb.routing.router import Router, RouterPolicy
from fnlb.routing.scale import ScaleDecision, ScaleSignal, containers_needed

T0_MS = 1_800_000_000_000  # the wall clock at virtual time 0
STEP = 0.01
DIGEST_EVERY = 0.3
SETTLE_MS = 1000
RETRY_AFTER_S = 15.0

Workload = Callable[[float], dict[str, tuple[float, float]]]
"""virtual time -> {function: (calls/s, execution seconds)}"""


@dataclass
class Peer:
    name: str
    skew_ms: float
    local: LocalLoad
    cluster: ClusterLoad
    tracker: WidthTracker
    router: Router
    next_digest: float
    last_cut: int = 0
    widths: dict[int, dict[str, int]] = field(default_factory=dict)  # tick -> widths
    scale: ScaleSignal = field(default_factory=ScaleSignal)
    decisions: dict[int, ScaleDecision] = field(default_factory=dict)  # tick -> decision
    epoch: int = -1
    homes: dict[str, str] = field(default_factory=dict)
    placements: dict[int, dict[str, str]] = field(default_factory=dict)  # epoch -> homes


@dataclass
class _Call:
    peer: Peer
    fn: str
    exec_s: float
    order: list[str]
    at: int  # index in order
    first: str


@dataclass
class Record:
    """What happened to calls, for assertions."""

    calls: int = 0
    done: int = 0
    cold: int = 0
    busy_503: int = 0
    failed: int = 0
    waits: list[float] = field(default_factory=list)
    first_choice: list[tuple[float, str, str, str]] = field(default_factory=list)
    """(time, peer, fn, node) of every call's first attempt."""

    def summary(self) -> dict[str, float]:
        """calls, cold %, mean and p99 wait (ms), 503s and failed calls: one table row."""
        waits = sorted(self.waits)
        p99 = waits[int(0.99 * len(waits))] if waits else 0.0
        return {
            "calls": self.calls,
            "cold_pct": 100.0 * self.cold / self.done if self.done else 0.0,
            "wait_mean_ms": 1000.0 * sum(waits) / len(waits) if waits else 0.0,
            "wait_p99_ms": 1000.0 * p99,
            "busy_503": self.busy_503,
            "failed": self.failed,
        }


def zipf_workload(
    functions: int,
    total_rate: float,
    exec_s: float,
    *,
    s: float = 1.1,
    burst: tuple[int, float, float, float] | None = None,
) -> Workload:
    """`functions` functions with Zipf(`s`) rates summing to `total_rate` calls/s, each call
    running `exec_s`; `burst` = (function index, factor, start, end) multiplies one of them
    for a while. The workload of docs/routing.md's tables A and B."""
    weights = [1.0 / (k + 1) ** s for k in range(functions)]
    norm = sum(weights)
    base = {f"fn{k}": (total_rate * w / norm, exec_s) for k, w in enumerate(weights)}

    def at(t: float) -> dict[str, tuple[float, float]]:
        if burst is None or not burst[2] <= t < burst[3]:
            return base
        out = dict(base)
        name = f"fn{burst[0]}"
        out[name] = (out[name][0] * burst[1], exec_s)
        return out

    return at


class RoutingSim:
    def __init__(
        self,
        nodes: int = 10,
        peers: int = 3,
        *,
        seed: int = 1,
        pool: PoolConfig | None = None,
        width_policy: WidthPolicy | None = None,
        router_policy: RouterPolicy | None = None,
        loss: float = 0.05,
        placed: bool = True,
    ) -> None:
        """`placed`: the peers place the hottest functions' homes as fnlb.cluster.feed does
        (the hot-set routing); False for plain rendezvous."""
        self.placed = placed
        self.rng = random.Random(seed)
        self.node_names = [f"10.0.0.{i + 1}:8080" for i in range(nodes)]
        self.index = {n: i for i, n in enumerate(self.node_names)}
        self.fleet = Fleet(nodes, pool or PoolConfig(), random.Random(seed + 1))
        self.view = NodeView(1, dict.fromkeys(self.node_names, "online"))
        self.loss = loss
        self.peers = [
            Peer(
                name=f"peer{k}",
                skew_ms=self.rng.uniform(-5.0, 5.0),
                local=LocalLoad(epoch=1),
                cluster=ClusterLoad(),
                tracker=WidthTracker(width_policy),
                router=Router(router_policy, backoff=Backoff(), rng=random.Random(seed + 10 + k)),
                next_digest=0.1 * k,
            )
            for k in range(peers)
        ]
        self.now = 0.0
        self.calls: dict[int, _Call] = {}
        self.next_id = 0
        self.mail: list[tuple[float, int, Peer, str, str, bytes]] = []  # at, tie, to, from
        self.tie = 0
        self.record = Record()
        self.direct: list[tuple[float, int, str, float]] = []  # calls sent to a node directly

    def wall_ms(self, peer: Peer) -> int:
        return round(T0_MS + self.now * 1000 + peer.skew_ms)

    def send_direct(self, at: float, node: int, fn: str, exec_s: float) -> None:
        """A call sent to `node` at `at` by someone else (no peer sees it): a node's hog."""
        heapq.heappush(self.direct, (at, node, fn, exec_s))

    def run(self, until: float, workload: Workload) -> None:
        while self.now < until - 1e-9:
            self.now = round(self.now + STEP, 9)
            now = self.now
            while self.direct and self.direct[0][0] <= now:
                _at, node, fn, exec_s = heapq.heappop(self.direct)
                self.next_id += 1
                self.fleet.submit(node, ("direct", self.next_id), fn, exec_s, now)
            for fn, (rate, exec_s) in workload(now).items():
                arrivals = self._poisson(rate * STEP)
                for _ in range(arrivals):
                    self._arrive(fn, exec_s)
            self.fleet.advance(now)
            for node, event in self.fleet.drain_events():
                self._event(node, event)
            self._gossip()
            self._ticks()

    def _poisson(self, mean: float) -> int:
        # Knuth's method; means here are well below 10 per step
        limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _arrive(self, fn: str, exec_s: float) -> None:
        peer = self.peers[int(self.rng.random() * len(self.peers))]
        order = list(peer.router.candidates(fn, self.view, self.wall_s(peer)))
        self.record.calls += 1
        self.record.first_choice.append((self.now, peer.name, fn, order[0]))
        self.next_id += 1
        call = _Call(peer, fn, exec_s, order, 0, order[0])
        self.calls[self.next_id] = call
        self._attempt(self.next_id, call)

    def _attempt(self, call_id: int, call: _Call) -> None:
        node = call.order[call.at]
        call.peer.local.call_started(call.fn, node, self.now)
        call.peer.router.call_started(call.fn, node)
        self.fleet.submit(self.index[node], call_id, call.fn, call.exec_s, self.now)

    def _event(self, node_index: int, event: object) -> None:
        if not isinstance(event, CallFinished | CallRejected):
            return
        call_id = event.call_id
        if not isinstance(call_id, int):
            return  # a direct call
        call = self.calls[call_id]
        node = self.node_names[node_index]
        peer = call.peer
        at = event.at
        if isinstance(event, CallFinished):
            del self.calls[call_id]
            peer.local.call_finished(call.fn, node, 200, event.waited_s, None, at)
            peer.router.call_finished(call.fn, node, 200, event.waited_s, self.wall_s(peer, at))
            self.record.done += 1
            self.record.cold += event.cold
            self.record.waits.append(event.waited_s)
            return
        peer.local.call_finished(call.fn, node, 503, None, None, at)
        peer.router.call_finished(call.fn, node, 503, None, self.wall_s(peer, at), RETRY_AFTER_S)
        self.record.busy_503 += 1
        call.at += 1
        if call.at < len(call.order):
            self._attempt(call_id, call)
        else:
            del self.calls[call_id]
            self.record.failed += 1

    def _post(self, sender: Peer, kind: str, data: bytes) -> None:
        for q in self.peers:
            if q is sender:
                continue
            for attempt in range(3):  # gossip retransmits a broadcast
                if self.rng.random() > self.loss:
                    self.tie += 1
                    at = self.now + 0.2 * attempt + self.rng.uniform(0.05, 0.4)
                    heapq.heappush(self.mail, (at, self.tie, q, sender.name, kind, data))
                    break

    def _gossip(self) -> None:
        now = self.now
        for p in self.peers:
            if p.next_digest <= now:
                p.next_digest += DIGEST_EVERY
                data = p.local.digest(now, stamp_ms=self.wall_ms(p))
                p.cluster.merge(p.name, data, now)
                self._post(p, "l", data)
            updates = p.router.backoff.take_updates()
            if updates:
                for message in pack_entries(updates):
                    self._post(p, "b", message)
        while self.mail and self.mail[0][0] <= now:
            _at, _t, q, sender, kind, data = heapq.heappop(self.mail)
            if kind == "l":
                q.cluster.merge(sender, data, now)
            else:
                q.router.backoff.merge(decode_entries(data), self.wall_s(q))

    def wall_s(self, peer: Peer, at: float | None = None) -> float:
        """`peer`'s wall clock in seconds at virtual time `at` (default: now): the router's
        `now`, as the proxy feeds it `time.time()`."""
        t = self.now if at is None else at
        return (T0_MS + t * 1000 + peer.skew_ms) / 1000.0

    def _ticks(self) -> None:
        """Each peer's 1 s timer: settled width inputs at the aligned cut, shared figures."""
        policy_tick = self.peers[0].tracker.policy.tick_ms
        for p in self.peers:
            cut = aligned_cut(self.wall_ms(p), SETTLE_MS, policy_tick)
            if cut <= p.last_cut:
                continue
            p.last_cut = cut
            table = p.cluster.width_table(64, self.now, settled_ms=cut)
            p.tracker.update(cut, table, len(self.view.routable))
            others = {
                n: max(0, p.cluster.node_load(n, self.now).in_flight - p.local.node_in_flight(n))
                for n in self.node_names
            }
            if self.placed and cut // EPOCH_MS != p.epoch:  # as fnlb.cluster.feed places homes
                p.epoch = cut // EPOCH_MS
                p.homes = place({k: w.rate for k, w in table.items()}, self.view.candidates)
                p.placements[p.epoch] = dict(p.homes)
            p.router.update(widths=p.tracker.widths, peers_in_flight=others, homes=p.homes)
            p.widths[cut // policy_tick] = dict(p.tracker.widths)
            total = p.cluster.summary(self.now, hot=0, settled_ms=cut).in_flight
            needed = containers_needed(((w.rate, w.in_flight) for w in table.values()), total)
            slots = p.tracker.policy.slots_per_node
            decision = p.scale.update(cut, needed, len(self.view.routable), slots)
            p.decisions[cut // policy_tick] = decision
