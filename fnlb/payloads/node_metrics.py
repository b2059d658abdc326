"""Gossip payload: one node's /metrics reading (kind "m" of the cluster envelope).

Schema version 1 (implicit: the six-field array is the whole schema; a change of shape gets a
new envelope kind): `[queued, running, mem_used, mem_avail, busy, at_ms]`, the five Fn
figures (calls, calls, bytes, bytes, 503s so far) and the reader's wall clock in ms (the
newest reading of a node wins everywhere). Sent inside `["m", node, reading]` by the node's
reporter peer only (fnlb.cluster.state). `metrics_from_wire` returns None for anything else.

What the figures mean and how they are read from Fn's page: fnlb.health.fn_metrics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One reading of one node; `at_ms` is the reader's wall clock (newest reading wins)."""

    queued: float
    running: float
    mem_used: float
    mem_avail: float
    busy: float
    at_ms: int

    @property
    def mem_fraction(self) -> float:
        """Share of the node's container memory in use, 0..1 (0 when it reports none)."""
        total = self.mem_used + self.mem_avail
        return self.mem_used / total if total > 0 else 0.0

    def to_wire(self) -> list[float | int]:
        return [self.queued, self.running, self.mem_used, self.mem_avail, self.busy, self.at_ms]


def metrics_from_wire(data: object) -> NodeMetrics | None:
    """A reading a peer sent; None when malformed (the caller counts the drop)."""
    if not isinstance(data, list) or len(data) != 6:
        return None
    *figures, at_ms = data
    if not isinstance(at_ms, int) or at_ms < 0:
        return None
    if not all(isinstance(v, int | float) and 0 <= v < 1e18 for v in figures):
        return None
    q, r, used, avail, busy = (float(v) for v in figures)
    return NodeMetrics(q, r, used, avail, busy, at_ms)
