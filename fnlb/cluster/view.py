"""The immutable picture of the Fn nodes that the request path reads.

Whoever owns node membership and health publishes a new `NodeView` by swapping one reference;
the proxy reads `registry.view` once per request, with no lock and no await, and asks it for a
key's candidates. Two peers holding equal views order every key alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from fnlb.health.verdict import State
from fnlb.routing.rendezvous import RendezvousTable

_MAX_CACHED_ORDERS = 65536


class NodeView:
    """Nodes, their states and the routable set at one version.

    Routable: the online nodes. While no node is online but some are still `unknown` (just
    added, first check pending), those are routable instead, so the first calls after a start
    are served rather than refused; a dead one fails to connect and the call moves on.
    """

    __slots__ = ("_orders", "_table", "routable", "states", "version")

    def __init__(self, version: int, states: Mapping[str, State]) -> None:
        self.version = version
        self.states: Mapping[str, State] = MappingProxyType(dict(sorted(states.items())))
        online = [n for n, s in self.states.items() if s == "online"]
        if not online:
            online = [n for n, s in self.states.items() if s == "unknown"]
        self._table = RendezvousTable(online)
        self.routable: tuple[str, ...] = self._table.nodes
        self._orders: dict[str, list[str]] = {}

    def candidates(self, key: str) -> list[str]:
        """The routable nodes in `key`'s preference order (memoised per view)."""
        order = self._orders.get(key)
        if order is None:
            if len(self._orders) >= _MAX_CACHED_ORDERS:
                self._orders.clear()
            order = self._orders[key] = self._table.order(key)
        return order
