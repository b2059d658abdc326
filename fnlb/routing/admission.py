"""Placement as cluster-wide admission: a protected set of hot functions, the tail confined.

Rule 1: no asyncio, socket, time or global random here.

Why: Fn evicts the least recently used idle container when it needs memory, and under
Zipf-like popularity every rare call then evicts a warm container of a popular function.
Keeping each function on one node (rendezvous, `placement.place`) makes the five nodes'
caches act as one big LRU cache ("pooled memory") and no better. A balancer cannot change a
node's eviction, but it chooses which functions compete for which node's memory: TinyLFU's
admission (Einziger, Friedman and Manes, 2017) made cluster-wide. The hottest functions
(the *protected set*, sized to the memory the nodes report) get homes spread over the
cluster; every other function (the *tail*, including every function no digest lists) goes
to a few *tail nodes* first, so a rare call evicts only another rare function's container.

How, every tick (`observe`) and at each placement epoch (`place`):

- **Frequency with ageing**: each function's score is a mean of its settled cluster-wide
  rate over the ticks, decayed by `AGEING_TICKS` (an exponential window of ~60 s), so a
  function called once in a while is judged by its frequency over a minute, not by the 3 s
  rate of the digest it happened to be in. Every peer reads the same settled tables at the
  same aligned cuts, so every peer holds the same scores (a missed digest's difference
  decays away).
- **Tail nodes**: the first `t` nodes of the rendezvous order of a fixed key, so they stay
  the same from epoch to epoch; `t` is the smallest count whose containers hold the tail's
  worst case, every tail call cold: tail rate x (cold start + half a call's mean hold)
  within `TAIL_UTILISATION` of their slots (the tail's nodes are never saturated), at most
  one node in `TAIL_SHARE`; a tail needing more falls back to the placed homes of before.
  No tail at all when every function fits the memory: confining would waste a node.
- **Protected set**: functions by score, hottest first, while their warm containers
  (`container_demand` plus their calls in flight) fit in `PROTECTED_FILL` of the other
  nodes' slots. Hysteresis: a function already protected stays while its score is at least
  `KEEP_SHARE` of the coolest newcomer's, so a function near the boundary does not flap.
- **Homes**: most called first, each on the node with the most memory left among those
  whose calls/s stay under `RATE_CAP` equal shares (else the one with the least calls/s
  placed so far), a function the widths spread counted on each node it goes to; a function
  stays on the node its containers are on (its home, else where the last placement sent
  it) while that node stays within `REHOME_SLACK` equal shares: containers are not
  abandoned for a little balance. The tail's nodes
  start with the tail's rate and take only functions hot enough that LRU never evicts them
  (called at least every `TAIL_HOT_GAP_S`): the busiest node stays near the mean while the
  tail cannot evict what it holds.

Bursts still spread: the router's hot-set width puts a bursting function on the first w
nodes of its order (the home first), as for any placed home.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from math import ceil
from typing import Final

from fnlb.routing.placement import HOT_HOMES, IDLE_TIMEOUT_S, container_demand, place
from fnlb.routing.widths import SPREAD_MIN_RATE, WidthPolicy

AGEING_TICKS: Final = 60.0
"""Ticks (seconds) of the scores' exponential window: longer than Fn's 30 s idle timeout, so
a function's score reflects whether it keeps a container warm."""
COLD_START_S: Final = 0.3
"""A container start on Fn (docker): the time each tail call may hold a slot beyond its run."""
TAIL_UTILISATION: Final = 0.8
"""Share of the tail nodes' slots the tail's worst case (every call cold) may hold
(the rates of functions listed only now and then are understated, so the tail's is overstated)."""
GRID_MIDDLE: Final = 2.0 ** (1 / 8)
"""Settled rates come at the bottom of their grid step (2^(1/4)); scaled to its geometric
middle so that the tail's rate (the total less the protected rates) is not overstated by the
quantisation of a hot function's rate."""
PROTECTED_FILL: Final = 0.9
"""Share of the protected nodes' slots the protected set's warm containers may fill."""
KEEP_SHARE: Final = 0.5
"""A protected function stays protected while its score is this share of the coolest
newcomer's: hysteresis at the boundary."""
CALL_SHARE: Final = WidthPolicy().call_share
"""The hot-set widths spread a function over more than this many node shares of calls."""
REHOME_SLACK: Final = 1.2
"""A placed function keeps its home while that node's calls/s stay within this factor of an
equal share."""
TAIL_HOT_GAP_S: Final = 1.0
"""A function called at least this often may share a tail node: LRU keeps it warm."""
TAIL_SHARE: Final = 2
"""At most one node in this many is the tail's; a tail needing more falls back to placed
homes (`placement.place`): the memory is too tight for admission to pay."""
RATE_CAP: Final = 1.25
"""A function that moves goes to the node with the most memory left among those whose
calls/s stay under this many equal shares (the bounded load's balance factor): the best
static partitions that know the trace balance memory first (bench/routing_oracle: 0.84x
pooled memory on the roomy profile by memory under this cap, 0.94x by calls/s alone)."""
MIN_SCORE: Final = 0.01
"""Scores below this (a call every 100 s) are forgotten."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """One placement: homes of the protected set and the tail's nodes."""

    homes: Mapping[str, str] = field(default_factory=dict)
    tail: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """For `GET /1/lb/cluster` and `fnlb cluster status`."""
        return {"protected": dict(sorted(self.homes.items())), "tail_nodes": list(self.tail)}


