"""The Prometheus families of calls, health checks, write acks, gossip messages and traces.

Read at scrape time from the plain counters the request path, the health checker, the cluster
service and the gossip member keep (fnlb.observe.calls and their own modules); nothing here
runs per call. docs/observability.md lists every family with its labels and meaning.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fnlb import __version__
from fnlb.gossip import codec
from fnlb.observe.calls import (
    ERROR_REASONS,
    HOLD_OUTCOMES,
    OUTCOMES,
    RETRY_REASONS,
    STATUS_CLASSES,
    CallTotals,
)
from fnlb.observe.histogram import Histogram
from fnlb.observe.zipkin import ZipkinExporter
from fnlb.peer.core import Peer
from fnlb.shell.cluster import ClusterService


class ObservedCollector(Collector):
    """The families of fnlb.observe, read at scrape time (see the module docstring)."""

    def __init__(
        self,
        calls: CallTotals,
        peer: Peer,
        cluster: ClusterService | None,
        zipkin: ZipkinExporter | None,
        routing: str,
    ) -> None:
        self._calls_seen = calls
        self._peer = peer
        self._cluster = cluster
        self._zipkin = zipkin
        self._routing = routing

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "fnlb_build_info",
            "always 1; the labels say which fnlb runs",
            labels=["version", "python", "routing"],
        )
        info.add_metric([__version__, platform.python_version(), self._routing], 1)
        yield info
        yield from self._calls()
        yield from self._health()
        cluster = self._cluster
        if cluster is not None:
            acks = CounterMetricFamily(
                "fnlb_write_acks",
                "node-list changes by how -write-acks went: held by enough peers, short of "
                "them (answered 503), or not needed (-write-acks=0 or no other live peer)",
                labels=["outcome"],
            )
            for outcome, n in sorted(cluster.write_acks.items()):
                acks.add_metric([outcome], n)
            yield acks
            runtime = cluster.runtime
            if runtime is not None and runtime.started:
                messages = CounterMetricFamily(
                    "fnlb_gossip_messages",
                    "gossip datagram messages sent and received, by type",
                    labels=["direction", "type"],
                )
                member = runtime.member
                for code, n in sorted(member.sent.items()):
                    messages.add_metric(["sent", _CODE_NAMES.get(code, str(code))], n)
                for kind, n in sorted(member.received.items()):
                    messages.add_metric(["received", _snake(kind)], n)
                yield messages
        exporter = self._zipkin
        if exporter is not None:
            spans = CounterMetricFamily(
                "fnlb_trace_spans",
                "spans for -zipkin: sent, dropped (queue full), failed (collector refused "
                "or unreachable)",
                labels=["result"],
            )
            for result in ("sent", "dropped", "failed"):  # -workers N: theirs too
                n = exporter.spans[result] + self._calls_seen.worker_spans(result)
                spans.add_metric([result], n)
            yield spans

    def _calls(self) -> Iterator[Metric]:
        obs = self._calls_seen.merged(self._peer.view.states)
        calls = CounterMetricFamily(
            "fnlb_calls",
            "calls answered, by node (none: no node tried), status class and routing "
            "outcome (home, spread, spill, retry, none)",
            labels=["node", "code", "routing"],
        )
        duration = HistogramMetricFamily(
            "fnlb_call_duration_seconds",
            "whole calls: from arrival to the answer's last byte or fnlb's own error",
            labels=["node"],
        )
        first_byte = HistogramMetricFamily(
            "fnlb_upstream_first_byte_seconds",
            "from sending a call to a node to the answer's headers",
            labels=["node"],
        )
        wait = HistogramMetricFamily(
            "fnlb_call_wait_seconds",
            "wait to start a call, from the node's Xxx-Fxlb-Wait answer header",
            labels=["node"],
        )
        retries = CounterMetricFamily(
            "fnlb_retries",
            "attempts that moved their call to the next node, by the node left and why: "
            "connect (failover from a node that cannot be reached), busy (503 before the call "
            "started), disconnect (closed before any answer to an idempotent call)",
            labels=["node", "reason"],
        )
        for node, rec in sorted(obs.nodes.items()):
            for c, cls in enumerate(STATUS_CLASSES):
                for o, outcome in enumerate(OUTCOMES):
                    n = rec.calls[c * len(OUTCOMES) + o]
                    if n:
                        calls.add_metric([node, cls, outcome], n)
            for family, hist in (
                (duration, rec.duration),
                (first_byte, rec.first_byte),
                (wait, rec.wait),
            ):
                _add_histogram(family, [node], hist)
            for r, reason in enumerate(RETRY_REASONS):
                retries.add_metric([node, reason], rec.retries[r])
        errors = CounterMetricFamily(
            "fnlb_call_errors",
            "calls fnlb answered itself: no_node (503), all_failed (502), "
            "failed_after_start (502, never resent), client_gone (499)",
            labels=["reason"],
        )
        for reason in ERROR_REASONS:
            errors.add_metric([reason], obs.errors[reason])
        holds = CounterMetricFamily(
            "fnlb_warm_wait_holds",
            "calls -warm-wait held rather than make a node start a container, by how the hold "
            "ended: released (a call of the function there finished), expired (sent at the "
            "maximum hold), gone (the client left), drained (shutdown)",
            labels=["outcome"],
        )
        for outcome in HOLD_OUTCOMES:
            holds.add_metric([outcome], obs.holds[outcome])
        hold_s = CounterMetricFamily(
            "fnlb_warm_wait_hold_seconds", "seconds calls were held by -warm-wait, in all"
        )
        hold_s.add_metric([], obs.hold_s)
        yield from (calls, duration, first_byte, wait, retries, errors, holds, hold_s)

    def _health(self) -> Iterator[Metric]:
        peer = self._peer
        checks = CounterMetricFamily(
            "fnlb_health_checks",
            "health check results by node: ok, fail, passive_fail (a call could not connect)",
            labels=["node", "result"],
        )
        for (node, result), n in sorted(peer.check_results.items()):
            checks.add_metric([node, result], n)
        yield checks
        changes = CounterMetricFamily(
            "fnlb_node_state_changes",
            "changes of this peer's health verdict on a node, by the state entered",
            labels=["node", "state"],
        )
        for (node, state), n in sorted(peer.state_changes.items()):
            changes.add_metric([node, state], n)
        yield changes


_CODE_NAMES = {
    codec.PING: "ping",
    codec.INDIRECT_PING: "indirect_ping",
    codec.ACK: "ack",
    codec.NACK: "nack",
    codec.SUSPECT: "suspect",
    codec.ALIVE: "alive",
    codec.DEAD: "dead",
    codec.USER: "user_broadcast",
    codec.USER_DIRECT: "user_direct",
}


def _snake(name: str) -> str:
    """A message class's name as the `type` label: IndirectPing -> indirect_ping."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _add_histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, hist.cumulative(), hist.sum)
