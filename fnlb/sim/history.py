"""A history checker in the spirit of Jepsen, in virtual time, over real Peers (fnlb.sim.cluster).

A seed draws a random history of operations and faults: node adds and deletes on random
peers (acknowledged, as `ClusterService.keep` acknowledges them, when the writer saved it and
`write_acks` reachable peers held and saved it; otherwise the 503 that says "not
acknowledged"), peer crashes and restarts with their state dir or without one (then from
their stale `-nodes`), fresh peers with the stale `-nodes`, symmetric and one-way partitions
and heals, Fn nodes dying and coming back, lossy links, and per-peer clock skew within the
HLC's bound. Then everything heals, every peer is up, the network is clean, and the cluster is
left quiet for two push-pull intervals. Three properties are checked:

1. No acknowledged change is lost: every peer ends with an entry for its address stamped at
   least as late (a later write may supersede it; an acknowledged write is excused only if,
   at some moment, no live peer, saved state or in-flight restart held it any more, which
   takes every holder losing its state).
2. No deleted node comes back unless re-added: a node present at the end on any peer is
   present by an add (or a `-nodes` seed) stamped after every acknowledged delete of it.
3. Agreement once quiet: all peers hold the same node set and the same cluster verdicts
   (equal checksums), and route every sampled key to the same nodes in the same order.

A failing history shrinks (events dropped one at a time while it still fails) and prints as
the minimal history, which replays exactly from its seed. `bench/agreement.py` runs hundreds
of seeds; tests/sim/test_history.py a CI-sized set.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from fnlb.cluster.hlc import Timestamp
from fnlb.gossip.member import push_pull_interval
from fnlb.peer.core import NodeChange
from fnlb.sim.cluster import ClusterSim

SKEW_MS: Final = 25_000
"""Largest clock error of a peer either way: two peers differ by at most 50 s, inside the
HLC's 60 s drift bound."""
HORIZON_MS: Final = 120_000
"""Tombstones are collected after this (not 24 h), so histories cross the horizon."""
KEYS: Final = tuple(f"/r/app/f{i}" for i in range(32))
"""Keys whose routing every peer must agree on."""


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a history, at virtual second `at`."""

    at: float
    kind: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.at:7.2f}s {self.kind} {' '.join(self.args)}".rstrip()


@dataclass(frozen=True, slots=True)
class Plan:
    """A history to run: its cluster and its events."""

    seed: int
    peers: int
    loss: float
    skew_ms: tuple[int, ...]
    events: tuple[Event, ...]

    def describe(self) -> str:
        skews = " ".join(f"p{i}:{s:+d}ms" for i, s in enumerate(self.skew_ms) if s)
        head = f"seed {self.seed}: {self.peers} peers, loss {self.loss:.0%}, skew {skews or '0'}"
        return "\n".join([head, *(f"  {e}" for e in self.events)])


@dataclass(slots=True)
class Write:
    """A node change made through a peer's API."""

    node: str
    added: bool
    stamp: Timestamp
    acked: bool
    excused: bool = False


