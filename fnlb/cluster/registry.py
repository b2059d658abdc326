"""The node list and health verdicts of one fnlb process, published as a `NodeView`.

Changes come from the management API (add/remove), from active health checks and from the
proxy's passive failures. Each change that alters a state publishes a new view; listeners
(the health checker) hear about added and removed nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from fnlb.cluster.view import NodeView
from fnlb.health.node_metrics import NodeMetrics
from fnlb.health.verdict import NodeHealth, after_check

log = logging.getLogger("fnlb.nodes")

Listener = Callable[[str, bool], None]


class NodeDirectory(Protocol):
    """What the proxy, the health checker and the API need of whoever owns the node list.

    `NodeRegistry` is the single-process one; `fnlb.cluster.service.ClusterService` the one
    shared by gossip.
    """

    @property
    def view(self) -> NodeView: ...

    def nodes(self) -> list[str]: ...

    def health(self, node: str) -> NodeHealth | None: ...

    def record_check(self, node: str, ok: bool, error: str = "") -> None: ...

    def on_change(self, listener: Listener) -> None: ...

    def record_metrics(self, node: str, metrics: NodeMetrics) -> None:
        """A reading of the node's own /metrics (memory, queue), taken with a health check."""
        ...

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        """The newest reading of each node (replaced, never mutated: read it without locks)."""
        ...

    async def put(self, node: str) -> dict[str, Any]:
        """Add `node`; the JSON answer of PUT /1/lb/nodes once the change is kept."""
        ...

    async def delete(self, node: str) -> dict[str, Any]:
        """Remove `node`; the JSON answer of DELETE /1/lb/nodes once the change is kept."""
        ...


class NodeRegistry:
    """Single-process node membership and health (the original fnlb's `allGrouper`)."""

    def __init__(self, *, healthy: int, unhealthy: int, nodes: Iterable[str] = ()) -> None:
        self._healthy = healthy
        self._unhealthy = unhealthy
        self._health: dict[str, NodeHealth] = {}
        self._listeners: list[Listener] = []
        self._version = 0
        self.view = NodeView(0, {})
        self._metrics: Mapping[str, NodeMetrics] = MappingProxyType({})
        for node in nodes:
            self.add(node)

    def on_change(self, listener: Listener) -> None:
        """Call `listener(node, added)` whenever a node is added (True) or removed (False)."""
        self._listeners.append(listener)

    def nodes(self) -> list[str]:
        return sorted(self._health)

    def health(self, node: str) -> NodeHealth | None:
        return self._health.get(node)

    def add(self, node: str) -> bool:
        """Add a node in state unknown; False if it was already there."""
        if node in self._health:
            return False
        self._health[node] = NodeHealth()
        self._publish()
        log.info("node added", extra={"node": node})
        for listener in self._listeners:
            listener(node, True)
        return True

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        return self._metrics

    def record_metrics(self, node: str, metrics: NodeMetrics) -> None:
        if node in self._health:
            self._metrics = MappingProxyType({**self._metrics, node: metrics})

    async def put(self, node: str) -> dict[str, Any]:
        self.add(node)
        return {"msg": "node added"}

    async def delete(self, node: str) -> dict[str, Any]:
        self.remove(node)
        return {"msg": "node deleted"}

    def remove(self, node: str) -> bool:
        """Remove a node; False if it was not there."""
        if self._health.pop(node, None) is None:
            return False
        self._metrics = MappingProxyType({n: m for n, m in self._metrics.items() if n != node})
        self._publish()
        log.info("node removed", extra={"node": node})
        for listener in self._listeners:
            listener(node, False)
        return True

    def record_check(self, node: str, ok: bool, error: str = "") -> None:
        """Feed one health result (active or passive) for a node still in the list."""
        old = self._health.get(node)
        if old is None:
            return
        new = after_check(old, ok, healthy=self._healthy, unhealthy=self._unhealthy, error=error)
        self._health[node] = new
        if new.state != old.state:
            log.info("node is %s", new.state, extra={"node": node, "error": error or None})
            self._publish()

    def _publish(self) -> None:
        self._version += 1
        self.view = NodeView(self._version, {n: h.state for n, h in self._health.items()})
