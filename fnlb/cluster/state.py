"""The cluster layer as gossip sees it: the node set, health verdicts and load, merged alike.

Rule 1: no asyncio, socket, time or random here. Rule 2: every input carries `now_ms` (wall
clock, milliseconds: stamps are compared across hosts); every output is returned or queued for
`take_broadcasts`.

`ClusterState` is the replicated part of a `Peer` (fnlb.peer.core), which is the gossip
delegate and hands it what gossip brings, with the time. It holds:
- the node-set CRDT (fnlb.cluster.nodeset): `add_node`/`remove_node` return the delta that
  must be persisted and acknowledged; merges of peers' deltas and full states are idempotent;
- this peer's own health of each node (the original's consecutive-check rule) and everyone's
  verdicts (fnlb.cluster.health_merge), from which each node's cluster verdict follows;
- which peers are alive, told by the gossip runtime (only live peers' verdicts count).

Wire formats: fnlb.payloads (the envelope `[kind, ...]` with node-set entries, verdicts, node
/metrics readings, back-off and load digests; the push-pull full state). A node's reading:
the newest one wins everywhere, so all peers weigh the same figures. Load digests go up and
down the load tree a few times a second (fnlb.cluster.load_tree) and are not part of
push-pull. Anything malformed raises
RemoteProtocolError and is dropped by the caller, counted by reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from fnlb.cluster.health_merge import ClusterState as Verdict3
from fnlb.cluster.health_merge import Verdict, VerdictTable
from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.cluster.load import ClusterLoad
from fnlb.cluster.load_tree import LoadTree
from fnlb.cluster.nodeset import Entry, MergeResult, NodeSet
from fnlb.cluster.view import NodeView
from fnlb.errors import RemoteProtocolError
from fnlb.health.verdict import NodeHealth, State, after_check
from fnlb.payloads import envelope
from fnlb.payloads.backoff import decode_entries
from fnlb.payloads.envelope import (
    backoff_message,
    load_cluster_message,
    load_up_message,
    metrics_message,
    open_message,
)
from fnlb.payloads.full_state import full_state, open_full_state
from fnlb.payloads.node_metrics import NodeMetrics, metrics_from_wire
from fnlb.payloads.node_set import held_entries, node_set_message
from fnlb.payloads.verdict import check_verdict, stamp_wall_ms, verdict_message
from fnlb.payloads.verdict import verdict_stamp as stamp_int
from fnlb.routing.backoff import Backoff
from fnlb.routing.rendezvous import hash64, score
from fnlb.routing.widths import aligned_cut


class Merged(NamedTuple):
    """What one broadcast did here: `changed` what we route on; `news`: it was newer than
    what we held, so gossip relays it (a stale copy is not relayed)."""

    changed: bool
    news: bool


EARLY_VERDICT_MS: Final = 30_000
"""A verdict on a node we do not hold yet is kept this long, in case the node's entry comes
next (`_merge_verdict` says why)."""
EARLY_VERDICT_ROWS: Final = 4096
"""At most this many such verdicts are kept (the oldest go first): a peer sending verdicts on
nodes that never arrive cannot grow it."""


def verdict_stamp(ts: Timestamp) -> int:
    """An HLC stamp as one integer that orders like the stamp (for one peer's verdicts)."""
    return stamp_int(ts.wall_ms, ts.logical)


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What `/1/lb/cluster` shows of one node."""

    address: str
    cluster: Verdict3
    routable_here: bool
    verdicts: dict[str, bool]


class ClusterState:
    """One peer's replica of the shared state; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        healthy: int,
        unhealthy: int,
        nodeset: NodeSet | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        """`backoff`: where peers' routing back-off messages go (the load-aware router's,
        with --routing=hotset; None: they are dropped)."""
        self.name = name
        self._healthy = healthy
        self._unhealthy = unhealthy
        self.nodes = nodeset if nodeset is not None else NodeSet(HybridClock(name))
        self.verdicts = VerdictTable()
        self.node_metrics: Mapping[str, NodeMetrics] = MappingProxyType({})
        """The newest /metrics reading of each node, by whichever peer took it."""
        self._backoff = backoff
        self._reporters: dict[str, str] = {}
        """Each node's reporter among the live peers (`reporter`), until they change."""
        self._backoff_seq = 0
        self.load = ClusterLoad(single_source=True)
        """The cluster's load as the load tree's root summed it (ours, when we are the root
        or alone), the newest root's sum read."""
        self.tree = LoadTree(name)
        """Where our load goes: our subtree's sum up to our parent (fnlb.cluster.load_tree)."""
        self._sends: dict[tuple[str, bytes], bytes] = {}
        self.health: dict[str, NodeHealth] = {}
        self.alive: frozenset[str] = frozenset({name})
        self._outbox: list[tuple[bytes, bytes]] = []
        self.refused: dict[str, int] = {}
        """Well-formed peer entries we did not apply, by reason (see `_merged`): shown with
        the malformed drops in `/1/lb/cluster`."""
        self.dirty = False
        """Set when our clock moved for a verdict: persist it (the Peer's `take_save`)."""
        self._verdicts_taken = 0
        """Peers' verdicts newer than the one held (news, relayed), counted."""
        self._recheck: list[str] = []
        self._placement: Any = None
        """The raw placement of the last full state merged (`take_placement`)."""
        self._early: dict[tuple[str, str], tuple[bool, int, int]] = {}
        """Verdicts on nodes not (yet) in our set: (peer, node) -> (online, stamp, when
        received, ms). Applied if the node arrives within EARLY_VERDICT_MS (see
        `_merge_verdict`)."""
        """Nodes a peer called offline while we still see them online: check them now."""
        self._routable_only: frozenset[str] | None = None
        self._version = 0
        self._view = NodeView(0, {})
        self._view_stale = True
        self.on_change: Callable[[], None] | None = None
        """Told that the view changed, not given it: the listener (-workers: the primary's
        pool) reads `view` when it sends, once for any number of changes, so the view stays
        built when read even with a listener (docs/proxy.md, workers)."""

    # -- local changes ---------------------------------------------------------------

    def add_node(self, addr: str, now_ms: int) -> list[Entry]:
        """Add `addr` cluster-wide; the delta to persist, acknowledge and broadcast."""
        return self._local_write(self.nodes.add(addr, now_ms))

    def seed_nodes(self, addrs: Iterable[str]) -> list[Entry]:
        """Add `addrs` as `-nodes` does: each losing to any record the cluster has of it.

        One set change for the whole list: the members are re-read once, not once per
        address (O(nodes^2) per peer: 30 ms at 200 nodes, for each of N peers)."""
        delta: list[Entry] = []
        for addr in addrs:
            delta += self.nodes.seed(addr)
        return self._local_write(delta)

    def remove_node(self, addr: str, now_ms: int) -> list[Entry]:
        """Remove `addr` cluster-wide (a tombstone); the delta, as for `add_node`."""
        return self._local_write(self.nodes.remove(addr, now_ms))

    def _local_write(self, delta: list[Entry]) -> list[Entry]:
        self._queue_entries(delta)
        self._nodes_changed()
        return delta

    def record_check(self, node: str, ok: bool, now_ms: int, error: str = "") -> None:
        """One health result of ours (active or passive) for a node in the set."""
        if node not in self.nodes:
            return
        old = self.health.get(node, NodeHealth())
        new = after_check(old, ok, healthy=self._healthy, unhealthy=self._unhealthy, error=error)
        self.health[node] = new
        if new.state == old.state or new.state == "unknown":
            return
        self._issue_verdict(node, new.state == "online", now_ms)
        self._publish()

    def _issue_verdict(self, node: str, online: bool, now_ms: int) -> None:
        """Our verdict on `node`, freshly stamped, kept and broadcast; the clock that stamped
        it must be saved (`dirty`), or a restart on a clock stepped back would issue verdicts
        older than this one, which every peer ignores.

        Not broadcast: our first verdict on a node when it is "online". Every peer presumes a
        live peer it has no verdict from says online (fnlb.cluster.health_merge), so it is
        news to nobody; broadcasting it made a cluster's start cost N x nodes broadcasts,
        each relayed by every peer (per peer N x nodes x the retransmit limit: minutes of
        gossip at N=100 with 20 nodes, over 100 MB at N=1,000 with 200). A peer that holds
        an older "offline" of ours (we restarted) sends it in push-pull (the node is
        contested in its eyes) and we, or whoever holds this newer one, broadcast the newer
        one back (`merge_full`; `local_state` says why that is enough).
        """
        first = self.verdicts.verdict(self.name, node) is None
        verdict = Verdict(online, verdict_stamp(self.nodes.clock.tick(now_ms)))
        self.verdicts.merge(self.name, node, verdict)
        if not (first and online):
            self._outbox.append(
                (
                    b"v/" + node.encode(),
                    verdict_message(self.name, node, verdict.online, verdict.stamp),
                )
            )
        self.dirty = True

    def record_metrics(self, node: str, metrics: NodeMetrics) -> None:
        """Our own reading of a node's /metrics: keep it if newest; share it if it moved and
        we are the node's reporter.

        Every peer reads every node, so two rules keep this from flooding gossip: a reading
        whose figures equal the ones held only refreshes the time here, and only one live
        peer per node (its rendezvous-first peer) shares what moved. The others still read it
        themselves, so they never lag by more than a check.
        """
        held = self.node_metrics.get(node)
        if not self._keep_metrics(node, metrics):
            return
        moved = held is None or held.to_wire()[:-1] != metrics.to_wire()[:-1]
        if moved and self.reporter(node) == self.name:
            self._outbox.append((b"m/" + node.encode(), metrics_message(node, metrics.to_wire())))

    def reporter(self, node: str) -> str:
        """The live peer that shares `node`'s readings: rendezvous-first, the same everywhere.

        Kept until the live peers change: every reading of every node asks, and scoring
        every live peer each time cost O(N) per reading (at N=1,000 with 200 nodes read
        every 3 s, 67,000 scores a second on every peer)."""
        held = self._reporters.get(node)
        if held is None:
            key = hash64(node)
            held = self._reporters[node] = max(
                self.alive, key=lambda peer: (score(key, hash64(peer)), peer)
            )
        return held

    def _keep_metrics(self, node: str, metrics: NodeMetrics) -> bool:
        held = self.node_metrics.get(node)
        if node not in self.nodes or (held is not None and held.at_ms >= metrics.at_ms):
            return False
        self.node_metrics = MappingProxyType({**self.node_metrics, node: metrics})
        return True

    def queue_backoff(self, message: bytes) -> None:
        """Share a routing back-off message (fnlb.routing.backoff): nodes to avoid a while."""
        self._backoff_seq += 1
        key = b"b/" + self.name.encode() + b"/" + str(self._backoff_seq).encode()
        self._outbox.append((key, backoff_message(message)))

    def queue_load(self, digest: bytes, now_s: float) -> None:
        """Our load digest: summed with our children's subtrees and sent to our parent in the
        load tree; at the root, the sum is the cluster's load: kept and passed down.

        Before issue #11 each digest went straight to every live peer: each peer received
        N - 1 digests per period, so its traffic grew with N. Now a peer sends one digest up
        and receives one down per period (fnlb.cluster.load_tree has the why and the faults).
        """
        summed = self.tree.subtree(digest, now_s)
        parent = self.tree.parent
        if parent is None:
            if self.load.merge(self.name, summed, now_s):
                self._pass_down(load_cluster_message(self.name, summed), self.name)
        else:
            self._sends[(parent, b"u/" + self.name.encode())] = load_up_message(self.name, summed)

    def _pass_down(self, payload: bytes, root: str) -> None:
        """A newest cluster sum (from `root`) to our children, with the last cut sum again
        while it has copies left (fnlb.cluster.load_tree, "Settled reads and loss")."""
        stamp = self.load.newest_stamp_ms(root)
        copy = self.tree.cut_copy(stamp, payload) if stamp is not None else None
        for child in self.tree.children:
            self._sends[(child, b"c/")] = payload
            if copy is not None:
                self._sends[(child, b"k/")] = copy

    def _pass_on(self, payload: bytes) -> None:
        """An older cluster sum we did not hold (a copy of a cut sum, or one that came
        late) to our children: they may have lost it too."""
        for child in self.tree.children:
            self._sends[(child, b"k/")] = payload

    def peer_left(self, peer: str, now_s: float) -> None:
        """A peer died or left: its load and its subtree no longer count."""
        self.load.peer_left(peer, now_s)
        self.tree.forget(peer, now_s)

    def set_alive(self, peers: Iterable[str]) -> None:
        """The live peers (self included) according to gossip; only they vote on health."""
        alive = frozenset(peers) | {self.name}
        if alive != self.alive:
            self.alive = alive
            self._reporters.clear()
            self.tree.set_members(alive)
            self._publish()

    # -- what gossip carries (through the Peer, the delegate) --------------

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        out, self._outbox = self._outbox, []
        return out

    def take_placement(self) -> Any:
        """The raw placement the last full state merged carried, or None (drained)."""
        out, self._placement = self._placement, None
        return out

    def take_rechecks(self) -> list[str]:
        """Nodes a peer called offline while our own verdict still says online: check them
        now (drained)."""
        out, self._recheck = self._recheck, []
        return out

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        """Messages for every live peer: none since the load tree (kept for the delegate)."""
        return []

    def take_sends(self) -> list[tuple[str, bytes, bytes]]:
        """(peer, key, payload) for one peer each: load tree digests (drained)."""
        out = [(to, key, payload) for (to, key), payload in self._sends.items()]
        self._sends.clear()
        return out

    def local_state(self, join: bool, now_ms: int | None = None, placement: Any = None) -> bytes:
        """Our node set and the verdicts that can still matter: every peer's on a node some
        peer calls offline (a contested node). `now_ms` is not needed (kept for callers).

        Our own verdicts alone reached a peer only by broadcast or by an exchange with their
        author, so after a partition healed verdicts took minutes to agree. Everyone's on
        every node would cost N x nodes rows per exchange. But on a node nobody calls
        offline every peer computes "online" (a live peer's missing verdict is presumed
        online, fnlb.cluster.health_merge); only a contested node's verdicts decide anything,
        and there all of them travel, so a peer that just joined counts the same votes as the
        others. A peer still holding a stale "offline" sends it (the node is contested in its
        eyes) and whoever holds a newer verdict of that author corrects it (`merge_full`):
        that is also how a peer restarted (without state, or on a clock stepped back) gets
        its old "offline" back and says what it sees past it.

        Before the presumption, our own verdicts on every node rode along (so first "online"
        verdicts, never broadcast, reached everyone) and every verdict issued in the last
        2 minutes, up to 512: at a cluster's start with 200 nodes that was ~700 rows, ~30 KB
        each way per exchange (6.7 KB/s per peer of push-pull at N=20, 2.8 at N=10).

        `placement`: this peer's last admission placement (fnlb.payloads.placement), which
        the peer layer adds; the cluster state only carries it (`take_placement`).
        """
        del now_ms
        verdicts: list[list[Any]] = []
        for node, peers in self.verdicts.items():
            if not all(v.online for v in peers.values()):
                verdicts += ([peer, node, v.online, v.stamp] for peer, v in peers.items())
        return full_state(self.nodes.snapshot(), verdicts, placement)

    # -- merging -------------------------------------------------------------------------

    def merge_broadcast(self, payload: bytes, now: int) -> Merged:
        """Apply one peer broadcast: what changed, and whether it was news (to relay).

        What a broadcast brings is never queued again here: gossip relays the original
        broadcast itself, so re-queueing it made one change cost N^2 x the retransmit limit.
        """
        msg = open_message(payload)
        kind = msg[0]
        if kind == envelope.NODE_SET:
            result = self.nodes.merge(msg[1], now)
            return Merged(self._merged(result, now, relay=False), bool(result.changed))
        if kind == envelope.VERDICT:
            before = self._verdicts_taken
            changed = self._merge_verdict(msg[1], msg[2], msg[3], msg[4], now)
            return Merged(changed, self._verdicts_taken != before)
        if kind == envelope.NODE_METRICS:
            metrics = metrics_from_wire(msg[2])
            if metrics is None:
                raise RemoteProtocolError("bad_node_metrics", "malformed node metrics")
            return Merged(False, self._keep_metrics(msg[1], metrics))
        if kind == envelope.BACKOFF:
            if self._backoff is not None:
                self._backoff.merge(decode_entries(msg[1]), now / 1000)
            return Merged(False, True)  # each has its own key: nothing to be stale against
        sender, data = msg[1], msg[2]  # a load digest (envelope.LOAD_KINDS)
        if sender == self.name:
            return Merged(False, False)
        if kind == envelope.LOAD_UP:
            self.tree.from_child(sender, data, now / 1000)
            return Merged(False, False)
        if kind == envelope.LOAD:
            self.tree.from_legacy(sender, data, now / 1000)
            return Merged(False, False)
        kept = self.load.kept
        newest = self.load.merge(sender, data, now / 1000)  # envelope.LOAD_CLUSTER
        if newest:
            self._pass_down(payload, sender)
        elif self.load.kept != kept:
            self._pass_on(payload)
        return Merged(False, newest)

    def merge_full(self, data: bytes, now: int, *, relay: bool = True) -> bool:
        """Apply a peer's full state (push-pull); True if anything we route on changed.

        `relay`: broadcast the node entries it brought that were news here (nobody else is
        spreading them). False for a new peer's first exchange: what the cluster holds is
        news only to the newcomer, and relaying it would flood gossip with the whole set.
        """
        nodes, verdicts, placement = open_full_state(data)
        changed = self._merged(self.nodes.merge_full(nodes, now), now, relay=relay)
        for peer, node, online, stamp in verdicts:
            held = self.verdicts.verdict(peer, node) if isinstance(peer, str) else None
            taken = self._verdicts_taken
            changed |= self._merge_verdict(peer, node, online, stamp, now)
            if self._verdicts_taken != taken and peer != self.name:
                # News a push-pull brought: nobody is spreading it, so we do, if it says
                # something a peer does not presume: a first "online" (its author never
                # broadcast it, `_issue_verdict`) or one after an "online" does not, and
                # relaying those made every peer's push-pull respread the start's N x nodes
                # verdicts (17 KB/s per peer at N=40 with 20 nodes, against 0.9 at N=5).
                if not online or (held is not None and not held.online):
                    self._relay_verdict(peer, node)
            elif (
                held is not None
                and isinstance(stamp, int)
                and held.stamp > stamp
                and held.online != online
            ):
                self._relay_verdict(peer, node)  # the partner (and maybe others) is stale
        self._placement = placement  # only from a state merged whole
        return changed

    def _relay_verdict(self, peer: str, node: str) -> None:
        """Broadcast the verdict of `peer` on `node` we hold, as news of our own."""
        v = self.verdicts.verdict(peer, node)
        if v is None:
            return
        if peer == self.name:
            key = b"v/" + node.encode()
        else:
            key = b"w/" + hashlib.blake2b(f"{peer}\0{node}".encode(), digest_size=12).digest()
        self._outbox.append((key, verdict_message(peer, node, v.online, v.stamp)))

    def merge_node_change(self, payload: bytes, now: int) -> MergeResult:
        """Apply a peer's node-set change sent to be held (`POST /1/lb/cluster/hold`).

        Only node-set entries are held (fnlb.payloads.node_set). Returns the merge's result,
        so the caller can tell the writer when entries were refused (drift, ghosts) and so
        are not held.
        """
        result = self.nodes.merge(held_entries(payload), now)
        self._merged(result, now, relay=False)  # the writer broadcasts it itself
        return result

    def _merge_verdict(self, peer: Any, node: Any, online: Any, stamp: Any, now: int) -> bool:
        peer, node, online, stamp = check_verdict(peer, node, online, stamp)
        if node not in self.nodes:
            # Kept a while, not applied: a node and its verdicts can arrive in either order
            # (a peer that learns both from one push-pull relays both; gossip sends the
            # newest broadcast first). Dropped, such a verdict (an "offline" during a
            # partition, say) was lost here until a push-pull brought it again, and a peer
            # missing an "offline" counts its author as online (health_merge).
            self._early.pop((peer, node), None)
            self._early[(peer, node)] = (online, stamp, now)
            if len(self._early) > EARLY_VERDICT_ROWS:
                del self._early[next(iter(self._early))]
            return False
        if stamp_wall_ms(stamp) - now > self.nodes.clock.max_drift_ms:
            # Like a node entry from too far ahead (fnlb.cluster.hlc's drift rule): it would
            # outrank the peer's real verdicts until our clock caught up. Its sender sends
            # verdicts again when they change, and push-pull carries them again.
            self._count("verdict_drift")
            return False
        # Any stamp seen moves our clock past it (the HLC rule), so what we issue next wins.
        self.nodes.clock.update(Timestamp(stamp_wall_ms(stamp), stamp & 0xFFFFF, peer), now)
        held = self.verdicts.verdict(peer, node)
        if peer == self.name:
            if held is not None and held.stamp < stamp:
                # A verdict of ours from before a restart (a clock stepped back, or no state
                # dir) outranks what we say now: say it again, stamped past it.
                self._issue_verdict(node, held.online, now)
            return False
        if held is not None and held.stamp >= stamp:
            return False
        self._verdicts_taken += 1
        self.dirty = True
        if not self.verdicts.merge(peer, node, Verdict(online, stamp)):
            return False
        mine = self.verdicts.verdict(self.name, node)
        if not online and (mine is None or mine.online) and node not in self._recheck:
            self._recheck.append(node)
        self._publish()
        return True

    def _merged(self, result: MergeResult, now: int, *, relay: bool) -> bool:
        """Count what was refused; True if members may have moved. `relay`: queue what won
        as our own broadcast (news a push-pull brought: nobody else is spreading it).

        Refused entries need no action: drifted ones come again with the next push-pull,
        ghosts never should. A stale replica (`needs_full_sync`) is repaired by gossip's
        periodic push-pull, a full-state merge (gossip offers no hook to ask for one now).
        """
        if result.refused_drift:
            self._count("hlc_drift", len(result.refused_drift))
        if result.refused_ghosts:
            self._count("ghost_entries", result.refused_ghosts)
        if result.dropped:
            self._count("ghosts_dropped", len(result.dropped))
        if result.needs_full_sync:
            self._count("needs_full_sync")
        if relay and result.changed:
            self._queue_entries(result.changed)
        if result.members_changed:
            self._nodes_changed()
            self._apply_early(now)
            return True
        return False

    def _apply_early(self, now: int) -> None:
        """Apply the verdicts that came before their node (`_merge_verdict`) and are young."""
        if not self._early:
            return
        arrived = [k for k in self._early if k[1] in self.nodes]
        for peer, node in arrived:
            online, stamp, when = self._early.pop((peer, node))
            if now - when <= EARLY_VERDICT_MS:
                self._merge_verdict(peer, node, online, stamp, now)

    def _count(self, reason: str, n: int = 1) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + n

    def _queue_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            self._outbox.append((b"n/" + e.addr.encode(), node_set_message([e.to_wire()])))

    def _nodes_changed(self) -> None:
        members = set(self.nodes.members())
        for node in [n for n in self.health if n not in members]:
            del self.health[node]
            self.verdicts.forget_node(node)
        if any(n not in members for n in self.node_metrics):
            self.node_metrics = MappingProxyType(
                {n: m for n, m in self.node_metrics.items() if n in members}
            )
        self._publish()

    # -- what routing and operators read ------------------------------------------------

    def limit_view(self, nodes: frozenset[str] | None) -> None:
        """Show only `nodes` to routing (None: every member), whatever the set holds.

        The owner of the node list (the Kubernetes pod watch) says which nodes exist now; a
        peer's set may lag it by a gossip round, and routing must not."""
        self._routable_only = nodes
        self._publish()

    def _publish(self) -> None:
        """The routing view must be rebuilt: at its next read (`view`).

        Rebuilding costs O(nodes x peers) (every node's cluster verdict); at a cluster's
        start a peer merges N x nodes verdicts, and rebuilding at each one cost 3 ms per
        verdict at 200 nodes (N=200: minutes of CPU per peer). Built when read, every read
        still sees what the state holds now. A listener (`on_change`) is told at once and
        reads the view when it chooses."""
        self._view_stale = True
        if self.on_change is not None:
            self.on_change()

    @property
    def view(self) -> NodeView:
        """The routing view: cluster verdicts, minus what our own verdict excludes; replaced
        whole on each change (after one, at the next read)."""
        if self._view_stale:
            self._rebuild_view()
        return self._view

    @property
    def version(self) -> int:
        """The routing view's version: +1 at each rebuild after a change."""
        return self.view.version

    def _rebuild_view(self) -> None:
        self._view_stale = False
        members = self.nodes.members()
        excluded = self.verdicts.locally_excluded(self.name, members)
        only = self._routable_only
        states: dict[str, State] = {}
        for node, cluster in self.verdicts.states(members, self.alive).items():
            if only is not None and node not in only:
                continue
            states[node] = "offline" if node in excluded else cluster
        self._version += 1
        self._view = NodeView(self._version, states)

    def checksum(self) -> str:
        """Equal on two peers when they hold the same nodes and cluster verdicts.

        That is what every routing reads; the load-based widths of the default routing
        (hot set) agree separately: see `load_checksum` and docs/routing.md, the shared load model.
        """
        members = self.nodes.members()
        cluster = self.verdicts.states(members, self.alive)
        canon = "\n".join(f"{n} {cluster[n]}" for n in members)
        return hashlib.blake2b(canon.encode(), digest_size=8).hexdigest()

    def load_checksum(self, now_ms: int) -> str:
        """The settled load summary's checksum (fnlb.cluster.load): equal on peers that would
        pick the same load-based widths. The cut is the feed's (`aligned_cut`: one second
        back, aligned to a whole second), so peers asked within the same second read the same
        digests; even so a digest lost or straddling the cut makes them differ a few % of the
        time."""
        settled = aligned_cut(now_ms)
        return f"{self.load.summary(now_ms / 1000, settled_ms=settled).checksum():08x}"

    def report(self) -> list[NodeReport]:
        """Each node's cluster verdict and the votes it counted: the verdicts held, and
        "online" for a live peer whose verdict is not held (presumed: fnlb.cluster.
        health_merge; its first "online" is never broadcast) once any live one is."""
        members = self.nodes.members()
        cluster = self.verdicts.states(members, self.alive)
        reports = []
        for n in members:
            votes = {p: v.online for p, v in self.verdicts.verdicts(n).items()}
            if cluster[n] != "unknown":
                votes.update({p: True for p in self.alive if p not in votes})
            reports.append(
                NodeReport(
                    n, cluster[n], self.view.states.get(n) == "online", dict(sorted(votes.items()))
                )
            )
        return reports
