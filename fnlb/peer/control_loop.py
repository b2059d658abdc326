"""The routing control loop: the once-a-second tick that turns load into widths and scale.

Sans-I/O: `ControlLoop.tick(now)` is called by the `Peer` (fnlb.peer.core), which is ticked
by its asyncio shell in production and by the simulators in virtual time.

Every `TICK_S`, at a wall-clock cut aligned to the second (so every peer reads the same
settled digests, docs/routing.md), the loop reads the cluster's load: the hottest functions'
width inputs go to the `WidthTracker` (hot-set widths, identical on every peer), the demand
in containers goes to the `ScaleSignal` (desired nodes, out/in/hold, identical on every peer),
and, when `--routing=hotset`, the router gets the new widths, the other peers' in-flight
counts, the gossiped back-off and each node's capacity from its own `/metrics` (read with the
health checks, shared by gossip). A lone fnlb runs the same tick over its own figures only.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any, Final, Protocol

from fnlb.cluster.load import ClusterLoad, LocalLoad, WidthInputs
from fnlb.cluster.view import NodeView
from fnlb.payloads.node_metrics import NodeMetrics
from fnlb.payloads.placement import WirePlacement, placement_map
from fnlb.routing.admission import Admission, Admitted, Placed
from fnlb.routing.load_router import NodeCapacity, Router
from fnlb.routing.placement import EPOCH_MS, place
from fnlb.routing.scale_signal import ScaleDecision, ScaleSignal, containers_needed
from fnlb.routing.widths import WidthTracker, aligned_cut

TICK_S: Final = 1.0
HOT_FUNCTIONS: Final = 256
SLOTS_PER_NODE: Final = 8
"""Containers an Fn node holds (1024 MB / 128 MB, Fn's defaults); the unit of capacity."""
CONTAINER_BYTES: Final = 128 * 1024 * 1024
"""Memory of one container when the node does not say (Fn's default function memory)."""
CUT_MS: Final = round(TICK_S * 1000)
"""Spacing of the settled cuts (the width tracker's `tick_ms`)."""
CATCH_UP_CUTS: Final = 5
"""Most skipped cuts read back at one tick (a peer stalled longer catches up from there)."""
ASK_AFTER_MS: Final = CUT_MS
"""A young peer asks for a push-pull this far into each epoch (its second tick in it): every
peer ticks about once a TICK_S on the same aligned cuts, so its partner has most likely
placed for the epoch by then; a partner still in the epoch before sends a placement that
`Admission.offer` refuses, and the peer asks again."""
ASK_AGAIN_MS: Final = 2 * CUT_MS
"""The spacing of the asks while the exchanges bring no placement for the epoch from a peer
that read the whole window (its partner had not crossed into the epoch, or was young too)."""
ASKS_PER_EPOCH: Final = 3
"""At most this many asks an epoch: in a cluster started all at once every peer is young
for WINDOW_MS, and none has such a placement to give."""
METRICS_STALE_MS: Final = 15_000
"""A node's /metrics reading older than this is not used (5 check intervals of the default 3 s;
`metrics_stale_ms` for others)."""
METRICS_STALE_CHECKS: Final = 5
"""Check intervals a node's /metrics reading stays usable: a missed check or two must not
drop a node's size, or admission re-sizes the protected set around it."""


def metrics_stale_ms(hc_interval_s: float) -> int:
    """The age at which a node's /metrics reading goes unused, for checks every
    `hc_interval_s`: METRICS_STALE_CHECKS intervals, never less than METRICS_STALE_MS.

    A fixed 15 s made every reading stale between checks when `-hc-interval` was over 15 s:
    the nodes' sizes came and went, admission re-sized the protected set with them, and on
    bench/routing's roomy profile `-hc-interval=30` gave 19.8 % and 22.1 % cold starts (a
    busiest node of 30 %) against 18.7 % at 3 s (docs/routing.md)."""
    return max(METRICS_STALE_MS, round(METRICS_STALE_CHECKS * hc_interval_s * 1000))


def node_capacity(reading: NodeMetrics) -> NodeCapacity:
    """What a node can hold, from its own /metrics: its container memory in slots of Fn's
    default 128 MB, and the share of those slots its running calls hold now.

    Neither memory held by *idle* containers nor queued calls count as "used": Fn evicts
    idle containers to start new ones, and a node full of warm containers is exactly where
    its functions should go; queued calls mostly wait for a container start (300 ms), and
    under memory pressure every node has some, so counting them sent calls away from their
    warm homes to start yet more containers (docs/benchmarks.md, "Figures behind design
    choices"). A node whose slots all run calls cannot start a call sooner.
    """
    total = reading.mem_used + reading.mem_avail
    slots = max(1, round(total / CONTAINER_BYTES)) if total > 0 else SLOTS_PER_NODE
    return NodeCapacity(slots, min(1.0, reading.running / slots))


def capacities(
    readings: Mapping[str, NodeMetrics],
    routable: Container[str],
    now_ms: int,
    stale_ms: int = METRICS_STALE_MS,
) -> dict[str, NodeCapacity]:
    """`node_capacity` of every routable node with a reading at most `stale_ms` old."""
    return {
        node: node_capacity(m)
        for node, m in readings.items()
        if node in routable and now_ms - m.at_ms <= stale_ms
    }


class ControlLoop:
    """Widths, placement and the scale signal, recomputed at each tick from the load."""

    def __init__(
        self,
        router: Router | None = None,
        widths: WidthTracker | None = None,
        *,
        admission: bool = True,
        metrics_stale_ms: int = METRICS_STALE_MS,
    ) -> None:
        """`router`: the load-aware router to hand the figures to (`--routing=hotset`).
        `widths`: the width tracker (its policy); a default one when None. `admission`:
        place as cluster-wide admission (fnlb.routing.admission: a protected set and the
        tail's nodes); False: placed homes of the 16 hottest only (fnlb.routing.placement).
        `metrics_stale_ms`: the age at which a node's /metrics reading goes unused
        (`metrics_stale_ms()` of the health checks' interval)."""
        self.router = router
        self.metrics_stale_ms = metrics_stale_ms
        self.widths = widths if widths is not None else WidthTracker()
        self.cut = 0
        """The settled cut (wall ms) the last tick read."""
        self.scale = ScaleSignal()
        self.homes: dict[str, str] = {}
        """Placed homes of the hottest functions, as of the last placement (`tick`)."""
        self._placed: tuple[int, tuple[str, ...]] | None = None  # (epoch, routable) placed for
        # -- issue 16: admission (fnlb.routing.admission) --
        slots = router.policy.slots_per_node if router is not None else SLOTS_PER_NODE
        self.admission: Admission | None = Admission(slots) if admission else None
        self.tail: tuple[str, ...] = ()
        """The tail's nodes, as of the last placement (admission only)."""
        self._applied: Admitted | None = None  # the admission placement homes/tail hold
        self._asked = (-1, 0, -1)  # (epoch, push-pulls asked for in it, the last's cut)
        self._ask = False

    @property
    def decision(self) -> ScaleDecision | None:
        return self.scale.decision

    def tick(
        self,
        now: float,
        load: ClusterLoad,
        local: LocalLoad,
        view: NodeView,
        readings: Mapping[str, NodeMetrics],
    ) -> None:
        """One tick at wall-clock `now` (seconds) over the cluster's `load`, this peer's
        `local` figures, the routing `view` and the nodes' newest /metrics `readings`."""
        cut = self.cut = aligned_cut(int(now * 1000))
        table = load.width_table(HOT_FUNCTIONS, now, settled_ms=cut)
        self.widths.update(cut, table, len(view.routable))
        need = containers_needed(
            ((w.rate, w.in_flight) for w in table.values()),
            load.summary(now, hot=0, settled_ms=cut).in_flight,
        )
        self.scale.update(cut, need, len(view.routable), SLOTS_PER_NODE)
        router = self.router
        if router is None:
            return
        others = {
            n: max(0, load.node_load(n, now).in_flight - local.node_in_flight(n))
            for n in view.routable
        }
        caps = capacities(readings, set(view.routable), int(now * 1000), self.metrics_stale_ms)
        rates = {key: w.rate for key, w in table.items()}
        if self.admission is not None:
            # -- issue 16: admission, fed every settled cut, placed at the epochs --
            self._observe_since(self.admission, load, now, cut, table)
            self.admit(cut, view, caps)
            self._ask_while_young(self.admission, cut)
        else:
            self.place(cut, rates, view)
        router.update(
            widths=self.widths.widths,
            peers_in_flight=others,
            capacity=caps,
            homes=self.homes,
            tail=self.tail,
        )
        router.backoff.expire(now)

    def place(self, cut: int, rates: Mapping[str, float], view: _Placeable) -> None:
        """Place the hottest functions' homes once per epoch and routable set.

        A placement from no settled load at all (a peer just started, or load just began)
        placed nothing: try again next tick rather than route unplaced for the whole epoch.
        Every peer reads the same settled cut, so they place at the same tick.
        """
        epoch = (cut // EPOCH_MS, view.routable)
        if epoch != self._placed or not self.homes:
            self._placed = epoch
            self.homes = place(rates, view.candidates)

    @staticmethod
    def _observe_since(
        adm: Admission, load: ClusterLoad, now: float, cut: int, table: Mapping[str, WidthInputs]
    ) -> None:
        """Feed the admission every settled cut since the last it read, `cut` included.

        The scores age per cut, so every peer must fold in the same cuts. A peer's ticks are
        at least TICK_S apart and come when its pump runs, so now and then (every ~20 ticks
        at a 0.1 s pump, more often on a loaded machine) one skips a cut, each peer at its own
        times; the tables of a skipped cut are read now, settled as they were then. Without
        this, peers of the README demo held different scores for a minute after a burst
        and placed differently (2 runs of 8 on a loaded machine)."""
        last = adm.last_cut
        first = cut if last < 0 else max(last + CUT_MS, cut - CATCH_UP_CUTS * CUT_MS)
        for c in range(first, cut + 1, CUT_MS):
            t = table if c == cut else load.width_table(HOT_FUNCTIONS, now, settled_ms=c)
            total = load.summary(now, hot=0, settled_ms=c)
            adm.observe(
                c,
                {key: w.rate for key, w in t.items()},
                {key: w.in_flight for key, w in t.items()},
                total.rate_c / 100.0,
                total.in_flight,
            )

    def admit(self, cut: int, view: _Placeable, caps: Mapping[str, NodeCapacity]) -> None:
        """Issue 16: place the protected set and the tail once per epoch and routable set
        (as `place`), from the admission's aged scores; nothing scored yet: next tick."""
        adm = self.admission
        if adm is None:
            return
        epoch = (cut // EPOCH_MS, view.routable)
        if epoch != self._placed or not self.homes:
            # A new epoch is placed as of its first cut, which every peer read (a peer that
            # skipped it read it back), not of the cut this peer happens to tick at; a retry
            # or a change of the routable nodes, or nothing scored by the epoch's first cut
            # (this peer started since), as of now.
            new_epoch = self._placed is None or self._placed[0] != epoch[0]
            self._placed = epoch
            slots = {n: c.slots for n, c in caps.items()}
            at = cut - cut % EPOCH_MS if new_epoch else cut
            got = adm.place(view.routable, view.candidates, slots, at=at)
            if not got.homes and at != cut:
                adm.place(view.routable, view.candidates, slots, at=cut)
        if adm.admitted is not self._applied:
            # placed now, or taken from another peer since the last tick (`offer`)
            self._applied = adm.admitted
            self.homes = dict(adm.admitted.homes)
            self.tail = adm.admitted.tail

    def _ask_while_young(self, adm: Admission, cut: int) -> None:
        """Ask for a push-pull (`take_push_pull`) a tick into each epoch (`ASK_AFTER_MS`;
        at once in the epoch this peer started in) while this peer is young and holds no
        placement for the epoch from a peer that read the whole window; again every
        `ASK_AGAIN_MS` while none comes, at most `ASKS_PER_EPOCH` times.

        Why: a young peer's placement ranks after every such peer's and may differ from
        theirs (its fewer cuts); the regular push-pull (every 30 s, at its own phase) brings
        theirs up to an epoch late. Asked for, it comes a tick or two into the epoch
        (docs/routing.md, "After a restart"). Not while the window holds no load: an idle
        cluster has no placement to agree on."""
        if not adm.young_at(cut) or not adm.loaded:
            return
        epoch = cut // EPOCH_MS
        placed = adm.placed
        if placed is not None and placed.epoch == epoch and not placed.young:
            return  # taken from a peer that read the whole window: nothing to ask for
        asked_epoch, asked, last = self._asked
        if asked_epoch != epoch:
            asked = 0
        due = cut % EPOCH_MS >= ASK_AFTER_MS if asked == 0 else cut - last >= ASK_AGAIN_MS
        if asked >= ASKS_PER_EPOCH or not due:
            return
        self._asked = (epoch, asked + 1, cut)
        self._ask = True

    def take_push_pull(self) -> bool:
        """Whether this peer wants a push-pull with another peer now, out of gossip's turn
        (drained): asked while young, once or a few times an epoch (`_ask_while_young`)."""
        ask, self._ask = self._ask, False
        return ask

    def offer(self, wire: WirePlacement, routable: Sequence[str], now_ms: int) -> bool:
        """Another peer's placement from push-pull: taken when it placed over the nodes
        this peer routes to and ranks first (`Admission.offer`; `now_ms`, the wall clock,
        dates it before this peer's first tick); the router gets it at the next tick."""
        adm = self.admission
        if adm is None or wire.nodes != tuple(routable):
            return False
        admitted = Admitted(dict(wire.homes), wire.tail)
        placed = Placed(wire.epoch, wire.nodes, wire.origin, wire.young, admitted)
        return adm.offer(placed, now_ms // EPOCH_MS)

    def placement_report(self) -> dict[str, Any] | None:
        """For `GET /1/lb/cluster`: the protected set and the tail's nodes, and once it has
        placed or taken a placement, its epoch, its line's origin, whether it was
        placed from less than the scores' window, and its digest (equal digests: peers agree
        on the placement). None: admission off."""
        adm = self.admission
        if adm is None:
            return None
        report = adm.admitted.as_dict()
        placed = adm.placed
        if placed is not None:
            report["epoch"] = placed.epoch
            report["origin"] = placed.origin
            report["young"] = placed.young
            report["digest"] = placed.digest.hex()
        return report

    def placement_map(self) -> dict[str, Any] | None:
        """This peer's last placement for its push-pull state (None: none to send)."""
        placed = self.admission.placed if self.admission is not None else None
        if placed is None:
            return None
        a = placed.admitted
        return placement_map(
            placed.epoch, placed.origin, placed.young, placed.nodes, a.tail, a.homes
        )


class _Placeable(Protocol):
    routable: tuple[str, ...]

    def candidates(self, key: str) -> Sequence[str]: ...