NONE: Final = Admitted()

TAIL_KEY: Final = "\x00fnlb-tail"
"""The fixed key whose rendezvous order names the tail's nodes."""


class Admission:
    """The scores, the protected set and the tail, one per peer; a pure function of the
    sequence of settled tables it is fed (`observe`) and of the epochs it places at."""

    def __init__(self, slots_per_node: int = 8) -> None:
        self.slots_per_node = slots_per_node
        self.scores: dict[str, float] = {}
        self.total_rate = 0.0
        """Aged cluster-wide calls/s, lumped functions included."""
        self.in_flight: dict[str, float] = {}
        self.total_in_flight = 0.0
        self.admitted: Admitted = NONE
        self._last_cut = -1
        self._weight = 0.0  # 1 - keep^ticks: the ageing window's filled share

    def observe(
        self,
        cut: int,
        rates: Mapping[str, float],
        in_flight: Mapping[str, int],
        total_rate: float,
        total_in_flight: int,
    ) -> None:
        """One settled tick: each listed function's rate and calls in flight, and the totals.
        A cut at or before the last one is ignored (the state is a function of the cuts)."""
        if cut <= self._last_cut:
            return
        self._last_cut = cut
        if not self.scores and not rates and not total_rate and not total_in_flight:
            # No load and nothing remembered: the window starts with the first load, so
            # peers that started at different times (and counted different numbers of
            # empty cuts) hold the same scores once load comes, and place alike.
            self._weight = self.total_rate = self.total_in_flight = 0.0
            self.in_flight.clear()
            return
        a = 1.0 / AGEING_TICKS
        keep = 1.0 - a
        scores = self.scores
        for key in list(scores):
            s = scores[key] * keep
            if s < MIN_SCORE and key not in rates:
                del scores[key]
                self.in_flight.pop(key, None)
            else:
                scores[key] = s
        for key, r in rates.items():
            scores[key] = scores.get(key, 0.0) + a * r * GRID_MIDDLE
        for key in list(self.in_flight):
            self.in_flight[key] *= keep
        for key, n in in_flight.items():
            if n:
                self.in_flight[key] = self.in_flight.get(key, 0.0) + a * n
        self.total_rate = self.total_rate * keep + a * total_rate
        self.total_in_flight = self.total_in_flight * keep + a * total_in_flight
        self._weight = self._weight * keep + a

    @property
    def last_cut(self) -> int:
        """The last settled cut observed (-1: none yet)."""
        return self._last_cut

    def score(self, key: str) -> float:
        """`key`'s aged calls/s (0 if not scored), corrected for a window not yet full."""
        return self.scores.get(key, 0.0) / self._weight if self._weight else 0.0

    def demand(self, key: str) -> float:
        """Warm containers `key` keeps: one if called every few seconds, plus concurrency."""
        w = self._weight or 1.0
        busy = min(self.in_flight.get(key, 0.0) / w, self.slots_per_node / 2)
        return container_demand(self.scores[key] / w) + busy  # a burst is the widths' business

    def place(
        self,
        nodes: Sequence[str],
        order_of: Callable[[str], Sequence[str]],
        slots: Mapping[str, int] | None = None,
    ) -> Admitted:
        """The protected set's homes and the tail's nodes over the routable `nodes`.

        `order_of(key)`: the routable nodes in `key`'s rendezvous order. `slots`: each node's
        containers from its /metrics, when known (else `slots_per_node`). Fewer than three
        nodes, or nothing scored: no admission (`NONE`), rendezvous as before."""
        if len(nodes) < 3 or not self.scores:
            self.admitted = NONE
            return NONE
        size = {n: (slots or {}).get(n, self.slots_per_node) for n in nodes}
        ranked = sorted(self.scores, key=lambda k: (-self.scores[k], k))
        w = self._weight
        total_rate = self.total_rate / w
        # a call's mean hold on a container, cold starts included (Little's law)
        hold = self.total_in_flight / self.total_rate if self.total_rate > 0 else 0.0
        tail_hold = COLD_START_S + hold / 2  # a tail call is mostly cold
        fixed = order_of(TAIL_KEY)
        before = self.admitted
        old_t = len(before.tail)
        t = 1
        most = max(1, len(nodes) // TAIL_SHARE)
        while True:
            tail = tuple(fixed[:t])
            protected = self._protected(ranked, [n for n in nodes if n not in tail], size, before)
            tail_rate = max(0.0, total_rate - sum(self.score(k) for k in protected))
            use = tail_rate * tail_hold / sum(size[n] for n in tail)
            # Hysteresis: a tail node is given back only with a margin, or the count flaps.
            limit = TAIL_UTILISATION * (0.8 if t < old_t else 1.0)
            if use <= limit:
                break
            if t >= most:
                # The tail would saturate the nodes it may have: no admission this epoch,
                # the placed homes of the hottest functions as before issue 16.
                scores = {k: self.score(k) for k in ranked[:HOT_HOMES]}
                self.admitted = Admitted(place(scores, order_of), ())
                return self.admitted
            t += 1
        unscored = max(0.0, total_rate - sum(self.score(k) for k in ranked))
        need = sum(self.demand(k) for k in ranked) + unscored * IDLE_TIMEOUT_S
        if len(protected) == len(ranked) or need <= PROTECTED_FILL * sum(size.values()):
            # Every function fits the cluster's memory (each unscored call counted as a
            # container of its own): nothing to confine, LRU keeps them all; the rest go by
            # rendezvous and the tail's nodes join the others.
            tail = ()
            protected = self._protected(ranked, list(nodes), size, before)
        homes = self._homes(protected, nodes, tail, tail_rate, size, order_of, before)
        self.admitted = Admitted(homes, tail)
        return self.admitted

    def _protected(
        self, ranked: list[str], nodes: list[str], size: Mapping[str, int], before: Admitted
    ) -> list[str]:
        room = PROTECTED_FILL * sum(size[n] for n in nodes)
        chosen: list[str] = []
        used = 0.0
        for key in ranked:
            d = self.demand(key)
            if used + d > room:
                break
            chosen.append(key)
            used += d
        if before.homes and chosen:
            # Hysteresis: an incumbent close enough to the boundary replaces the coolest
            # newcomers rather than leaving.
            floor = KEEP_SHARE * min(
                (self.scores[k] for k in chosen if k not in before.homes), default=0.0
            )
            inside = set(chosen)
            for key in ranked[len(chosen) :]:
                if key not in before.homes or self.scores[key] < floor:
                    continue
                d = self.demand(key)
                newcomers = [k for k in chosen if k not in before.homes]
                while used + d > room and newcomers:
                    out = newcomers.pop()
                    chosen.remove(out)
                    inside.discard(out)
                    used -= self.demand(out)
                if used + d <= room:
                    chosen.append(key)
                    inside.add(key)
                    used += d
        return chosen

    def _homes(
        self,
        protected: list[str],
        nodes: Sequence[str],
        tail: tuple[str, ...],
        tail_rate: float,
        size: Mapping[str, int],
        order_of: Callable[[str], Sequence[str]],
        before: Admitted,
    ) -> dict[str, str]:
        score = self.score
        placed_rate = dict.fromkeys(nodes, 0.0)
        for n in tail:
            placed_rate[n] = tail_rate / len(tail)
        room = {n: PROTECTED_FILL * size[n] for n in nodes}
        for n in tail:
            # the tail's worst case holds TAIL_UTILISATION of a tail node's slots
            room[n] = (1.0 - TAIL_UTILISATION) * size[n]
        share = (tail_rate + sum(score(k) for k in protected)) / len(nodes)
        spread_share = CALL_SHARE * share
        homes: dict[str, str] = {}
        for key in sorted(protected, key=lambda k: (-self.scores[k], k)):
            r = score(key)
            d = self.demand(key)
            may = [
                n
                for n in order_of(key)
                if room[n] >= d and (n not in tail or r * TAIL_HOT_GAP_S >= 1.0)
            ]
            if not may:
                may = [n for n in order_of(key) if n not in tail]
            # Where its containers are now: its placed home, else where the last placement
            # sent it (the first of the tail's nodes in its order, or its rendezvous home).
            # Moving it costs a cold start per container, so it stays while that is fair.
            old = before.homes.get(key) or next(
                (n for n in order_of(key) if not before.tail or n in before.tail), None
            )
            # A function over a node's share of calls is spread by the hot-set widths over the
            # first w nodes of its order, its home first: count its calls where they will go.
            w = 1
            if r > spread_share:
                w = max(1, min(len(nodes), ceil(r / spread_share - 1e-9), int(r / SPREAD_MIN_RATE)))
            part = r / w
            if old is not None and old in may and placed_rate[old] + part <= REHOME_SLACK * share:
                home = old
            elif under := [n for n in may if placed_rate[n] + part <= RATE_CAP * share]:
                # Memory first: the node with the most room left among those whose calls
                # stay under RATE_CAP shares (ties: the key's own order)
                home = max(under, key=lambda n: room[n])
            else:
                home = min(may, key=lambda n: placed_rate[n])  # ties: the key's own order
            homes[key] = home
            placed_rate[home] += part
            room[home] -= d
            if w > 1:
                for n in [n for n in order_of(key) if n != home][: w - 1]:
                    placed_rate[n] += part
        return homes
