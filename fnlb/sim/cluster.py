"""A virtual-time cluster of real fnlb Peers over real SWIM members, with simulated Fn nodes.

What production runs, minus the sockets: each peer is a `fnlb.peer.core.Peer`, the gossip
delegate of a `fnlb.gossip.member.Member` in the seeded gossip simulator (fnlb.gossip.sim:
latency, loss, partitions, crashes); each is pumped as `fnlb.shell.pump` pumps it (`tick`,
the checks it asks for, a save to its "disk" when it says so); membership reaches it as the
cluster shell hands it over (`members_changed`, `member_left`); and its health checks run as
`fnlb.shell.health_checks` runs them: every node every `hc_interval`, a node the Peer asks
about at once, re-checked every 0.1 s while confirming a suspicion. A check of a simulated
Fn node passes while the node is up and the peer is not cut off from it.

A restarted peer is built from its disk (node set, clock), as `fnlb.shell.cluster.restore`
builds one, and joins again. A seed fixes everything: a failing run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.cluster.nodeset import DEFAULT_HORIZON_MS, NodeSet
from fnlb.gossip.messages import MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import NetworkModel, Simulation
from fnlb.peer.core import CONFIRM_GAP_S, PUMP_S, Peer
from fnlb.routing.policies import RendezvousPolicy
from fnlb.sim import T0_MS

CHECK_S: Final = 0.005
"""How long a health check of a simulated node takes."""
_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


@dataclass
class SimPeer:
    """One simulated fnlb process: its Peer (replaced on restart) and its disk."""

    name: str
    peer: Peer
    disk: dict[str, Any] | None = None
    up: bool = True
    gen: int = 0
    confirming: set[str] = field(default_factory=set)
    checking: set[str] = field(default_factory=set)
    saves: int = 0
    events_seen: int = -1
    """The gossip slot's event count when membership was last handed over (-1: never)."""
    told_gone: set[str] = field(default_factory=set)
    """Members the Peer was told left (`member_left`) and not seen live since: told once,
    as the cluster shell tells it once per death event."""


