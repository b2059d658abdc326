"""`GET /metrics` of an emulated node: Fn's `fn_*` names, read from the model at scrape time.

Nothing is updated per call: a collector registered in the node's own CollectorRegistry
(several nodes share one process) reads the model's counters when scraped.

Fn exported through OpenCensus, whose names carry no `_total` suffix; prometheus_client
renames any counter to `<name>_total`. To keep Fn's names (`fn_calls`, not
`fn_calls_total`), the cumulative counts are published untyped and the levels as gauges.
fnsim's own figures follow today's conventions (`fnsim_cold_starts_total`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fnlb.fnsim.model import PoolStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MB = 1024 * 1024


def _untyped(name: str, doc: str, value: float) -> Metric:
    metric = Metric(name, doc, "unknown")
    metric.add_sample(name, {}, value)
    return metric


class PoolCollector(Collector):
    """Publishes one node's PoolStats; `stats` is called at each scrape."""

    def __init__(self, stats: Callable[[], PoolStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily("fn_queued", "calls waiting for a container", value=s.queued)
        yield GaugeMetricFamily("fn_running", "calls executing", value=s.running)
        yield _untyped("fn_calls", "calls received", s.calls)
        yield _untyped("fn_completed", "calls that finished executing", s.completed)
        yield _untyped("fn_server_busy", "calls answered 503 after waiting too long", s.server_busy)
        yield GaugeMetricFamily(
            "fn_util_mem_used", "memory held by containers, bytes", value=s.mem_used_mb * _MB
        )
        yield GaugeMetricFamily(
            "fn_util_mem_avail", "memory free for containers, bytes", value=s.mem_avail_mb * _MB
        )
        counters = (
            ("fnsim_cold_starts", "containers launched", s.cold_starts),
            ("fnsim_cold_calls", "calls that waited on their container's start", s.cold_calls),
            ("fnsim_hot_calls", "calls that started in a running container", s.hot_calls),
            ("fnsim_evictions", "idle containers destroyed to make room", s.evictions),
            ("fnsim_idle_expiries", "idle containers destroyed after the timeout", s.idle_expiries),
            ("fnsim_cancelled", "waiting calls withdrawn by their client", s.cancelled),
            ("fnsim_too_big", "calls refused: function larger than the node", s.too_big),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        containers = GaugeMetricFamily("fnsim_containers", "containers by state", labels=["state"])
        containers.add_metric(["idle"], s.containers_idle)
        containers.add_metric(["busy"], s.containers_busy)
        containers.add_metric(["starting"], s.containers_starting)
        yield containers


def new_registry(stats: Callable[[], PoolStats]) -> CollectorRegistry:
    """A registry of its own for one node, publishing `stats()`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(stats))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of a registry."""
    return generate_latest(registry)
