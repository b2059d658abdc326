"""A record of node-list changes made through fnlb's API, and the list they must lead to.

"Nothing acknowledged was lost": every PUT or DELETE /1/lb/nodes that a peer answered with
200 must show in every peer's node list once the cluster has converged, whatever partition
or crash happened meanwhile. Scenarios make their changes through a NodeChangeLog, which
keeps each change with its outcome and time, and then compare every peer's list with
`expected()`.

Changes are ordered by when they were acknowledged. Two acknowledged changes of the same node
made on different sides of a partition are ordered by fnlb's clocks, not ours, so a scenario
should change a given node on one side only (`conflicts()` finds the ones that did not).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from harness.netns import Host

Op = Literal["add", "delete"]


@dataclass(frozen=True, slots=True)
class NodeChange:
    op: Op
    node: str
    via: str  # the management address (peer) it was sent to
    at: float  # time.monotonic() when the answer came
    acknowledged: bool  # answered 200
    detail: str = ""  # status or error when not acknowledged


def expected_nodes(initial: Iterable[str], changes: Iterable[NodeChange]) -> set[str]:
    """The node list after every acknowledged change, applied in the order they were acked."""
    nodes = set(initial)
    for change in sorted((c for c in changes if c.acknowledged), key=lambda c: c.at):
        if change.op == "add":
            nodes.add(change.node)
        else:
            nodes.discard(change.node)
    return nodes


def conflicting(changes: Iterable[NodeChange]) -> set[str]:
    """Nodes with acknowledged changes through more than one peer (order not ours to know)."""
    via: dict[str, set[str]] = {}
    for c in changes:
        if c.acknowledged:
            via.setdefault(c.node, set()).add(c.via)
    return {node for node, peers in via.items() if len(peers) > 1}


@dataclass
class NodeChangeLog:
    """Make node changes from `observer` and remember each one's outcome."""

    observer: Host
    changes: list[NodeChange] = field(default_factory=list)

    def add(self, mgmt: str, node: str) -> bool:
        """PUT the node on the peer at `mgmt`; True if it was acknowledged (200)."""
        return self._change("add", "PUT", mgmt, node)

    def delete(self, mgmt: str, node: str) -> bool:
        """DELETE the node on the peer at `mgmt`; True if it was acknowledged (200)."""
        return self._change("delete", "DELETE", mgmt, node)

    def _change(self, op: Op, method: str, mgmt: str, node: str) -> bool:
        body = json.dumps({"node": node}).encode()
        try:
            reply = self.observer.http(method, mgmt, "/1/lb/nodes", body=body, timeout=10.0)
            ok, detail = reply.status == 200, f"HTTP {reply.status}"
        except OSError as e:
            ok, detail = False, f"{type(e).__name__}: {e}"
        self.changes.append(NodeChange(op, node, mgmt, time.monotonic(), ok, detail))
        return ok

    def acknowledged(self) -> list[NodeChange]:
        return [c for c in self.changes if c.acknowledged]

    def expected(self, initial: Iterable[str]) -> set[str]:
        return expected_nodes(initial, self.changes)

    def conflicts(self) -> set[str]:
        return conflicting(self.changes)