@dataclass(slots=True)
class Outcome:
    """What one run found: `failures` empty when every property held."""

    plan: Plan
    failures: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    acked: int = 0
    excused: int = 0
    agreed_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def plan(seed: int, peers: int, *, events: int = 30, span_s: float = 150.0) -> Plan:
    """A random history for `peers` peers (p0..): see the module docstring.

    Every crash is followed by a restart (from the state dir or without it) and every
    partition by a heal within 40 s, inside the bound the node set's safety assumes (no peer
    cut off longer than the tombstone horizon minus the drift bound: HORIZON_MS - 60 s).
    Fn nodes cut off from some peers stay cut off to the end, so verdicts disagree and must
    still agree on the cluster's verdict.
    """
    rng = random.Random(seed)
    loss = rng.choice((0.0, 0.0, 0.05, 0.1, 0.2, 0.4))
    skew = tuple(rng.randint(-SKEW_MS, SKEW_MS) if rng.random() < 0.5 else 0 for _ in range(peers))
    pool = [f"10.1.0.{i + 1}:8080" for i in range(6)]
    names = [f"p{i}" for i in range(peers)]
    fresh = 0
    out: list[Event] = []
    for at in sorted(rng.uniform(2.0, span_s) for _ in range(events)):
        r = rng.random()
        peer = rng.choice(names)
        if r < 0.35:
            out.append(Event(at, rng.choice(("put", "put", "delete")), (peer, rng.choice(pool))))
        elif r < 0.50:
            out.append(Event(at, "crash", (peer,)))
            kind = rng.choice(("restart", "restart-stateless"))
            out.append(Event(at + rng.uniform(1.0, 40.0), kind, (peer, rng.choice(names))))
        elif r < 0.57:
            # a fresh peer with the old -nodes, joining one peer (which may be down)
            out.append(Event(at, "fresh", (f"q{fresh}", peer)))
            fresh += 1
        elif r < 0.72:
            cut = rng.sample(names, max(1, len(names) * rng.choice((1, 1, 2)) // 4))
            rest = [n for n in names if n not in cut]
            kind = rng.choice(("partition", "partition", "one-way", "one-way-back"))
            out.append(Event(at, kind, (",".join(cut), ",".join(rest))))
            out.append(Event(at + rng.uniform(3.0, 40.0), "heal"))
        elif r < 0.85:
            who = rng.sample(names, max(1, len(names) * rng.choice((1, 2, 3)) // 4))
            out.append(Event(at, "node-cut", (",".join(who), rng.choice(pool))))
        elif r < 0.93:
            out.append(Event(at, "node-down", (rng.choice(pool),)))
        else:
            out.append(Event(at, "node-up", (rng.choice(pool),)))
    out.sort(key=lambda e: e.at)
    return Plan(seed, peers, loss, skew, tuple(out))


class Runner:
    """Runs one `Plan` on a `ClusterSim` and checks it (see the module docstring)."""

    def __init__(self, p: Plan, *, write_acks: int = 1) -> None:
        self.plan = p
        self.write_acks = write_acks
        self.sim = ClusterSim(
            peers=p.peers,
            nodes=6,
            seed=p.seed,
            loss=p.loss,
            hc_interval=2.0,
            seed_nodes=True,
            horizon_ms=HORIZON_MS,
        )
        for i, s in enumerate(p.skew_ms):
            if s:
                self.sim.skew_ms[f"p{i}"] = s
        self.outcome = Outcome(p)
        self._fresh: list[str] = []

    # -- running -----------------------------------------------------------------------

    def run(self) -> Outcome:
        sim = self.sim
        sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=30)
        start = sim.now
        for e in self.plan.events:
            sim.run_for(max(0.0, start + e.at - sim.now))
            self._apply(e)
            self._excuse_lost()
        self._settle()
        return self.outcome

    def _apply(self, e: Event) -> None:
        sim = self.sim
        a = e.args
        up = self._up
        if e.kind in ("put", "delete"):
            if up(a[0]):
                self._write(a[0], a[1], e.kind == "put")
        elif e.kind == "crash":
            if up(a[0]) and sum(map(up, sim.names)) > 1:
                sim.crash(a[0])
        elif e.kind in ("restart", "restart-stateless"):
            if not up(a[0]) and a[0] in sim.peers:
                stateless = e.kind == "restart-stateless"
                sim.restart(a[0], [a[1]] if a[1] != a[0] else [], stateless=stateless)
        elif e.kind == "fresh":
            self._fresh.append(a[0])
            sim.add_peer(a[0], [a[1]], nodes=sim.node_names)
        elif e.kind == "node-cut":
            for name in a[0].split(","):
                sim.cut(name, a[1])
        elif e.kind in ("partition", "one-way", "one-way-back"):
            cut, rest = a[0].split(","), [n for n in a[1].split(",") if n]
            rest += self._fresh
            if not rest:
                return
            if e.kind == "partition":
                sim.partition([cut, rest])
            elif e.kind == "one-way":
                sim.one_way(cut, rest)
            else:
                sim.one_way(rest, cut)
        elif e.kind == "heal":
            sim.heal()
        elif e.kind == "node-down":
            sim.node_down(a[0])
        elif e.kind == "node-up":
            sim.node_back(a[0])

    def _up(self, name: str) -> bool:
        p = self.sim.peers.get(name)
        return p is not None and p.up

    def _reachable(self, a: str, b: str) -> bool:
        """An HTTP request from `a` to `b` and its answer both get through."""
        g = self.sim.gossip
        sa, sb = g.slots[a].addr, g.slots[b].addr
        return not g._cut(sa, sb) and not g._cut(sb, sa)

    def _write(self, name: str, node: str, added: bool) -> None:
        """As the API and `ClusterService.keep` do it: change, save, have peers hold it."""
        sim = self.sim
        p = sim.peers[name]
        now = sim.peer_ms(name)
        change: NodeChange = p.peer.put_node(node, now) if added else p.peer.delete_node(node, now)
        p.disk = p.peer.snapshot()
        held = 0
        others = [n for n in sim.names if n != name and self._up(n) and self._reachable(name, n)]
        for other in others:
            if held >= self.write_acks:
                break
            q = sim.peers[other]
            # A hold refused for drift is not held: `keep` counts only 200s.
            if q.peer.hold_change(change.hold, sim.peer_ms(other)).held:
                q.disk = q.peer.snapshot()
                held += 1
        acked = held >= self.write_acks
        self.outcome.writes.append(Write(node, added, change.entries[0].stamp, acked))
        self.outcome.acked += acked

    @staticmethod
    def _holds(w: Write, entry_stamp: Timestamp | None, floor_ms: int) -> bool:
        """A replica holds `w` or what superseded it: an entry as late, or none because a
        later delete was collected (the collection floor passed `w`)."""
        if entry_stamp is None:
            return floor_ms > w.stamp.wall_ms
        return entry_stamp >= w.stamp

    def _excuse_lost(self) -> None:
        """An acknowledged write no live peer or saved state holds any more was lost to
        state-less restarts of all its holders: allowed (it was kept, then thrown away)."""
        for w in self.outcome.writes:
            if not w.acked or w.excused:
                continue
            if not any(self._copy_of(name, w) for name in self.sim.names):
                w.excused = True
                self.outcome.excused += 1

    def _copy_of(self, name: str, w: Write) -> bool:
        p = self.sim.peers[name]
        if p.up:
            nodes = p.peer.state.nodes
            e = nodes.get(w.node)
            if self._holds(w, e.stamp if e is not None else None, nodes.gc_floor_ms):
                return True
        if p.disk is None:
            return False
        saved = p.disk["nodes"]
        stamps = [Timestamp(r[1], r[2], r[3]) for r in saved["entries"] if r[0] == w.node]
        return self._holds(w, stamps[0] if stamps else None, saved["gc_floor_ms"])

    # -- the end -----------------------------------------------------------------------

    def _settle(self) -> None:
        sim = self.sim
        sim.heal()
        sim.gossip.net = dataclasses.replace(sim.gossip.net, loss=0.0)
        for name in sim.names:
            if not self._up(name):
                sim.restart(name, [n for n in sim.names if n != name and self._up(n)][:3])
        self._excuse_lost()
        # Two push-pull intervals as gossip stretches them beyond 32 members (45 s at N=100).
        quiet = 2 * push_pull_interval(len(sim.names), sim.profile.push_pull_interval)
        began = sim.now
        sim.run_until_true(self._agree, timeout=quiet)
        if self._agree():
            self.outcome.agreed_after_s = sim.now - began
        sim.run_for(max(0.0, began + quiet - sim.now))
        self._check()

    def _agree(self) -> bool:
        peers = [p.peer for p in self.sim.peers.values() if p.up]
        return (
            self.sim.gossip.converged(self.sim.names)
            and len({p.state.checksum() for p in peers}) == 1
            and not self._routing_differs()
        )

    def _routing_differs(self) -> list[str]:
        """Peers whose routing of a key differs from the cluster's, beyond skipping the
        nodes they cannot reach themselves (local exclusion: by design, docs/cluster.md)."""
        sim = self.sim
        cut = sim.cut_pairs()
        up = [n for n, p in sim.peers.items() if p.up]
        clean = [n for n in up if not any(c[0] == n for c in cut)]
        if not clean:
            return []
        ref = sim.peers[clean[0]].peer
        out = []
        for name in up:
            peer = sim.peers[name].peer
            for k in KEYS:
                want = [n for n in ref.candidates(k, k) if (name, n) not in cut]
                got = [n for n in peer.candidates(k, k) if (name, n) not in cut]
                if want != got:
                    out.append(name)
                    break
        return out

    def _check(self) -> None:
        fail = self.outcome.failures.append
        peers = {n: p.peer for n, p in self.sim.peers.items() if p.up}
        for w in self.outcome.writes:
            if not w.acked or w.excused:
                continue
            for name, peer in peers.items():
                e = peer.state.nodes.get(w.node)
                floor = peer.state.nodes.gc_floor_ms
                if not self._holds(w, e.stamp if e is not None else None, floor):
                    what = "add" if w.added else "delete"
                    fail(f"acknowledged {what} of {w.node} at {w.stamp} lost on {name}")
        for name, peer in peers.items():
            for node in peer.nodes():
                e = peer.state.nodes.get(node)
                assert e is not None
                writes = [w for w in self.outcome.writes if w.node == node]
                if any(w.added and w.stamp == e.stamp for w in writes):
                    continue  # present by a re-add through the API
                # Present by a -nodes seed: only if no delete of it was ever written before.
                deleted = [w for w in writes if not w.added and w.stamp.wall_ms < e.stamp.wall_ms]
                if deleted or any(not w.added and w.acked for w in writes):
                    fail(f"{node} deleted at {writes[-1].stamp} is back on {name} ({e.stamp})")
        if len({tuple(p.nodes()) for p in peers.values()}) > 1:
            fail("node sets differ: " + _spread({n: ",".join(p.nodes()) for n, p in peers.items()}))
        if len({p.state.checksum() for p in peers.values()}) > 1:
            fail("checksums differ: " + _spread({n: p.state.checksum() for n, p in peers.items()}))
        differ = self._routing_differs()
        if differ:
            fail("peers route keys differently: " + ",".join(differ))
        if not self.sim.gossip.converged(self.sim.names):
            fail("membership did not converge")


def _spread(values: dict[str, str]) -> str:
    groups: dict[str, list[str]] = {}
    for name, v in sorted(values.items()):
        groups.setdefault(v, []).append(name)
    return "; ".join(f"{','.join(ns)}={v or '-'}" for v, ns in groups.items())


def check(p: Plan) -> Outcome:
    """Run and check one history."""
    return Runner(p).run()


def shrink(p: Plan, fails: Callable[[Plan], bool] | None = None) -> Plan:
    """The smallest history found (events dropped one at a time) that still fails."""
    still = fails or (lambda q: not check(q).ok)
    events = list(p.events)
    i = 0
    while i < len(events):
        candidate = Plan(p.seed, p.peers, p.loss, p.skew_ms, tuple(events[:i] + events[i + 1 :]))
        if still(candidate):
            events = list(candidate.events)
        else:
            i += 1
    return Plan(p.seed, p.peers, p.loss, p.skew_ms, tuple(events))


def run_seeds(seeds: Sequence[int], peers: int, **kw: float) -> list[Outcome]:
    """Check one history per seed."""
    return [check(plan(s, peers, **kw)) for s in seeds]  # type: ignore[arg-type]
