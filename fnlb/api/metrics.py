"""Prometheus metrics of one fnlb process: `GET /metrics` on the management port.

Nothing here runs on the request path: a custom collector reads, at scrape time, what fnlb
keeps anyway (the node view, the load figures, the gossip counters), so serving calls costs
no metric updates. The node, scale and gossip families are declared here; the call, health
check, write-ack, gossip message and trace families in fnlb.observe.prom (a layer above,
handed in as `collectors`), with the process and platform collectors of prometheus_client.
docs/observability.md lists them all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fnlb.peer.core import Peer
from fnlb.shell.cluster import ClusterService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BalancerCollector(Collector):
    def __init__(self, peer: Peer, cluster: ClusterService | None) -> None:
        self._peer = peer
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        peer = self._peer
        cluster = self._cluster
        gossip = cluster.runtime if cluster is not None else None
        now = time.time()
        states = GaugeMetricFamily(
            "fnlb_nodes", "Fn nodes by this peer's routing state", labels=["state"]
        )
        counts = {"online": 0, "offline": 0, "unknown": 0}
        for node_state in peer.view.states.values():
            counts[node_state] += 1
        for label, n in counts.items():
            states.add_metric([label], n)
        yield states

        in_flight = GaugeMetricFamily(
            "fnlb_node_in_flight", "calls this peer has in flight on each node", labels=["node"]
        )
        rate = GaugeMetricFamily(
            "fnlb_node_calls_per_second", "calls/s this peer sends each node", labels=["node"]
        )
        for node in peer.view.states:
            share = peer.local.node_load(node, now)
            in_flight.add_metric([node], share.in_flight)
            rate.add_metric([node], share.rate)
        yield in_flight
        yield rate

        decision = peer.decision
        if decision is not None:
            yield _gauge("fnlb_scale_desired_nodes", "Fn nodes the load needs", decision.desired)
            yield _gauge("fnlb_scale_current_nodes", "Fn nodes routable now", decision.current)
            yield _gauge(
                "fnlb_scale_needed_containers",
                "containers the load needs",
                decision.needed_containers,
            )
            yield _gauge("fnlb_scale_panic", "1 while in the 6 s panic window", int(decision.panic))
            rec = GaugeMetricFamily(
                "fnlb_scale_recommendation",
                "1 for the current recommendation (out, in, hold); identical on every peer",
                labels=["direction"],
            )
            for direction in ("out", "in", "hold"):
                rec.add_metric([direction], int(decision.recommendation == direction))
            yield rec
            demand = GaugeMetricFamily(
                "fnlb_scale_demand_nodes", "demand in nodes over each window", labels=["window"]
            )
            demand.add_metric(["stable"], decision.stable_nodes)
            demand.add_metric(["panic"], decision.panic_nodes)
            yield demand

        if gossip is not None and gossip.started:
            peers = GaugeMetricFamily("fnlb_peers", "gossip members by state", labels=["state"])
            by_state: dict[str, int] = {}
            for m in gossip.members():
                name = m.state.name.lower()
                by_state[name] = by_state.get(name, 0) + 1
            for peer_state, n in sorted(by_state.items()):
                peers.add_metric([peer_state], n)
            yield peers
            drops = CounterMetricFamily(
                "fnlb_gossip_dropped", "gossip input dropped, by reason", labels=["reason"]
            )
            for reason, n in sorted({**gossip.all_drops(), **peer.drops}.items()):
                drops.add_metric([reason], n)
            yield drops
            # one unit per family (Prometheus: never sum packets with bytes)
            wire = gossip.traffic
            packets = CounterMetricFamily(
                "fnlb_gossip_packets", "gossip UDP datagrams", labels=["direction"]
            )
            wire_bytes = CounterMetricFamily(
                "fnlb_gossip_bytes",
                "gossip bytes on the wire, envelopes included",
                labels=["proto", "direction"],
            )
            streams = CounterMetricFamily(
                "fnlb_gossip_streams",
                "gossip TCP streams (push-pull, stream pings) opened and served",
                labels=["side"],
            )
            for direction in ("sent", "received"):
                packets.add_metric([direction], wire[f"udp_packets_{direction}"])
                for proto in ("udp", "tcp"):
                    wire_bytes.add_metric([proto, direction], wire[f"{proto}_bytes_{direction}"])
            for side in ("opened", "served"):
                streams.add_metric([side], wire[f"tcp_streams_{side}"])
            yield packets
            yield wire_bytes
            yield streams


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def metrics_handler(
    peer: Peer, cluster: ClusterService | None, collectors: Iterable[Collector] = ()
) -> Callable[[web.Request], Awaitable[web.Response]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BalancerCollector(peer, cluster))
    for extra in collectors:  # e.g. fnlb.observe.prom's call figures (a layer above)
        registry.register(extra)
    # the process's CPU, memory and file descriptors, Python's version and garbage collector
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    return handler
