"""One rule by which every peer derives the same routable set from everyone's health verdicts.

Rule 1: no asyncio, socket, time or random here. Rule 2: inputs carry their stamps; outputs
are returned.

Each peer checks every node itself (the original's active checks, plus a passive failure from
the proxy) and gossips its own verdict per node: online or offline, stamped with the peer's
hybrid logical clock so the newest verdict of a peer wins wherever it arrives.

The cluster verdict of a node is **offline when a strict majority of the live peers say
offline**; online otherwise (a tie keeps it online); unknown while no live peer's verdict on it
is held. A live peer whose verdict is not held here counts as online: a peer's first verdict
"online" is not broadcast (fnlb.cluster.state, `_issue_verdict`), since at a cluster's start
that was N x nodes broadcasts each relayed by every peer, and it says nothing a peer does not
presume. So only "offline" verdicts, and the "online" that replaces one, travel at once; a
minority calling a node offline cannot take it out on a peer that has not heard the others'
"online". All peers that hold the same offline verdicts and agree on who is alive compute the
same cluster verdicts, so they agree on which nodes are routable.

Speed without a single point of failure comes from confirmation: a peer that hears a remote
"offline" for a node it still believes online re-checks that node at once (the runtime does
this). A dead node is then confirmed by every peer within one check round-trip plus one gossip
hop — well under a second — while a node that only one peer cannot reach is re-checked by the
others, found healthy, and stays in the cluster's routable set. That one peer still avoids it:
**a peer never routes to a node its own latest verdict calls offline** (local exclusion), so its
own network trouble costs it a detour, not the cluster a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

ClusterState = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One peer's latest word on one node; `stamp` orders a peer's own verdicts."""

    online: bool
    stamp: int


class VerdictTable:
    """Latest verdict per (peer, node), merged idempotently in any order."""

    __slots__ = ("_by_node",)

    def __init__(self) -> None:
        self._by_node: dict[str, dict[str, Verdict]] = {}

    def merge(self, peer: str, node: str, verdict: Verdict) -> bool:
        """Keep `verdict` if it is newer than what we hold from `peer`; True if it changed."""
        peers = self._by_node.setdefault(node, {})
        held = peers.get(peer)
        if held is not None and held.stamp >= verdict.stamp:
            return False
        peers[peer] = verdict
        return held is None or held.online != verdict.online

    def verdict(self, peer: str, node: str) -> Verdict | None:
        return self._by_node.get(node, {}).get(peer)

    def verdicts(self, node: str) -> Mapping[str, Verdict]:
        """Every peer's verdict on `node` (including peers no longer alive)."""
        return self._by_node.get(node, {})

    def items(self) -> Iterable[tuple[str, Mapping[str, Verdict]]]:
        """(node, {peer: verdict}) for every node with verdicts."""
        return self._by_node.items()

    def of_peer(self, peer: str) -> dict[str, Verdict]:
        """What `peer` says of each node: its share of a push-pull state."""
        return {n: v[peer] for n, v in self._by_node.items() if peer in v}

    def forget_node(self, node: str) -> None:
        """The node left the node list: its verdicts go too."""
        self._by_node.pop(node, None)

    def forget_peer(self, peer: str) -> None:
        """A peer left the cluster for good: its verdicts no longer count anywhere."""
        for peers in self._by_node.values():
            peers.pop(peer, None)

    def cluster_state(self, node: str, alive: Iterable[str] | frozenset[str]) -> ClusterState:
        """The cluster verdict of `node`: every peer in `alive` votes, "online" unless its
        verdict held says offline (the module docstring says why); "unknown" while no live
        peer's verdict is held."""
        alive_set = alive if isinstance(alive, frozenset) else frozenset(alive)
        offline = voters = 0
        for peer, v in self._by_node.get(node, {}).items():
            if peer in alive_set:
                voters += 1
                offline += not v.online
        if voters == 0:
            return "unknown"
        return "offline" if 2 * offline > len(alive_set) else "online"

    def states(self, nodes: Iterable[str], alive: Iterable[str]) -> dict[str, ClusterState]:
        """The cluster verdict of each node in `nodes`."""
        alive_set = frozenset(alive)
        return {n: self.cluster_state(n, alive_set) for n in nodes}

    def locally_excluded(self, me: str, nodes: Iterable[str]) -> frozenset[str]:
        """Nodes this peer's own latest verdict calls offline: it alone avoids them."""
        return frozenset(
            n for n in nodes if (v := self.verdict(me, n)) is not None and not v.online
        )
