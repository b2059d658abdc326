"""The load tree: every peer's load summed up a tree of the live peers, the sum passed down.

Rule 1: no asyncio, socket, time or random here. Rule 2: every input carries `now` (seconds);
what to send is returned.

Why a tree (issue #11, defect 7): routing needs the cluster-wide load of the hot functions and
of each node, identically on every peer (docs/routing.md, the shared load model). Before, each
peer sent its digest to every other peer every 0.3 s: each peer received N - 1 digests per
period, so its gossip traffic grew with N (313 KB/s sent per peer at N=100). A reduction does
not need everyone's digest everywhere, only their sum: here each peer sends one digest up
(its own figures plus its children's subtrees, summed) and receives one down (the cluster's
sum), whatever N is. Per peer and period that is one digest up and, on average, one down
(a peer with children forwards the cluster sum to each of them: at most `FANOUT`).

The tree is the live peers sorted by name, as a heap: the peer at index i has the parent at
(i - 1) // FANOUT and the children at FANOUT * i + 1 .. FANOUT * i + FANOUT; the root is the
smallest name. Every peer computes it from its own membership view, so it needs no election
and no message of its own; a parent always sorts before its child, so even peers whose views
differ (a join or a death not yet heard of everywhere) can never make a cycle, only send to a
parent that does not count them as a child (it counts whatever child digests it receives) or
miss a cluster sum for one period. Depth: about log8 N levels, 4 at N=1,000.

Churn: a dead peer's subtree is missing from the sum until its children hear of the death and
re-attach (a gossip detection, ~2-3 s); a child digest older than CHILD_TTL_S is not counted,
so a child that moved to another parent is not counted twice for longer than that. A
partition: each side's tree has its own root (the smallest name it sees alive), which sums
what that side sees; after the heal the roots merge back into one tree, and readers take the
newest root's sum (`ClusterLoad(single_source=True)`), never two sums added.

Settled reads and loss: a settled read at cut c (fnlb.routing.widths) takes the newest sum
stamped at or before c, so every peer must hold that one sum. Before the tree a lost digest
was one peer's share of the load; here it is the whole cluster's, and one sum lost on its way
down (3 peers, 10 % loss: a peer's admission scored a different table and placed other homes)
made that peer alone read the sum before it. So each peer passing sums down sends the *cut
sum* (its last sum before a cut on the `CUT_GRID_MS` grid) again with the next `CUT_COPIES`
sums: a cut is read alike unless all of its copies are lost, for ~`CUT_COPIES` more digests
a second down each link (the traffic stays flat in N).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fnlb.cluster.load import ClusterLoad
from fnlb.payloads.load_digest import (
    GOSSIP_BUDGET_BYTES,
    MAX_IN_FLIGHT,
    MAX_RATE_C,
    UNATTRIBUTED,
    Digest,
    Lump,
    Row,
    decode_digest,
    encode_digest,
)

FANOUT: Final = 8
"""Children per peer: depth log8 N (4 levels below the root at N=1,000, where 4 children
made 5 and a hot function's sum took 3.2 s to be known everywhere, 2.0 s with 8), at most 8
forwards of the sum per period, so the busiest peer sends and receives about 9 digests a
period. Wider trees were only affordable once tree sends stopped carrying broadcasts
(fnlb.gossip.member `_send_to`)."""
CHILD_TTL_S: Final = 1.0
"""A child's subtree digest counts while younger than this (about three periods: one lost
datagram does not drop a subtree, a child that moved to another parent is not counted twice
for long)."""
CUT_GRID_MS: Final = 1000
"""The grid of the settled cuts (fnlb.peer.control_loop.CUT_MS, a test checks they agree)."""
CUT_COPIES: Final = 2
"""Times a cut sum is sent again down each link, with the sums that follow it."""


def tree_links(members: tuple[str, ...], name: str) -> tuple[str | None, tuple[str, ...]]:
    """(parent, children) of `name` in the tree over the sorted `members`."""
    try:
        i = members.index(name)
    except ValueError:
        return None, ()
    parent = members[(i - 1) // FANOUT] if i > 0 else None
    return parent, members[FANOUT * i + 1 : FANOUT * i + FANOUT + 1]


def is_idle(d: Digest) -> bool:
    """A digest that says nothing is going on."""
    return not (
        d.functions
        or d.totals
        or d.rest.rate_c
        or d.rest.in_flight
        or d.rest.busy_c
        or d.other_nodes.rate_c
        or d.other_nodes.in_flight
        or d.other_nodes.busy_c
        or any(row[:2] != (0, 0) or row[3] for row in d.nodes.values())
    )


class _Sum:
    """Integer sums of one row over several digests (exact, order-independent)."""

    __slots__ = ("busy_c", "in_flight", "rate_c", "wait_sum", "weight")

    def __init__(self) -> None:
        self.rate_c = self.in_flight = self.busy_c = self.wait_sum = self.weight = 0

    def add(self, row: Row) -> None:
        r, i, w, b = row
        self.rate_c += r
        self.in_flight += i
        self.busy_c += b
        self.wait_sum += w * max(r, 1)  # waits weigh by calls, as ClusterLoad sums them
        self.weight += max(r, 1)

    def row(self) -> Row:
        """The sum in wire units, clamped to what a digest may carry."""
        return (
            min(self.rate_c, MAX_RATE_C),
            min(self.in_flight, MAX_IN_FLIGHT),
            self.wait_sum // self.weight if self.weight else 0,
            min(self.busy_c, MAX_RATE_C),
        )


def sum_digests(
    digests: Iterable[Digest],
    *,
    epoch: int,
    seq: int,
    stamp_ms: int,
    budget: int = GOSSIP_BUDGET_BYTES,
) -> bytes:
    """One digest of at most `budget` bytes for the sum of `digests`.

    Per (function, node) figures are summed; a function some digest listed by its totals only
    keeps those under UNATTRIBUTED (listed by its totals). Nodes are summed; the lumps too.
    Totals stay whole: whatever does not fit is lumped, so the sum's totals equal the sum
    of the inputs' totals.
    """
    cells: dict[str, dict[str, _Sum]] = {}
    nodes: dict[str, _Sum] = {}
    other = [0, 0, 0, 0]
    totals = [0, 0, 0]
    count = 0
    for d in digests:
        for fn, per_node in d.functions.items():
            fc = cells.setdefault(fn, {})
            for node, row in per_node.items():
                s = fc.get(node)
                if s is None:
                    s = fc[node] = _Sum()
                s.add(row)
        for fn, row in d.totals.items():
            fc = cells.setdefault(fn, {})
            s = fc.get(UNATTRIBUTED)
            if s is None:
                s = fc[UNATTRIBUTED] = _Sum()
            s.add(row)
        for node, row in d.nodes.items():
            s = nodes.get(node)
            if s is None:
                s = nodes[node] = _Sum()
            s.add(row)
            totals[0] += row[0]
            totals[1] += row[1]
            totals[2] += row[3]
        o = d.other_nodes
        other[0] += o.count
        other[1] += o.rate_c
        other[2] += o.in_flight
        other[3] += o.busy_c
        totals[0] += o.rate_c
        totals[1] += o.in_flight
        totals[2] += o.busy_c
        count += len(d.functions) + len(d.totals) + d.rest.count
    ranked = sorted(
        ((fn, [(node, s.row()) for node, s in sorted(fc.items())]) for fn, fc in cells.items()),
        key=lambda item: (-sum(r[0] + 100 * r[1] for _n, r in item[1]), item[0]),
    )
    node_rows = sorted(
        ((n, s.row()) for n, s in nodes.items()),
        key=lambda item: (-(item[1][0] + 100 * item[1][1]), item[0]),
    )
    return encode_digest(
        epoch=epoch,
        seq=seq,
        functions=ranked,
        nodes=node_rows,
        totals=(totals[0], totals[1], 0, totals[2]),
        function_count=count,
        budget=budget,
        stamp_ms=stamp_ms,
        other_nodes=Lump(other[0], other[1], other[2], other[3]),
    )


class LoadTree:
    """This peer's place in the load tree and the latest subtree digests of its children."""

    __slots__ = (
        "_children",
        "_copy",
        "_last_down",
        "_legacy",
        "_links",
        "_members",
        "child_ttl_s",
        "name",
    )

    def __init__(self, name: str, *, child_ttl_s: float = CHILD_TTL_S) -> None:
        self.name = name
        self.child_ttl_s = child_ttl_s
        self._members: tuple[str, ...] = (name,)
        self._links: tuple[str | None, tuple[str, ...]] = (None, ())
        self._children = ClusterLoad(stale_after_s=child_ttl_s, in_flight_ttl_s=child_ttl_s)
        """Subtree digests received (from whoever counts us as their parent)."""
        self._legacy = ClusterLoad(stale_after_s=child_ttl_s, in_flight_ttl_s=child_ttl_s)
        """Digests of peers built before the tree, sent to every peer: only a root counts
        them, so each is counted once."""
        self._last_down: tuple[int, bytes] | None = None  # (stamp, message) last sent down
        self._copy: tuple[bytes, int] | None = None  # the cut sum's message, copies left

    def set_members(self, alive: Iterable[str]) -> None:
        """The live peers (this one included), as gossip says."""
        members = tuple(sorted(set(alive) | {self.name}))
        if members != self._members:
            self._members = members
            self._links = tree_links(members, self.name)

    @property
    def parent(self) -> str | None:
        """Where this peer's subtree sum goes; None at the root."""
        return self._links[0]

    @property
    def children(self) -> tuple[str, ...]:
        """Who the cluster sum is passed down to."""
        return self._links[1]

    def from_child(self, peer: str, data: bytes, now: float) -> None:
        """A child's subtree digest (RemoteProtocolError when malformed)."""
        self._children.merge(peer, data, now)

    def from_legacy(self, peer: str, data: bytes, now: float) -> None:
        """An older peer's own digest, sent to every peer (RemoteProtocolError when bad)."""
        self._legacy.merge(peer, data, now)

    def forget(self, peer: str, now: float) -> None:
        """`peer` died or left: its subtree no longer counts here."""
        self._children.peer_left(peer, now)
        self._legacy.peer_left(peer, now)

    def has_children(self, now: float) -> bool:
        """Whether some child's fresh subtree digest (or, at the root, an older peer's) says
        something is going on: then this peer must keep summing, even when idle itself."""
        parts = self._children.digests(now)
        if self.parent is None:
            parts += self._legacy.digests(now)
        return not all(is_idle(d) for d in parts)

    def subtree(self, own: bytes, now: float) -> bytes:
        """This peer's subtree sum: its own digest `own` plus the fresh child digests (and,
        at the root, the older peers' digests), under `own`'s epoch, sequence and stamp (so
        the parent orders them as this peer's digests). `own` itself when there is nothing
        to add."""
        parts = self._children.digests(now)
        if self.parent is None:
            parts += self._legacy.digests(now)
        if not parts:
            return own
        mine = decode_digest(own)
        return sum_digests([mine, *parts], epoch=mine.epoch, seq=mine.seq, stamp_ms=mine.stamp_ms)

    def cut_copy(self, stamp_ms: int, message: bytes) -> bytes | None:
        """`message` (a cluster sum stamped `stamp_ms`) goes down now: the cut sum's message
        to send again with it, if any (see the module's "Settled reads and loss").

        The sum sent before this one is a cut sum when a cut lies between their stamps: it
        is the newest sum stamped at or before that cut, the one settled reads select."""
        last = self._last_down
        if last is not None and stamp_ms <= last[0]:
            return None  # not newer: no cut between them
        self._last_down = (stamp_ms, message)
        if last is not None:
            cut = -(-last[0] // CUT_GRID_MS) * CUT_GRID_MS  # the first cut at or after it
            if cut < stamp_ms:
                self._copy = (last[1], CUT_COPIES)
        if self._copy is None:
            return None
        copy, left = self._copy
        self._copy = (copy, left - 1) if left > 1 else None
        return copy
