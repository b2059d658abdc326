"""A virtual-time cluster of real fnlb Peers routing calls to modelled Fn nodes.

Each peer is a `fnlb.peer.core.Peer`, driven as production drives it: `tick` at its own
(slightly skewed) wall clock, every attempt told to it and reported as one record, and what
it would gossip (node-set entries, verdicts, load digests, back-off) carried to the others
after 50-400 ms, each transmission lost with `loss` and retried up to 3 times (gossip
retransmits), then handed to their `notify_broadcast`, the gossip delegate. Health checks
the Peers ask for are answered "up" (the modelled nodes never die here). Calls arrive at a
random peer, which walks its candidates as the proxy does: a 503 busy moves the call to the
next candidate, nothing else is resent.

Nothing here sleeps: a 10 ms step drives arrivals, gossip, ticks and the `Fleet`'s timers.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from fnlb.cluster.view import NodeView
from fnlb.fnsim.fleet import Fleet
from fnlb.fnsim.model import CallFinished, CallRejected, PoolConfig
from fnlb.peer.core import Peer
from fnlb.routing.attempt import Attempt
from fnlb.routing.backoff import Backoff
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.load_router import Router, RouterPolicy
from fnlb.routing.placement import EPOCH_MS
from fnlb.routing.policies import RendezvousPolicy, RoutingPolicy
from fnlb.routing.scale_signal import ScaleDecision
from fnlb.routing.widths import WidthPolicy
from fnlb.sim import T0_MS

STEP = 0.01
PUSH_PULL_S = 30.0
"""Each peer's push-pull with one other peer, at this period (the gossip profile's default)."""
RETRY_AFTER_S = 15.0

Workload = Callable[[float], dict[str, tuple[float, float]]]
"""virtual time -> {function: (calls/s, execution seconds)}"""


@dataclass
class SimPeer:
    """One simulated fnlb process: a real Peer, its clock skew, and what it decided."""

    name: str
    skew_ms: float
    peer: Peer = field(init=False)
    widths: dict[int, dict[str, int]] = field(default_factory=dict)  # tick -> widths
    decisions: dict[int, ScaleDecision] = field(default_factory=dict)  # tick -> decision
    placements: dict[int, dict[str, str]] = field(default_factory=dict)  # epoch -> homes
    tails: dict[int, tuple[str, ...]] = field(default_factory=dict)  # epoch -> tail's nodes
    last_cut: int = 0
    next_push_pull: float = 0.0


@dataclass
class _Call:
    peer: SimPeer
    fn: str
    exec_s: float
    order: list[str]
    at: int  # index in order
    first: str
    started: float = 0.0  # the attempt's start on its peer's wall clock


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
        """`placed`: the peers route with `--routing=hotset` (load-aware, placed homes);
        False for `--routing=rendezvous`."""
        self.placed = placed
        self.rng = random.Random(seed)
        self.push_pull_rng = random.Random(seed + 2)
        """Push-pull's partners and phases: apart, so that they leave the traces as they were."""
        self.asked_rng = random.Random(seed + 3)
        """The partners of push-pulls a peer asks for (`Peer.take_push_pull`): apart again,
        so that asking leaves the regular exchanges' partners as they were."""
        self.node_names = [f"10.0.0.{i + 1}:8080" for i in range(nodes)]
        self.index = {n: i for i, n in enumerate(self.node_names)}
        self.fleet = Fleet(nodes, pool or PoolConfig(), random.Random(seed + 1))
        self.view = NodeView(1, dict.fromkeys(self.node_names, "online"))
        """The view every peer converges to (all nodes online), for assertions."""
        self.loss = loss
        self.now = 0.0
        self.peers: list[SimPeer] = []
        self._policies = (width_policy, router_policy)
        self._seed = seed
        self.starts = 1
        """Peer processes started so far (a restart's `epoch_ms`, larger at each start)."""
        for k in range(peers):
            p = SimPeer(f"peer{k}", self.rng.uniform(-5.0, 5.0))
            p.next_push_pull = self.push_pull_rng.uniform(0.0, PUSH_PULL_S)
            p.peer = self._new_peer(p, k)
            self.peers.append(p)
        names = [p.name for p in self.peers]
        for p in self.peers:
            p.peer.members_changed(names)
        first = self.peers[0].peer
        for node in self.node_names:
            first.put_node(node, self.wall_ms(self.peers[0]))
        self._settle()
        self.calls: dict[int, _Call] = {}
        self.next_id = 0
        self.mail: list[tuple[float, int, SimPeer, str, bytes]] = []  # at, tie, to, from
        self.tie = 0
        self.record = Record()
        self.direct: list[tuple[float, int, str, float]] = []  # calls sent to a node directly

    def _new_peer(self, p: SimPeer, k: int) -> Peer:
        width_policy, router_policy = self._policies
        return Peer(
            p.name,
            routing=self._routing(p, router_policy, self._seed + 10 * self.starts + k),
            clock_ms=self._clock_ms(p),
            healthy=1,
            unhealthy=2,
            width_policy=width_policy,
            epoch_ms=self.starts,
        )

    def add_peer(self) -> SimPeer:
        """A new peer (a fresh process, a new name) joins now, as `restart` brings one back;
        every peer's membership then lists it."""
        p = SimPeer(f"peer{len(self.peers)}", self.rng.uniform(-5.0, 5.0))
        p.next_push_pull = self.now + self.push_pull_rng.uniform(0.0, PUSH_PULL_S)
        self.starts += 1
        p.peer = self._new_peer(p, len(self.peers))
        self.peers.append(p)
        self._join(p)
        for q in self.peers:
            q.peer.members_changed([r.name for r in self.peers])
        return p

    def restart(self, index: int) -> SimPeer:
        """Peer `index` stops and a fresh process of the same name (no state: no scores, no
        placement of before, a larger `epoch_ms`) takes its place, now: it joins by push-pull
        with a live peer and checks every node once before it takes calls, as a restarted
        fnlb is routable once `/readyz` says so. Calls the old process had in flight finish
        on it (it is never ticked again). A new `SimPeer` (its records start empty)."""
        old = self.peers[index]
        self.starts += 1
        p = SimPeer(old.name, old.skew_ms)
        p.next_push_pull = self.now + self.push_pull_rng.uniform(0.0, PUSH_PULL_S)
        p.peer = self._new_peer(p, index)
        self.peers[index] = p
        self._join(p)
        return p

    def _join(self, p: SimPeer) -> None:
        """`p` joins by push-pull with a live peer and checks every node once."""
        live = next(q for q in self.peers if q is not p)
        for _ in range(4):
            live.peer.merge_remote_state(p.peer.local_state(join=True), join=True)
            p.peer.merge_remote_state(live.peer.local_state(join=False), join=False)
            p.peer.members_changed([q.name for q in self.peers])
            for check in p.peer.take_checks():
                p.peer.health_checked(check.node, True, self.wall_ms(p))
            p.peer.tick(self.wall_s(p))
        assert p.peer.view.routable == self.view.routable

    def _routing(self, p: SimPeer, policy: RouterPolicy | None, seed: int) -> RoutingPolicy:
        if not self.placed:
            return RendezvousPolicy()
        router = Router(policy, backoff=Backoff(), rng=random.Random(seed))
        return HotSetPolicy(router, lambda: self.wall_s(p))

    def _clock_ms(self, p: SimPeer) -> Callable[[], int]:
        return lambda: self.wall_ms(p)

    def _settle(self) -> None:
        """Before the clock starts: every node in every peer's set, checked up everywhere."""
        for _ in range(4):
            for p in self.peers:
                for check in p.peer.take_checks():
                    p.peer.health_checked(check.node, True, self.wall_ms(p))
                for key, payload in p.peer.take_broadcasts():
                    for q in self.peers:
                        if q is not p:
                            q.peer.notify_broadcast(p.name, key, payload)
        assert all(p.peer.view.routable == self.view.routable for p in self.peers)

    def wall_ms(self, peer: SimPeer) -> int:
        return round(T0_MS + self.now * 1000 + peer.skew_ms)

    def wall_s(self, peer: SimPeer, at: float | None = None) -> float:
        """`peer`'s wall clock in seconds at virtual time `at` (default: now): the Peer's
        `now`, as production feeds it `time.time()`."""
        t = self.now if at is None else at
        return (T0_MS + t * 1000 + peer.skew_ms) / 1000.0

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
            self._deliver()
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
        order = list(peer.peer.candidates(fn, _path(fn)))
        self.record.calls += 1
        self.record.first_choice.append((self.now, peer.name, fn, order[0]))
        self.next_id += 1
        call = _Call(peer, fn, exec_s, order, 0, order[0])
        self.calls[self.next_id] = call
        self._attempt(self.next_id, call)

    def _attempt(self, call_id: int, call: _Call) -> None:
        node = call.order[call.at]
        call.started = self.wall_s(call.peer)
        call.peer.peer.attempt_started(call.fn, node, call.started)
        self.fleet.submit(self.index[node], call_id, call.fn, call.exec_s, self.now)

    def _event(self, node_index: int, event: object) -> None:
        if not isinstance(event, CallFinished | CallRejected):
            return
        call_id = event.call_id
        if not isinstance(call_id, int):
            return  # a direct call
        call = self.calls[call_id]
        node = self.node_names[node_index]
        p = call.peer
        at = self.wall_s(p, event.at)
        if isinstance(event, CallFinished):
            del self.calls[call_id]
            answer_s = max(0.0, at - call.started)
            p.peer.attempt_finished(
                Attempt(call.fn, node, _path(call.fn), 200, at, event.waited_s, None, answer_s, at)
            )
            self.record.done += 1
            self.record.cold += event.cold
            self.record.waits.append(event.waited_s)
            return
        p.peer.attempt_finished(
            Attempt(call.fn, node, _path(call.fn), 503, at, None, RETRY_AFTER_S)
        )
        self.record.busy_503 += 1
        call.at += 1
        if call.at < len(call.order):
            self._attempt(call_id, call)
        else:
            del self.calls[call_id]
            self.record.failed += 1

    def _post(self, sender: SimPeer, data: bytes, to: str | None = None) -> None:
        """`data` from `sender` to every other peer, or to the peer named `to`."""
        for q in self.peers:
            if q is sender or (to is not None and q.name != to):
                continue
            for attempt in range(3):  # gossip retransmits a broadcast
                if self.rng.random() > self.loss:
                    self.tie += 1
                    at = self.now + 0.2 * attempt + self.rng.uniform(0.05, 0.4)
                    heapq.heappush(self.mail, (at, self.tie, q, sender.name, data))
                    break

    def _deliver(self) -> None:
        while self.mail and self.mail[0][0] <= self.now:
            _at, _t, q, sender, data = heapq.heappop(self.mail)
            q.peer.notify_broadcast(sender, b"", data)

    def _ticks(self) -> None:
        """Each peer's pump: `Peer.tick`, its checks answered, its gossip posted; and what
        its control loop decided at each new cut, recorded."""
        for p in self.peers:
            peer = p.peer
            peer.tick(self.wall_s(p))
            for check in peer.take_checks():
                peer.health_checked(check.node, True, self.wall_ms(p))
            for _key, payload in (*peer.take_direct(), *peer.take_broadcasts()):
                self._post(p, payload)
            for to, _key, payload in peer.take_sends():
                self._post(p, payload, to)
            if self.now >= p.next_push_pull:
                # push-pull (TCP): both ways with one other peer, not lost
                p.next_push_pull += PUSH_PULL_S
                self._push_pull(p, self.push_pull_rng.choice([q for q in self.peers if q is not p]))
            if peer.take_push_pull():
                # asked for out of turn (gossip's `Member.request_push_pull`): one more, now
                self._push_pull(p, self.asked_rng.choice([q for q in self.peers if q is not p]))
            control = peer.control
            cut = control.cut
            if cut <= p.last_cut:
                continue
            p.last_cut = cut
            tick_ms = control.widths.policy.tick_ms
            p.widths[cut // tick_ms] = dict(control.widths.widths)
            if control.decision is not None:
                p.decisions[cut // tick_ms] = control.decision
            if self.placed:
                p.placements[cut // EPOCH_MS] = dict(control.homes)
                p.tails[cut // EPOCH_MS] = control.tail

    @staticmethod
    def _push_pull(p: SimPeer, q: SimPeer) -> None:
        """A push-pull (TCP): full state both ways between `p` and `q`, not lost."""
        q.peer.merge_remote_state(p.peer.local_state(join=False), join=False)
        p.peer.merge_remote_state(q.peer.local_state(join=False), join=False)


def _path(fn: str) -> str:
    return f"/r/app/{fn}"