class ClusterSim:
    """`peers` fnlb peers and `nodes` Fn nodes; see the module docstring."""

    def __init__(
        self,
        peers: int = 3,
        nodes: int = 3,
        *,
        seed: int = 1,
        loss: float = 0.0,
        profile: GossipProfile | None = None,
        hc_interval: float = 1.0,
        healthy: int = 2,
        unhealthy: int = 2,
        seed_nodes: bool = True,
        horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> None:
        """`seed_nodes`: start every peer with all nodes as `-nodes`; False: none.
        `horizon_ms`: how long tombstones are kept (short, to reach it in a test)."""
        self.profile = profile or GossipProfile.fnlb_default()
        self.gossip = Simulation(seed, self.profile, NetworkModel(loss=loss), log=None)
        self.rng = random.Random(seed + 1)
        self.hc_interval = hc_interval
        self.healthy = healthy
        self.unhealthy = unhealthy
        self.node_names = [f"10.1.0.{i + 1}:8080" for i in range(nodes)]
        self.node_up = dict.fromkeys(self.node_names, True)
        self._seed = tuple(self.node_names) if seed_nodes else ()
        self.horizon_ms = horizon_ms
        self.skew_ms: dict[str, int] = {}
        """Each peer's wall-clock error (ms): what its clock reads minus the true time."""
        self.names = [f"p{i}" for i in range(peers)]
        self.peers: dict[str, SimPeer] = {}
        self._cut: set[tuple[str, str]] = set()  # (peer, node) pairs that cannot reach
        for name in self.names:
            self.peers[name] = SimPeer(name, self._new_peer(name, None))
            self.gossip.add(name, self.peers[name].peer)
        self.gossip.start(self.names[0])
        for i, name in enumerate(self.names[1:], start=1):
            self.gossip.at(0.01 * i, self._starter(name, self.names[:1]))
        for name in self.names:
            self._schedule(name)
        # As the cluster shell does: the first peer has nothing to join and seeds at once;
        # the others seed when a full state from an established peer reaches them.
        self.peers[self.names[0]].peer.seed_nodes(self.wall_ms())

    # -- time ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.gossip.now

    def wall_ms(self) -> int:
        return T0_MS + round(self.gossip.now * 1000)

    def wall_s(self) -> float:
        return T0_MS / 1000 + self.gossip.now

    def run_for(self, seconds: float) -> None:
        self.gossip.run_for(seconds)

    def run_until_true(self, check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
        """Run until `check()` holds (tried every `step` virtual seconds) or `timeout`."""
        return self.gossip.run_until_true(check, timeout, step)

    # -- faults ------------------------------------------------------------------------------

    def node_down(self, node: str) -> None:
        self.node_up[node] = False

    def node_back(self, node: str) -> None:
        self.node_up[node] = True

    def cut(self, peer: str, node: str) -> None:
        """`peer` can no longer reach `node` (the others still can)."""
        self._cut.add((peer, node))

    def cut_pairs(self) -> frozenset[tuple[str, str]]:
        """The (peer, node) pairs cut off from each other."""
        return frozenset(self._cut)

    def uncut(self, peer: str, node: str) -> None:
        """`peer` reaches `node` again."""
        self._cut.discard((peer, node))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        self.gossip.partition(groups)

    def heal(self) -> None:
        self.gossip.heal()

    def crash(self, name: str) -> None:
        """Kill `name` (kill -9): what it saved stays on its disk."""
        self.peers[name].up = False
        self.gossip.crash(name)

    def restart(
        self,
        name: str,
        seeds: Sequence[str],
        *,
        stateless: bool = False,
        nodes: Sequence[str] | None = None,
    ) -> None:
        """A fresh process for `name`, from its disk, joining through `seeds`.

        `stateless`: its disk is gone (no -state-dir), so it starts from its `-nodes`:
        `nodes` (default: the cluster's original list). A peer whose join target does not
        answer seeds at once, as the cluster shell does when no join target answered.
        """
        p = self.peers[name]
        if stateless:
            p.disk = None
        p.peer = self._new_peer(name, p.disk, nodes)
        p.up = True
        p.gen += 1
        p.events_seen = -1
        p.told_gone.clear()
        p.confirming.clear()
        p.checking.clear()
        self.gossip.restart(name, seeds, delegate=p.peer)
        self._schedule(name)
        if not any(self.peers[s].up for s in seeds if s != name):
            p.peer.seed_nodes(self.wall_ms())

    def add_peer(self, name: str, seeds: Sequence[str], nodes: Sequence[str] = ()) -> None:
        """A new peer `name` (no disk) with `nodes` as its `-nodes`, joining through `seeds`."""
        self.names.append(name)
        self.peers[name] = SimPeer(name, self._new_peer(name, None, nodes))
        self.gossip.add(name, self.peers[name].peer)
        self.gossip.start(name, seeds)
        self._schedule(name)
        if not any(self.peers[s].up for s in seeds):
            self.peers[name].peer.seed_nodes(self.wall_ms())

    def one_way(self, src: Iterable[str], dst: Iterable[str]) -> None:
        """Drop every datagram and stream from `src` peers to `dst` peers (not the reverse)."""
        self.gossip.one_way(src, dst)

    # -- what operators and tests read ----------------------------------------------------

    def peer(self, name: str) -> Peer:
        return self.peers[name].peer

    def states(self, node: str) -> dict[str, str]:
        """Each live peer's routing state of `node`."""
        return {n: p.peer.view.states.get(node, "absent") for n, p in self.peers.items() if p.up}

    def members(self, name: str) -> tuple[str, ...]:
        return tuple(self.peers[name].peer.state.nodes.members())

    # -- the shells, simulated -------------------------------------------------------------

    def peer_ms(self, name: str) -> int:
        """`name`'s wall clock (ms), skew included."""
        return self.wall_ms() + self.skew_ms.get(name, 0)

    def _new_peer(
        self, name: str, disk: dict[str, Any] | None, nodes: Sequence[str] | None = None
    ) -> Peer:
        seed: tuple[str, ...] | None = self._seed if nodes is None else tuple(nodes)
        nodeset = NodeSet(HybridClock(name), horizon_ms=self.horizon_ms)
        if disk is not None:  # as fnlb.shell.cluster.restore reads -state-dir
            clock = HybridClock(name)
            clock.witness(Timestamp.from_wire(disk["clock"]))
            nodeset = NodeSet.from_snapshot(disk["nodes"], clock, horizon_ms=self.horizon_ms)
            seed = None
        return Peer(
            name,
            routing=RendezvousPolicy(),
            clock_ms=lambda: self.peer_ms(name),
            healthy=self.healthy,
            unhealthy=self.unhealthy,
            nodeset=nodeset,
            seed=seed,
            epoch_ms=self.peer_ms(name),
        )

    def _starter(self, name: str, seeds: Sequence[str]) -> Callable[[], None]:
        return lambda: self.gossip.start(name, seeds)

    def _schedule(self, name: str) -> None:
        gen = self.peers[name].gen
        self.gossip.at(self.now, lambda: self._pump(name, gen))
        self.gossip.at(
            self.now + self.rng.uniform(0, self.hc_interval), lambda: self._round(name, gen)
        )

    def _alive(self, name: str, gen: int) -> bool:
        p = self.peers[name]
        return p.up and p.gen == gen

    def _pump(self, name: str, gen: int) -> None:
        """fnlb.shell.pump and the cluster shell's membership hand-over, every PUMP_S."""
        if not self._alive(name, gen):
            return
        p = self.peers[name]
        peer = p.peer
        slot = self.gossip.slots[name]
        now = self.peer_ms(name) / 1000
        if slot.events != p.events_seen:  # membership moved only if the member said so
            p.events_seen = slot.events
            members = slot.member.members()
            live = [m.name for m in members if m.state in _LIVE]
            peer.members_changed(live)
            if p.told_gone:
                p.told_gone.difference_update(live)
            if len(live) < len(members):
                for m in members:
                    if m.state not in _LIVE and m.name not in p.told_gone:
                        p.told_gone.add(m.name)
                        peer.member_left(m.name, now)
        peer.tick(now)
        for check in peer.take_checks():
            if check.confirm:
                p.confirming.add(check.node)
            self._check_soon(name, gen, check.node, 1)
        if peer.take_save():
            p.disk = peer.snapshot()
            p.saves += 1
        self.gossip.at(self.now + PUMP_S, lambda: self._pump(name, gen))

    def _round(self, name: str, gen: int) -> None:
        """A health-check round: every node in the set."""
        if not self._alive(name, gen):
            return
        for node in self.peers[name].peer.nodes():
            self._check_soon(name, gen, node, 1)
        self.gossip.at(self.now + self.hc_interval, lambda: self._round(name, gen))

    def _check_soon(self, name: str, gen: int, node: str, attempt: int) -> None:
        """Check `node` unless a check of it is already running (that one takes over)."""
        checking = self.peers[name].checking
        if node in checking:
            return
        checking.add(node)
        self.gossip.at(self.now + CHECK_S, lambda: self._check(name, gen, node, attempt))

    def _check(self, name: str, gen: int, node: str, attempt: int) -> None:
        """One check, and the re-checks that confirm a suspicion (as the checker does)."""
        if not self._alive(name, gen):
            return
        p = self.peers[name]
        ok = self.node_up.get(node, False) and (name, node) not in self._cut
        p.peer.health_checked(node, ok, self.peer_ms(name), "" if ok else "connection refused")
        health = p.peer.health(node)
        confirming = node in p.confirming
        if ok or health is None or health.state == "offline" or not confirming:
            p.confirming.discard(node)
            p.checking.discard(node)
            return
        if attempt >= self.unhealthy:
            p.confirming.discard(node)
            p.checking.discard(node)
            return
        self.gossip.at(self.now + CONFIRM_GAP_S, lambda: self._check(name, gen, node, attempt + 1))
