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


@dataclass(frozen=True, slots=True)
class Promise:
    """What acknowledged changes promise of a converged node list."""

    present: frozenset[str]  # must be in it
    absent: frozenset[str]  # must not be in it
    #: touched only by unacknowledged changes (or acked, then changed again unacked): the
    #: change may or may not have taken effect, either is correct
    undecided: frozenset[str]

    def broken_by(self, nodes: Iterable[str]) -> list[str]:
        """How `nodes` (a peer's list) breaks the promise; empty if it keeps it."""
        have = set(nodes)
        problems = [f"{n} acknowledged but missing" for n in sorted(self.present - have)]
        problems += [f"{n} deleted (acknowledged) but present" for n in sorted(self.absent & have)]
        return problems


def promised_nodes(initial: Iterable[str], changes: Iterable[NodeChange]) -> Promise:
    """What must hold after `changes` (in the order they were answered) on top of `initial`.

    A node's fate is the last acknowledged change to it; a change that was not acknowledged
    may have happened or not, so it makes its node undecided until an acknowledged change
    to that node comes after it.
    """
    state: dict[str, bool | None] = {node: True for node in initial}  # None: undecided
    for change in sorted(changes, key=lambda c: c.at):
        if change.acknowledged:
            state[change.node] = change.op == "add"
        else:
            state[change.node] = None
    return Promise(
        frozenset(n for n, s in state.items() if s is True),
        frozenset(n for n, s in state.items() if s is False),
        frozenset(n for n, s in state.items() if s is None),
    )


def expected_nodes(initial: Iterable[str], changes: Iterable[NodeChange]) -> set[str]:
    """The node list after every acknowledged change, when every change was acknowledged."""
    promise = promised_nodes(initial, changes)
    if promise.undecided:
        raise ValueError(f"unacknowledged changes leave {sorted(promise.undecided)} undecided")
    return set(promise.present)


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
        """The one right node list; ValueError if an unacknowledged change leaves doubt."""
        return expected_nodes(initial, self.changes)

    def promise(self, initial: Iterable[str]) -> Promise:
        """What every converged node list must and must not hold."""
        return promised_nodes(initial, self.changes)

    def conflicts(self) -> set[str]:
        return conflicting(self.changes)
