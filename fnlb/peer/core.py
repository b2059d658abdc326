"""One fnlb peer as one sans-I/O object: everything it knows and decides, nothing it does.

Rule 1: no asyncio, socket, time or random here (randomness and the clock come in through the
constructor, as gossip's member takes them). Rule 2: every input is a method that carries
`now`; every output is drained by the caller, in the style of h11 and aioquic:

    inputs                                       outputs (drained)
    attempt_started / attempt_finished (proxy)   take_broadcasts / take_sends (gossip)
                                                 take_push_pull (ask gossip for one now)
    gossip: notify_broadcast, merge_remote_state take_checks (health checks to run now)
      (the GossipDelegate: the Peer is it)       take_save (the node set must be persisted)
    members_changed / member_left (gossip)       view (the routing view, swapped whole)
    health_checked / metrics_read (checker)      NodeChange.hold (what to have peers hold)
    put_node / delete_node / hold_change (API)
    tick (a timer, a few times a second)

The `Peer` owns the node set and health verdicts (fnlb.cluster.state), this peer's and the
cluster's load (fnlb.cluster.load), the routing control loop's widths, placement and scale
signal (fnlb.peer.control_loop), the routing policy with its back-off, and the seeding of
`-nodes`. Production (fnlb.shell), the simulators and the tests drive the same object. A lone
fnlb is a Peer without gossip: it keeps one node directory, merges its own load digests and
drops what it would have broadcast.

Gossip's delegate callbacks carry no time: they read the wall clock (ms) handed to the
constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fnlb.cluster.hlc import HybridClock
from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.nodeset import Entry, NodeSet
from fnlb.cluster.state import ClusterState
from fnlb.cluster.view import NodeView
from fnlb.errors import RemoteProtocolError
from fnlb.health.verdict import NodeHealth
from fnlb.payloads.backoff import pack_entries
from fnlb.payloads.node_metrics import NodeMetrics
from fnlb.payloads.node_set import node_set_message
from fnlb.payloads.placement import open_placement
from fnlb.peer.control_loop import METRICS_STALE_MS, TICK_S, ControlLoop
from fnlb.routing.attempt import Attempt
from fnlb.routing.policies import RoutingPolicy
from fnlb.routing.scale_signal import ScaleDecision
from fnlb.routing.widths import WidthPolicy, WidthTracker

log = logging.getLogger("fnlb.peer")

DIGEST_S: Final = 0.3
"""How often a peer makes its load digest: figures reach every peer within ~0.5 s."""
SWEEP_S: Final = 1.0
"""How often idle load figures and stale digests are dropped, and old tombstones collected."""
IDLE_DIGESTS: Final = 2
"""A peer with no function to report says so this many times (twice, in case one datagram is
lost) and then stays silent until it has calls again: the others' copy of its last digest goes
stale after 5 s, which reads as idle too. Idle digests sent on, even every 2 s to every peer,
made an idle cluster's gossip grow with N instead of staying flat as SWIM's does."""
SWEEP_LIMIT: Final = 1000
PUMP_S: Final = 0.05
"""How often a Peer's shell (or a simulator) pumps it: `tick`, then its outputs drained.
Inputs that arrive between two pumps (gossip merges, API writes, failed connections) are
acted on within this."""
CONFIRM_GAP_S: Final = 0.1
"""Seconds between the quick re-checks that confirm a suspected node (`Check.confirm`)."""
LONE_NAME: Final = "self"
"""The name of a lone fnlb's only peer (it never travels)."""


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node-set change made here: `hold` is what peers must hold before it is answered."""

    node: str
    added: bool
    entries: tuple[Entry, ...]

    @property
    def hold(self) -> bytes:
        """The payload of `POST /1/lb/cluster/hold` carrying this change."""
        return node_set_message(e.to_wire() for e in self.entries)


@dataclass(frozen=True, slots=True)
class Held:
    """The outcome of a peer's hold request: `held` unless a merge refused an entry."""

    refused_drift: int
    refused_ghosts: int
    max_drift_ms: int

    @property
    def held(self) -> bool:
        return not (self.refused_drift or self.refused_ghosts)


@dataclass(frozen=True, slots=True)
class Check:
    """A health check to run out of turn; `confirm`: keep checking until a verdict."""

    node: str
    confirm: bool


