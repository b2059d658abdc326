"""The once-a-second tick that turns load figures into routing widths and the scale signal.

Every `TICK_S`, at a wall-clock cut aligned to the second (so every peer reads the same
settled digests, docs/load-model.md), the feed reads the cluster's load: the hottest functions'
width inputs go to the `WidthTracker` (hot-set widths, identical on every peer), the demand
in containers goes to the `ScaleSignal` (desired nodes, out/in/hold, identical on every peer),
and, when `--routing=hotset`, the router gets the new widths, the other peers' in-flight
counts, the gossiped back-off and each node's capacity from its own `/metrics` (read with the
health checks, shared by gossip). A lone fnlb runs the same tick over its own figures only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container, Mapping
from typing import Final

from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.view import NodeView
from fnlb.health.node_metrics import NodeMetrics
from fnlb.routing.backoff import pack_entries
from fnlb.routing.hotset import WidthTracker, aligned_cut
from fnlb.routing.placement import EPOCH_MS, place
from fnlb.routing.router import NodeCapacity, Router
from fnlb.routing.scale import ScaleDecision, ScaleSignal, containers_needed

log = logging.getLogger("fnlb.feed")

TICK_S: Final = 1.0
DIGEST_S: Final = 0.3
HOT_FUNCTIONS: Final = 256
SLOTS_PER_NODE: Final = 8
"""Containers an Fn node holds (1024 MB / 128 MB, Fn's defaults); the unit of capacity."""
CONTAINER_BYTES: Final = 128 * 1024 * 1024
"""Memory of one container when the node does not say (Fn's default function memory)."""
METRICS_STALE_MS: Final = 15_000
"""A node's /metrics reading older than this (5 default check intervals) is not used."""

SendBackoff = Callable[[bytes], None]
NodeReadings = Callable[[], Mapping[str, NodeMetrics]]


def node_capacity(reading: NodeMetrics) -> NodeCapacity:
    """What a node can hold, from its own /metrics: its container memory in slots of Fn's
    default 128 MB, and the share of those slots its running calls hold now.

    Neither memory held by *idle* containers nor queued calls count as "used": Fn evicts
    idle containers to start new ones, and a node full of warm containers is exactly where
    its functions should go; queued calls mostly wait for a container start (300 ms), and
    under memory pressure every node has some, so counting them sent calls away from their
    warm homes to start yet more containers (bench/routing, Zipf 1.1 at 80 calls/s: 2.2
    nodes per function). A node whose slots all run calls cannot start a call sooner.
    """
    total = reading.mem_used + reading.mem_avail
    slots = max(1, round(total / CONTAINER_BYTES)) if total > 0 else SLOTS_PER_NODE
    return NodeCapacity(slots, min(1.0, reading.running / slots))


def capacities(
    readings: Mapping[str, NodeMetrics], routable: Container[str], now_ms: int
) -> dict[str, NodeCapacity]:
    """`node_capacity` of every routable node with a fresh reading."""
    return {
        node: node_capacity(m)
        for node, m in readings.items()
        if node in routable and now_ms - m.at_ms <= METRICS_STALE_MS
    }


class LoadFeed:
    def __init__(
        self,
        load: ClusterLoad,
        local: LocalLoad,
        view: Callable[[], NodeView],
        *,
        router: Router | None = None,
        own_digests_as: str = "",
        send_backoff: SendBackoff | None = None,
        node_readings: NodeReadings | None = None,
    ) -> None:
        """`own_digests_as`: a lone fnlb merges its own digests (a cluster peer's service
        does that while gossiping them). `send_backoff`: gossips the router's back-off.
        `node_readings`: the nodes' newest /metrics readings (the registry's)."""
        self.load = load
        self.local = local
        self._view = view
        self.router = router
        self._own = own_digests_as
        self._send_backoff = send_backoff
        self._readings = node_readings
        self.widths = WidthTracker()
        self.scale = ScaleSignal()
        self.homes: dict[str, str] = {}
        """Placed homes of the hottest functions, as of the last placement (`tick`)."""
        self._placed: tuple[int, tuple[str, ...]] | None = None  # (epoch, routable) placed for
        self._task: asyncio.Task[None] | None = None

    @property
    def decision(self) -> ScaleDecision | None:
        return self.scale.decision

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # stop()'s own cancel stays

    async def _run(self) -> None:
        last_tick = 0.0
        while True:
            await asyncio.sleep(DIGEST_S if self._own else TICK_S)
            now = time.time()
            if self._own:
                stamp = int(now * 1000)
                self.load.merge(self._own, self.local.digest(now, stamp_ms=stamp), now)
            if now - last_tick >= TICK_S:
                last_tick = now
                try:
                    self.tick(now)
                except Exception:  # a bug here must not stop routing: log it and go on
                    log.exception("load feed tick failed")

    def tick(self, now: float) -> None:
        """One tick at wall-clock `now` (seconds)."""
        cut = aligned_cut(int(now * 1000))
        view = self._view()
        table = self.load.width_table(HOT_FUNCTIONS, now, settled_ms=cut)
        self.widths.update(cut, table, len(view.routable))
        need = containers_needed(
            ((w.rate, w.in_flight) for w in table.values()),
            self.load.summary(now, hot=0, settled_ms=cut).in_flight,
        )
        self.scale.update(cut, need, len(view.routable), SLOTS_PER_NODE)
        if self._own:
            self.local.sweep(now, limit=1000)
            self.load.expire(now)
        router = self.router
        if router is None:
            return
        others = {
            n: max(0, self.load.node_load(n, now).in_flight - self.local.node_in_flight(n))
            for n in view.routable
        }
        caps = None
        if self._readings is not None:
            caps = capacities(self._readings(), set(view.routable), int(now * 1000))
        epoch = (cut // EPOCH_MS, view.routable)
        # A placement from no settled load at all (a peer just started, or load just began)
        # placed nothing: try again next tick rather than route unplaced for the whole epoch.
        # Every peer reads the same settled cut, so they place at the same tick.
        if epoch != self._placed or not self.homes:
            self._placed = epoch
            self.homes = place({key: w.rate for key, w in table.items()}, view.candidates)
        router.update(
            widths=self.widths.widths, peers_in_flight=others, capacity=caps, homes=self.homes
        )
        router.backoff.expire(now)
        if self._send_backoff is not None:
            for message in pack_entries(router.backoff.take_updates()):
                self._send_backoff(message)
