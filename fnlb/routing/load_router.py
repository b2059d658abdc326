"""The load-aware router: a function's hot set, a lightly loaded node in it, and spill order.

Rule 1: no asyncio, socket, time or global random here (randomness, when asked for, comes in
through an object with a `random()` method). Rule 2: every input carries `now`; the decision
is returned.

Theory of operation
-------------------
Per call of function `key`, given the current node view (rendezvous order over the routable
nodes, memoised per view) and the shared figures last pushed by the cluster layer:

1. **Hot set.** The first w(key) nodes of the key's rendezvous order, w from
   `fnlb.routing.widths` (equal on every peer), capped by the routable nodes; for the hottest
   functions the placed home (`fnlb.routing.placement`) is moved to the front of that order,
   and the tail's nodes (`fnlb.routing.admission`) to its end; every other function has the
   tail's nodes first. Every peer holding the same view, widths, homes and tail agrees on
   the hot set.
2. **Choice within it.** Each node's load is this peer's exact calls in flight to it plus the
   other peers' gossiped ones (all functions), divided by its relative capacity when the nodes'
   container slots are known. `p2c` (default) takes the better of two hot nodes under the cap
   drawn at random (herd-proof when many peers act on stale figures); `least` takes the least
   loaded (ties to the earlier node in the key's order).
   These figures differ between peers; that is fine: only the choice *within* the agreed set
   depends on them.
3. **Bounded load.** No node takes a call while its load is at or above
   max(ceil(c x (total + 1) / nodes), floor), c = `balance_factor` (1.25, HAProxy's and
   Envoy's usual 125 %; Mirrokni et al. 2016). When every hot node is at the cap the call
   overflows to the first node of the rest of the key's order that is under it. A key's
   rendezvous order is its own random permutation, so overflow spreads over all nodes instead
   of cascading onto ring neighbours. The floor (1.5 x a node's container slots) keeps light
   load concentrated: below it the average says nothing about saturation, and the calls in
   flight include those waiting for a container to start, which moving only duplicates.
4. **Avoidance.** Nodes avoided by `fnlb.routing.backoff` for this function (503 busy, slow
   waits, shared through gossip) or for all (saturated), and nodes whose memory is reported full,
   go to the end of the list: the call spills to the next node of the order and they are tried
   only when nothing else is left.

The result is the chosen node first, then the rest of the hot set by load, then the rest of
the rendezvous order, then the avoided nodes. The proxy walks it only as far as it may retry
(a connect failure, or a 503 busy before the call started).

Cost: with width 1, no avoidance and the home under the cap, the view's memoised list is
returned as is (a few dict lookups, no allocation); otherwise O(width) to score the hot set
plus one copy of the rest of the order, and O(nodes) checks when an avoidance concerns this
function (docs/routing.md, "Cost per decision", has the measured times).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import ceil
from types import MappingProxyType
from typing import Final, Literal, Protocol

from fnlb.errors import LocalProtocolError
from fnlb.routing.attempt import BUSY
from fnlb.routing.backoff import Backoff
from fnlb.routing.picked import HOME, SPILL, SPREAD

__all__ = [
    "CandidateSource",
    "NodeCapacity",
    "RandomSource",
    "Router",
    "RouterPolicy",
    "SharedFigures",
    "placed_order",
]


class CandidateSource(Protocol):
    """What the router needs of a view: `fnlb.cluster.view.NodeView` fits."""

    def candidates(self, key: str) -> Sequence[str]:
        """The routable nodes in `key`'s rendezvous order (memoised; never mutated)."""
        ...