class Peer:
    """One peer; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        routing: RoutingPolicy,
        clock_ms: Callable[[], int],
        healthy: int = 2,
        unhealthy: int = 2,
        gossip: bool = True,
        nodeset: NodeSet | None = None,
        seed: Sequence[str] | None = (),
        epoch_ms: int = 0,
        width_policy: WidthPolicy | None = None,
        admission: bool = True,
        metrics_stale_ms: int = METRICS_STALE_MS,
    ) -> None:
        """`routing`: the policy calls are routed by. `clock_ms`: the wall clock in ms, read
        only by gossip's callbacks, which carry no time. `gossip`: False for a lone fnlb.
        `nodeset`: the node set restored from disk (None: empty). `seed`: the `-nodes` to
        add once this peer holds the cluster's set (None: none, as after a restart from
        saved state). `epoch_ms`: larger at each start (orders a restarted peer's digests).
        `width_policy`: the hot-set width rules (the defaults when None). `admission`: place
        as cluster-wide admission (issue 16); False: placed homes of the hottest only.
        `metrics_stale_ms`: the age at which a node's /metrics reading goes unused
        (`fnlb.peer.control_loop.metrics_stale_ms` of the health checks' interval)."""
        self.name = name
        self.gossip = gossip
        self.routing = routing
        self._clock_ms = clock_ms
        router = routing.load_router
        self.state = ClusterState(
            name,
            healthy=healthy,
            unhealthy=unhealthy,
            nodeset=nodeset if nodeset is not None else NodeSet(HybridClock(name)),
            backoff=router.backoff if router is not None else None,
        )
        self.local = LocalLoad(epoch=epoch_ms)
        """This peer's own load figures, written per attempt."""
        self.control = ControlLoop(
            router,
            WidthTracker(width_policy),
            admission=admission,
            metrics_stale_ms=metrics_stale_ms,
        )
        self.drops: dict[str, int] = {}
        """Malformed peer messages dropped, by reason."""
        self.check_results: dict[tuple[str, str], int] = {}
        """(node, result) -> this peer's health results: ok, fail, or passive_fail (the
        proxy could not reach it); read by /metrics, dropped with the node."""
        self.state_changes: dict[tuple[str, str], int] = {}
        """(node, state entered) -> how often this peer's own verdict on the node changed;
        read by /metrics, dropped with the node."""
        self._pending_seed: list[str] | None = list(seed) if seed is not None else None
        self._known_nodes: set[str] = set(self.state.nodes.members())
        self._checks: list[Check] = []
        self._save = False
        self._next_digest = 0.0
        self._last_sweep = 0.0
        self._last_tick = 0.0
        self._idle_sent = 0
        if not gossip:
            self.seed_nodes(clock_ms())  # nothing to wait for: this peer is the cluster

    # -- what the request path and operators read --------------------------------------

    @property
    def view(self) -> NodeView:
        """The routing view: replaced whole on each change, read without a lock."""
        return self.state.view

    @property
    def load(self) -> ClusterLoad:
        """Every peer's latest load digest (ours included)."""
        return self.state.load

    @property
    def decision(self) -> ScaleDecision | None:
        """The scale signal as of the last tick (None before the first)."""
        return self.control.decision

    def nodes(self) -> list[str]:
        return list(self.state.nodes.members())

    def health(self, node: str) -> NodeHealth | None:
        """This peer's own health of `node` (None before its first check or when unknown)."""
        return self.state.health.get(node) if node in self.state.nodes else None

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        return self.state.node_metrics

    # -- a call ------------------------------------------------------------------------

    def candidates(self, key: str, path: str) -> Sequence[str]:
        """The nodes a call to `key` tries, best first (the current view, no allocation when
        the policy has nothing to reorder)."""
        return self.routing.candidates(self.state.view, key, path)

    def attempt_started(self, key: str, node: str, now: float) -> None:
        self.local.call_started(key, node, now)
        if self.routing.observes:
            self.routing.attempt_started(node, key)

    def attempt_finished(self, attempt: Attempt) -> None:
        """The one record of an attempt begun with `attempt_started` (fnlb.routing.attempt)."""
        a = attempt
        self.local.call_finished(
            a.key, a.node, a.status, a.wait_s, a.answer_s, a.ended, a.answered_at
        )
        if self.routing.observes:
            self.routing.observe(a)

    # -- health --------------------------------------------------------------------------

    def health_checked(self, node: str, ok: bool, now_ms: int, error: str = "") -> None:
        """One result of ours from an active health check."""
        self._checked(node, ok, now_ms, error, "ok" if ok else "fail")

    def connect_failed(self, node: str, error: str, now_ms: int) -> None:
        """The proxy could not reach `node`: count a failed check and confirm it at once."""
        self._checked(node, False, now_ms, error, "passive_fail")
        self._checks.append(Check(node, True))

    def _checked(self, node: str, ok: bool, now_ms: int, error: str, result: str) -> None:
        before = self.state.health.get(node)
        self.state.record_check(node, ok, now_ms, error)
        after = self.state.health.get(node)
        if after is None or node not in self.state.nodes:
            return  # removed meanwhile: not counted, its series would never end
        key = (node, result)
        self.check_results[key] = self.check_results.get(key, 0) + 1
        if after.state != (before.state if before is not None else "unknown"):
            change = (node, after.state)
            self.state_changes[change] = self.state_changes.get(change, 0) + 1
            log.info("node is %s", after.state, extra={"node": node, "error": error or None})

    def metrics_read(self, node: str, metrics: NodeMetrics) -> None:
        """A reading of the node's own /metrics, taken with a health check."""
        self.state.record_metrics(node, metrics)

    # -- the node set ----------------------------------------------------------------------

    def put_node(self, node: str, now_ms: int) -> NodeChange:
        """Add `node` everywhere; the change, to persist and have held before answering."""
        delta = self.state.add_node(node, now_ms)
        self._nodes_changed()
        return NodeChange(node, True, tuple(delta))

    def delete_node(self, node: str, now_ms: int) -> NodeChange:
        """Remove `node` everywhere (a tombstone); the change, as for `put_node`."""
        delta = self.state.remove_node(node, now_ms)
        self._nodes_changed()
        return NodeChange(node, False, tuple(delta))

    def follow_nodes(
        self, added: Iterable[str], removed: Iterable[str], exist: frozenset[str], now_ms: int
    ) -> None:
        """The node list's owner (the Kubernetes pod watch) changed it: apply the change.

        Local writes, gossiped like any change but never held for an answer: every peer
        watches the same API server and makes the same change itself; gossip only keeps
        health and load shared. Routing sees only `exist` from now on, so a pod that is
        gone leaves this peer's routable set at once, whatever gossip still carries."""
        changed = False
        for node in added:
            if node not in self.state.nodes:
                self.state.add_node(node, now_ms)
                changed = True
        for node in removed:
            if node in self.state.nodes:
                self.state.remove_node(node, now_ms)
                changed = True
        self.state.limit_view(exist)
        if changed:
            self._nodes_changed()
            self._save = True

    def hold_change(self, payload: bytes, now_ms: int) -> Held:
        """A peer's node-set change sent to be held (RemoteProtocolError when malformed,
        counted in `drops`). The caller persists before answering, held or not."""
        try:
            result = self.state.merge_node_change(payload, now_ms)
        except RemoteProtocolError as e:
            self._drop(e)
            raise
        if result.members_changed:
            self._nodes_changed()
        return Held(
            len(result.refused_drift), result.refused_ghosts, self.state.nodes.clock.max_drift_ms
        )

    def seed_nodes(self, now_ms: int) -> None:
        """Add the `-nodes` addresses the set has no entry for (live or deleted); once only.

        Seed entries carry the lowest stamp there is (`NodeSet.seed`): they lose to every add
        and delete, and to every collection floor, so an old `-nodes` list (a stateless
        peer redeployed long after a delete, or one whose first join failed) never brings a
        deleted node back. A peer with peers to join still seeds only once it holds the
        cluster's set (the first full state from an established peer, `merge_remote_state`)
        or when its shell gives up waiting, so it does not route to such a node meanwhile.
        """
        pending, self._pending_seed = self._pending_seed, None
        if not pending:
            return
        self.state.seed_nodes(pending)
        self._nodes_changed()
        self._save = True

    @property
    def seeded(self) -> bool:
        return self._pending_seed is None

    # -- gossip: membership ----------------------------------------------------------------

    def members_changed(self, alive: Iterable[str]) -> None:
        """The live peers according to gossip (only they vote on health)."""
        self.state.set_alive(alive)

    def member_left(self, name: str, now: float) -> None:
        """A peer died or left: its load no longer counts."""
        self.state.peer_left(name, now)

    # -- gossip: the delegate (fnlb.gossip.delegate.GossipDelegate) ----------------------

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        return self.state.take_broadcasts()

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        return self.state.take_direct()

    def take_sends(self) -> list[tuple[str, bytes, bytes]]:
        return self.state.take_sends()

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> bool:
        """Merge a peer's broadcast; True when it was news here (gossip relays it then)."""
        news = False

        def apply(now: int) -> bool:
            nonlocal news
            merged = self.state.merge_broadcast(payload, now)
            news = merged.news
            return merged.changed

        self._merged(apply)
        return news

    def local_state(self, join: bool) -> bytes:
        return self.state.local_state(join, self._clock_ms(), self.control.placement_map())

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        relay = self.seeded  # a new peer's first full state is news to it alone
        merged = self._merged(lambda now: self.state.merge_full(data, now, relay=relay))
        # `join` is set on a joiner's request: that peer is new too and may know nothing of
        # the cluster's deletes, so only answers and established peers' exchanges count.
        if merged and not join:
            self.seed_nodes(self._clock_ms())
        raw = self.state.take_placement()
        if raw is not None:
            # issue 16: placements that differ converge on one (fnlb.routing.admission)
            try:
                wire = open_placement(raw)
            except RemoteProtocolError as e:
                self._drop(e)
                return
            self.control.offer(wire, self.view.routable, self._clock_ms())

    def _merged(self, apply: Callable[[int], bool]) -> bool:
        """Apply a peer's message; drop and count it if malformed (False)."""
        try:
            changed = apply(self._clock_ms())
        except RemoteProtocolError as e:
            self._drop(e)
            log.debug("dropped a cluster message", extra={"reason": e.reason})
            return False
        if changed:
            self._nodes_changed()
            self._save = True
        for node in self.state.take_rechecks():
            self._checks.append(Check(node, True))
        return True

    def _drop(self, e: RemoteProtocolError) -> None:
        self.drops[e.reason] = self.drops.get(e.reason, 0) + 1

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Whatever is due at wall-clock `now` (seconds): call it every 0.1 s or so.

        Every DIGEST_S this peer's load digest (summed with its children's up the load tree);
        every SWEEP_S idle
        figures, stale digests and old tombstones go; every TICK_S the control loop
        recomputes widths, placement and the scale signal, and back-off to share is queued.
        """
        if now >= self._next_digest:
            self._next_digest = now + DIGEST_S
            idle = self.local.function_count == 0 and not self.state.tree.has_children(now)
            self._idle_sent = self._idle_sent + 1 if idle else 0
            if self._idle_sent <= IDLE_DIGESTS:
                self.state.queue_load(self.local.digest(now, stamp_ms=int(now * 1000)), now)
        if now - self._last_sweep >= SWEEP_S:
            self._last_sweep = now
            self.local.sweep(now, limit=SWEEP_LIMIT)
            self.state.load.expire(now)
            if self.state.nodes.collect_tombstones(int(now * 1000)):
                self._save = True
        if now - self._last_tick >= TICK_S:
            self._last_tick = now
            view = self.state.view
            self.control.tick(now, self.state.load, self.local, view, self.state.node_metrics)
            router = self.control.router
            if router is not None:
                for message in pack_entries(router.backoff.take_updates()):
                    self.state.queue_backoff(message)
        if not self.gossip:  # nobody to tell: what gossip would carry is dropped
            self.state.take_broadcasts()
            self.state.take_sends()

    # -- outputs -----------------------------------------------------------------------------

    def take_push_pull(self) -> bool:
        """Whether to ask gossip for a push-pull now, out of turn (drained; the shell calls
        `Member.request_push_pull`): a peer started less than a window ago wants the
        cluster's placement of each new epoch (fnlb.peer.control_loop). Never for a lone
        fnlb."""
        return self.control.take_push_pull() and self.gossip

    def take_checks(self) -> list[Check]:
        """Health checks to run now: new nodes, and nodes under suspicion (drained)."""
        out, self._checks = self._checks, []
        return out

    def take_save(self) -> bool:
        """Whether the node set changed since the last call and must be persisted."""
        save = self._save or self.state.dirty
        self._save = self.state.dirty = False
        return save

    def snapshot(self) -> dict[str, object]:
        """What a restart needs of this peer (with the peers it knew, which its shell adds)."""
        return {
            "nodes": self.state.nodes.snapshot(),
            "clock": list(self.state.nodes.clock.last.to_wire()),
        }

    def _nodes_changed(self) -> None:
        members = set(self.state.nodes.members())
        added = members - self._known_nodes
        removed = self._known_nodes - members
        self._known_nodes = members
        for node in sorted(added):
            log.info("node added", extra={"node": node})
            self._checks.append(Check(node, False))
        for node in sorted(removed):
            log.info("node removed", extra={"node": node})
        if removed:  # their health series end with them; memory stays bounded
            for counts in (self.check_results, self.state_changes):
                for k in [k for k in counts if k[0] in removed]:
                    del counts[k]