class RandomSource(Protocol):
    """What `p2c` needs of a random generator: `random.Random` fits."""

    def random(self) -> float:
        """A float uniformly drawn from [0, 1)."""
        ...


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What a node can hold, for memory-aware placement (the hook for the nodes' /metrics).

    `slots`: containers it can hold (memory / a function's memory, e.g. from
    fn_util_mem_used + fn_util_mem_avail); `used`: share of its memory held now (0..1).
    """

    slots: int
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    """How the router chooses within a hot set."""

    balance_factor: float = 1.25
    """c of bounded load: no node above c x the average load (calls in flight per node).
    Lower spreads sooner; 1.25 is HAProxy's and Envoy's common setting."""
    load_floor: int = 0
    """Calls in flight below which a node is never over the cap; 0: `floor_share` x the
    containers an average node holds (1.5 x 8 -> 12 with Fn's defaults). Lower refuses calls
    to nodes that are not full and moves them off their warm home, where they start another
    container: in simulation a floor of 6 instead of 12 on 16-slot nodes more than doubled
    the cold starts, and on 8-slot nodes under memory pressure 6 -> 12 cut them from 48 % to
    41 % (docs/routing.md); higher lets one hot function crowd a node longer."""
    slots_per_node: int = 8
    """Containers a node holds when the nodes' capacity is not reported (1 GiB / 128 MB)."""
    floor_share: float = 1.5
    """The floor in containers of an average node. Above 1 because the calls in flight to a
    node include those queued for a container start (300 ms on Fn): a node with more calls
    than containers is not yet refusing work, and a call moved off its warm home is cold."""
    choice: Literal["least", "p2c"] = "p2c"
    """`p2c`: the better of two hot nodes drawn at random; `least`: the least loaded one.
    Measured in simulation (docs/routing.md): equal when hot sets have width 1, p2c's waits
    ~30 % lower when a burst widens a set (peers acting on gossiped figures a few hundred ms
    old herd onto the same least loaded node), equal under memory pressure."""
    full_at: float = 0.95
    """A node whose reported memory use (NodeCapacity.used) reaches this is tried last."""
    min_width: int = 1
    """Width of a function absent from the widths table (the tracker's `min_width`)."""
    light_share: float = 1 / 3
    """Below this share of the load floor on both of its nodes p2c tosses a coin instead of
    comparing their loads (issue 16); 0: always compare (the choice before it)."""

    def check(self) -> None:
        if self.balance_factor < 1.0 or self.load_floor < 0 or self.min_width < 1:
            raise LocalProtocolError("need balance_factor >= 1, load_floor >= 0, min_width >= 1")
        if self.slots_per_node < 1 or not 0 < self.floor_share < 100:
            raise LocalProtocolError("need slots_per_node >= 1, 0 < floor_share < 100")
        if self.choice not in ("least", "p2c") or not 0 < self.full_at <= 1.0:
            raise LocalProtocolError("choice is least or p2c; 0 < full_at <= 1")
        if not 0 <= self.light_share <= 1:
            raise LocalProtocolError("need 0 <= light_share <= 1")


class _SplitMix64:
    """A small seeded generator for when no `random.Random` is given (tests, simulations);
    peers should each pass their own `random.Random()` so their draws are independent."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & 0xFFFFFFFFFFFFFFFF

    def random(self) -> float:
        self._state = (self._state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def _picked(out: Sequence[str], order: Sequence[str], w: int) -> int:
    """Where `out`'s first node sits in `order` (home first): HOME, SPREAD within the hot set
    of width `w`, SPILL beyond it (fnlb.routing.picked)."""
    if not out or out[0] == order[0]:
        return HOME
    first = out[0]
    for i in range(1, w):
        if order[i] == first:
            return SPREAD
    return SPILL


def placed_order(order: Sequence[str], home: str, tail: tuple[str, ...]) -> list[str]:
    """A placed function's order: its `home` first, then `order`'s other nodes, the tail's
    nodes last (each part in `order`'s own order). Its first w nodes are the hot set a
    burst widens over; admission counts a spread function's calls on the same nodes.

    Why the tail's nodes last: on a tail node a burst's new containers are evicted by the
    tail's churn, and the tail's cold starts there make p2c's load comparison pass the node
    over. A burst's third node that was a tail node took 0-64 of 240 calls a second
    (docs/routing.md, "The rest of the latency, and why the busiest node varies")."""
    return [
        home,
        *(node for node in order if node != home and node not in tail),
        *(node for node in order if node != home and node in tail),
    ]


_NO_INTS: Final[Mapping[str, int]] = MappingProxyType({})
_NO_CAPS: Final[Mapping[str, NodeCapacity]] = MappingProxyType({})
_NO_HOMES: Final[Mapping[str, str]] = MappingProxyType({})
_REHOMED_MAX: Final = 100_000
"""Reordered lists kept (one per function routed to a placed home or the tail's nodes)."""


class SharedFigures:
    """The cluster's figures as the router reads them: swapped whole by `Router.update`."""

    __slots__ = (
        "capacity",
        "floor",
        "full",
        "homes",
        "peers_in_flight",
        "remote_total",
        "tail",
        "weights",
        "widths",
    )

    def __init__(
        self,
        widths: Mapping[str, int] = _NO_INTS,
        peers_in_flight: Mapping[str, int] = _NO_INTS,
        capacity: Mapping[str, NodeCapacity] = _NO_CAPS,
        policy: RouterPolicy | None = None,
        homes: Mapping[str, str] = _NO_HOMES,
        tail: tuple[str, ...] = (),
    ) -> None:
        p = policy or RouterPolicy()
        self.homes = homes
        """Placed homes of the hottest functions (fnlb.routing.placement): first in their order."""
        self.tail = tail
        """The tail's nodes (fnlb.routing.admission): first in the order of every function
        without a placed home, so rare functions evict only each other's containers."""
        self.widths = widths
        self.peers_in_flight = peers_in_flight
        self.capacity = capacity
        self.remote_total = sum(peers_in_flight.values())
        slots = [c.slots for c in capacity.values() if c.slots > 0]
        mean = sum(slots) / len(slots) if slots else float(p.slots_per_node)
        self.floor = float(p.load_floor or max(1, ceil(mean * p.floor_share - 1e-9)))
        """The load under which no node is refused, in calls of an average node."""
        # load x weight = load relative to an average node: a node twice as large counts half
        self.weights: Mapping[str, float] = {
            n: mean / c.slots for n, c in capacity.items() if c.slots > 0
        }
        self.full: frozenset[str] = frozenset(
            n for n, c in capacity.items() if c.used >= p.full_at or c.slots <= 0
        )


class Router:
    """Orders the candidate nodes of each call; one instance per peer, one event loop.

    Feed it `update(...)` when the cluster figures change (each tick), `call_started` /
    `call_finished` around every attempt the proxy makes, and ask `candidates(key, view, now)`
    per call. `backoff` is the avoidance table (gossip its `take_updates`, `merge` peers').
    """

    __slots__ = (
        "_local",
        "_local_total",
        "_policy",
        "_rehomed",
        "_rng",
        "_shared",
        "backoff",
        "picked",
    )

    def __init__(
        self,
        policy: RouterPolicy | None = None,
        *,
        backoff: Backoff | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self._policy = policy or RouterPolicy()
        self._policy.check()
        self._rng: RandomSource = rng if rng is not None else _SplitMix64(1)
        self.backoff = backoff or Backoff()
        self._shared = SharedFigures(policy=self._policy)
        self.picked = HOME
        """What the last `candidates` put first (fnlb.routing.picked): HOME, SPREAD or SPILL."""
        self._local: dict[str, int] = {}
        self._local_total = 0
        # key -> (the view's order it was made from, its home or None, the new order)
        self._rehomed: dict[str, tuple[Sequence[str], str | None, Sequence[str]]] = {}

    @property
    def policy(self) -> RouterPolicy:
        return self._policy

    @property
    def shared(self) -> SharedFigures:
        return self._shared

    def update(
        self,
        widths: Mapping[str, int] | None = None,
        peers_in_flight: Mapping[str, int] | None = None,
        capacity: Mapping[str, NodeCapacity] | None = None,
        homes: Mapping[str, str] | None = None,
        tail: tuple[str, ...] | None = None,
    ) -> None:
        """Swap in new shared figures; an argument left None keeps its current value.

        `widths`: `WidthTracker.widths`. `peers_in_flight`: calls in flight to each node from
        the *other* peers (gossiped). `capacity`: per node slots and memory use, when known.
        `homes`: `placement.place(...)`, the placed homes of the hottest functions.
        `tail`: `admission.Admitted.tail`, the nodes functions without a home go to first.
        """
        s = self._shared
        if (homes is not None and homes != s.homes) or (tail is not None and tail != s.tail):
            self._rehomed.clear()
        self._shared = SharedFigures(
            s.widths if widths is None else widths,
            s.peers_in_flight if peers_in_flight is None else peers_in_flight,
            s.capacity if capacity is None else capacity,
            self._policy,
            s.homes if homes is None else homes,
            s.tail if tail is None else tail,
        )

    # -- the request path ----------------------------------------------------------------

    def width(self, key: str, nodes: int) -> int:
        """`key`'s hot-set width among `nodes` routable nodes."""
        w = self._shared.widths.get(key, self._policy.min_width)
        return w if w < nodes else nodes

    def load(self, node: str) -> float:
        """`node`'s load as the router weighs it: calls in flight from here and from the
        other peers, relative to its capacity."""
        s = self._shared
        raw = self._local.get(node, 0) + s.peers_in_flight.get(node, 0)
        return raw * s.weights.get(node, 1.0)

    def cap(self, nodes: int) -> float:
        """The bounded-load cap with `nodes` routable nodes: a node at or above it is full."""
        p = self._policy
        avg = (self._local_total + self._shared.remote_total + 1) / nodes
        return max(float(ceil(p.balance_factor * avg)), self._shared.floor)

    def candidates(self, key: str, view: CandidateSource, now: float) -> Sequence[str]:
        """The nodes to try for a call of `key`, chosen first, then the spill order.

        The result may be the view's own memoised list: read it, never mutate it.
        """
        order = view.candidates(key)
        n = len(order)
        self.picked = HOME  # the common case; `_ordered` says otherwise when it must
        if n <= 1:
            return order
        s = self._shared
        if s.homes or s.tail:
            home = s.homes.get(key)
            if home is not None:
                if order[0] != home or s.tail:
                    order = self._reordered(key, order, home)
            elif s.tail:
                order = self._reordered(key, order, None)
        p = self._policy
        w = s.widths.get(key, p.min_width)
        if w > n:
            w = n
        backoff = self.backoff
        avoiding = bool(s.full) or (now < backoff.active_until and backoff.affects(key))
        # self.cap(n), written out: this is the path every call takes
        cap = float(ceil(p.balance_factor * (self._local_total + s.remote_total + 1) / n))
        if cap < s.floor:
            cap = s.floor
        if w == 1 and not avoiding:
            home = order[0]
            load = self._local.get(home, 0) + s.peers_in_flight.get(home, 0)
            if load * s.weights.get(home, 1.0) < cap:
                return order  # the common case: one warm home, not overloaded
        return self._ordered(key, order, w, cap, now, avoiding)

    def _reordered(self, key: str, order: Sequence[str], home: str | None) -> Sequence[str]:
        """`order` for a placed function (`home`): `placed_order`; for any other (`home`
        None): the tail's nodes first, in `order`'s own order. Made once per (view, homes,
        tail), not per call, and read without allocating."""
        cached = self._rehomed.get(key)
        if cached is not None and cached[0] is order and cached[1] == home:
            return cached[2]
        if len(self._rehomed) >= _REHOMED_MAX:
            self._rehomed.clear()  # a client spraying paths cannot grow it without bound
        tail = self._shared.tail
        moved: Sequence[str] = order  # the home left the routable set: as is until re-placed
        if home is None:
            first = [node for node in order if node in tail]
            if first:
                moved = [*first, *(node for node in order if node not in tail)]
        elif home in order:
            moved = placed_order(order, home, tail)
        self._rehomed[key] = (order, home, moved)
        return moved

    def _ordered(
        self, key: str, order: Sequence[str], w: int, cap: float, now: float, avoiding: bool
    ) -> list[str]:
        s = self._shared
        local = self._local
        remote = s.peers_in_flight
        weights = s.weights
        full = s.full
        per_fn, node_wide = self.backoff.tables(key)
        hot: list[tuple[float, int, str]] = []
        late: list[str] = []
        for i in range(w):
            node = order[i]
            if avoiding and (
                node in full or now < per_fn.get(node, 0.0) or now < node_wide.get(node, 0.0)
            ):
                late.append(node)
                continue
            load = (local.get(node, 0) + remote.get(node, 0)) * weights.get(node, 1.0)
            hot.append((load, i, node))
        hot.sort()
        chosen: str | None = None
        overflow = False  # chosen from beyond the hot set
        under = [h for h in hot if h[0] < cap]
        if under:
            if self._policy.choice == "least" or len(under) == 1:
                chosen = under[0][2]
            else:
                chosen = self._two_choices(under)
        else:
            # Bounded load: every usable hot node is at the cap; overflow along the order.
            for i in range(w, len(order)):
                node = order[i]
                if avoiding and (
                    node in full or now < per_fn.get(node, 0.0) or now < node_wide.get(node, 0.0)
                ):
                    continue
                load = (local.get(node, 0) + remote.get(node, 0)) * weights.get(node, 1.0)
                if load < cap:
                    chosen = node
                    overflow = True
                    break
            if chosen is None and hot:
                chosen = hot[0][2]  # everyone is full: the least loaded hot node
        out: list[str] = [h[2] for h in hot]
        if chosen is not None and hot and chosen == hot[0][2]:
            pass  # the least loaded hot node: already first
        elif chosen is not None:
            if chosen in out:
                out.remove(chosen)  # p2c's pick
            out.insert(0, chosen)
        if not avoiding and not overflow:
            out.extend(order[w:])  # the tail as it is: one C-level copy
        else:
            for i in range(w, len(order)):
                node = order[i]
                if node == chosen:
                    continue
                if avoiding and (
                    node in full or now < per_fn.get(node, 0.0) or now < node_wide.get(node, 0.0)
                ):
                    late.append(node)
                    continue
                out.append(node)
        out.extend(late)
        self.picked = _picked(out, order, w)
        return out

    def _two_choices(self, under: list[tuple[float, int, str]]) -> str:
        rng = self._rng
        k = len(under)
        a = int(rng.random() * k)
        b = int(rng.random() * (k - 1))
        if b >= a:
            b += 1
        light = self._shared.floor * self._policy.light_share
        if under[a][0] < light and under[b][0] < light:
            # Both lightly loaded: a few calls in flight more or less (a cold start or two
            # on one of them) say nothing about which can take the call, so a coin: a
            # function spread for balance (widths' call share) then splits its calls
            # instead of sending nearly all of them to the node with fewer cold starts.
            return under[a][2]
        return under[min(a, b)][2]  # `under` is sorted by (load, order): the lower index wins

    # -- observations --------------------------------------------------------------------

    def call_started(self, key: str, node: str) -> None:
        """An attempt of a call of `key` was sent to `node` (before the request is written)."""
        self._local[node] = self._local.get(node, 0) + 1
        self._local_total += 1

    def call_finished(
        self,
        key: str,
        node: str,
        status: int,
        wait_s: float | None,
        now: float,
        retry_after_s: float | None = None,
        answer_s: float | None = None,
    ) -> None:
        """The attempt ended: `status` the node's answer (0 when none came), `wait_s` its
        `Xxx-Fxlb-Wait` in seconds (None when absent), `retry_after_s` its Retry-After,
        `answer_s` the seconds from sending the call to the answer's headers (None: not
        measured)."""
        left = self._local.get(node, 0) - 1
        if left > 0:
            self._local[node] = left
        else:
            self._local.pop(node, None)
        if self._local_total > 0:
            self._local_total -= 1
        if status == BUSY:
            self.backoff.busy(key, node, now, retry_after_s)
        elif 0 < status < 500:
            self.backoff.finished(key, node, wait_s, now, answer_s)

    def local_in_flight(self, node: str) -> int:
        """Calls in flight from this peer to `node`."""
        return self._local.get(node, 0)
