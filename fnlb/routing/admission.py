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
  rate over the ticks of the last `WINDOW_MS`, decayed by `AGEING_TICKS` (~60 s),
  so a function called once in a while is judged by its frequency over a minute, not by the
  3 s rate of the digest it happened to be in. Every peer reads the same settled tables at
  the same aligned cuts, so every peer holds the same scores; the window is finite so that
  a peer started late holds them too once it has read its cuts.
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
- **Homes** (`_homes`): incumbents stay where their containers are; a node over its
  memory or over `RATE_CAP` equal shares of calls sheds its least called first; then the
  newcomers and the shed, most called first, each on the node with the most memory left
  among those whose calls/s stay under `RATE_CAP` equal shares (else the one with the least
  calls/s placed so far), a function the widths spread counted on each node it goes to; a
  newcomer stays where the last placement sent it while that node has room and stays
  within `REHOME_SLACK` shares. The tail's nodes
  start with the tail's rate and take only functions hot enough that LRU never evicts them
  (called at least every `TAIL_HOT_GAP_S`): the busiest node stays near the mean while the
  tail cannot evict what it holds.

- **Sticky, agreed**: each placement keeps to the one before it, the last one this peer
  made or took from another. A peer with none of the epoch before (started, or idle) chains
  `HYSTERESIS_EPOCHS` placements from none over the cuts it holds. Peers whose placements
  differ (a restart, a partition healed, a cut read differently) exchange them in push-pull
  and all take the lowest ranked (`Placed.rank`, `Admission.offer`): from then on they chain
  from the same placement and the same cuts, and place alike (docs/routing.md, "After a
  restart"). A young peer (started within `WINDOW_MS`) asks for an exchange a tick into
  each epoch (fnlb.peer.control_loop), so it takes the others' placement for the epoch then.

Bursts still spread: the router's hot-set width puts a bursting function on the first w
nodes of its order, the home first and the tail's nodes last (where the tail's churn would
evict its new containers), as for any placed home.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from math import ceil
from typing import Final

from fnlb.routing.load_router import placed_order
from fnlb.routing.placement import (
    EPOCH_MS,
    HOT_HOMES,
    IDLE_TIMEOUT_S,
    container_demand,
    place,
)
from fnlb.routing.widths import SPREAD_MIN_RATE, WidthPolicy

AGEING_TICKS: Final = 60.0
"""Ticks (seconds) of the scores' exponential window: longer than Fn's 30 s idle timeout, so
a function's score reflects whether it keeps a container warm."""
WINDOW_MS: Final = 120_000
"""The scores read the cuts of this window only (two ageing windows: the cuts older than
that weigh e^-2 = 14 % together): a peer that has read every cut of it holds the same
scores as every other peer, to the last bit, however long before it started."""
HYSTERESIS_EPOCHS: Final = 4
"""Placements chained from none to make one: the hysteresis remembers this many epochs less
one. Longer keeps closer to a hysteresis that never forgets (the memory-tight simulator
table: 2 links cost 1.1 points of cold starts with placed homes only, 4 links 0.5, 7 links
0.4) but delays a restarted peer's agreement by an epoch a link and costs a window's fold a
link."""
HELD_MS: Final = WINDOW_MS + HYSTERESIS_EPOCHS * EPOCH_MS
"""Cuts kept: a window for each placement of the chain, the last up to an epoch late."""
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
"""A newcomer stays where the last placement sent it (the tail's first node of its order, or
its rendezvous home) while that node's calls/s stay within this factor of an equal share."""
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


@dataclass(frozen=True, slots=True)
class Placed:
    """A placement with what peers need to agree on it (`Admission.offer`).

    `epoch`: the placement epoch (cut // EPOCH_MS) it is for; `nodes`: the routable nodes it
    placed over; `origin`: the epoch its line of placements started from none (each chained
    from the one before keeps it); `young`: placed from scores over less than a window (its
    peer started within WINDOW_MS)."""

    epoch: int
    nodes: tuple[str, ...]
    origin: int
    young: bool
    admitted: Admitted
    digest: bytes = field(init=False, repr=False, compare=False)
    """Equal digests: the same placement. Made once: ranking, the API and the benches read
    it again and again."""

    def __post_init__(self) -> None:
        # repr quotes and escapes every string: no two placements read the same (a key may
        # hold any character a URL path decodes to)
        a = self.admitted
        text = repr((self.nodes, a.tail, sorted(a.homes.items())))
        object.__setattr__(self, "digest", blake2b(text.encode(), digest_size=8).digest())

    @property
    def rank(self) -> tuple[bool, int, bytes]:
        """Lower wins among placements of one epoch over the same nodes: a peer that read
        the whole window before one that did not, the older line, then the smaller digest,
        so that peers whose placements differ all end up with the same one."""
        return (self.young, self.origin, self.digest)


TAIL_KEY: Final = "\x00fnlb-tail"
"""The fixed key whose rendezvous order names the tail's nodes."""


@dataclass(frozen=True, slots=True)
class _Cut:
    """One settled tick as `observe` was given it."""

    cut: int
    rates: Mapping[str, float]
    in_flight: Mapping[str, int]
    total_rate: float
    total_in_flight: int

    @property
    def loaded(self) -> bool:
        return bool(self.rates or self.total_rate or self.total_in_flight)


@dataclass(slots=True)
class Scores:
    """The aged figures as of one cut: a pure function of the cuts in the window up to it."""

    slots_per_node: int
    scores: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    total_rate: float = 0.0
    """Aged cluster-wide calls/s, lumped functions included."""
    total_in_flight: float = 0.0
    weight: float = 0.0
    """The window's filled share: 1 - (1 - 1/AGEING_TICKS)^(cuts folded)."""

    def score(self, key: str) -> float:
        """`key`'s aged calls/s (0 if not scored), corrected for a window not yet full."""
        return self.scores.get(key, 0.0) / self.weight if self.weight else 0.0

    def demand(self, key: str) -> float:
        """Warm containers `key` keeps: one if called every few seconds, plus concurrency."""
        w = self.weight or 1.0
        busy = min(self.in_flight.get(key, 0.0) / w, self.slots_per_node / 2)
        return container_demand(self.scores[key] / w) + busy  # a burst is the widths' business


def _scored(cuts: Sequence[_Cut], at: int, slots_per_node: int) -> Scores:
    """The scores as of cut `at` from the cuts held, oldest first: the cuts of the window
    (`WINDOW_MS` up to `at`) from its first loaded one folded into exponential means, each
    cut ageing the means by one tick, a function whose aged score falls below `MIN_SCORE`
    while unlisted forgotten. Folded oldest first, in each table's order: the same cuts give
    the same floats on every peer, however many cuts before the window each has read."""
    out = Scores(slots_per_node)
    a = 1.0 / AGEING_TICKS
    keep = 1.0 - a
    window = [c for c in cuts if at - WINDOW_MS < c.cut <= at]
    first = next((i for i, c in enumerate(window) if c.loaded), len(window))
    scores, in_flight = out.scores, out.in_flight
    for c in window[first:]:
        rates = c.rates
        for key in list(scores):
            v = scores[key] * keep
            if v < MIN_SCORE and key not in rates:
                del scores[key]
                in_flight.pop(key, None)
            else:
                scores[key] = v
        for key, r in rates.items():
            scores[key] = scores.get(key, 0.0) + a * r * GRID_MIDDLE
        for key in list(in_flight):
            in_flight[key] *= keep
        for key, n in c.in_flight.items():
            if n:
                in_flight[key] = in_flight.get(key, 0.0) + a * n
        out.total_rate = out.total_rate * keep + a * c.total_rate
        out.total_in_flight = out.total_in_flight * keep + a * c.total_in_flight
        out.weight = out.weight * keep + a
    return out


class Admission:
    """The scores, the protected set and the tail, one per peer: a function of the settled
    tables it is fed (`observe`, kept for a window), of the cut it places at, and of the
    last placement (`placed`), which each placement keeps to.

    That last placement is this peer's own or one taken from another peer (`offer`), so the
    peers chain from one line of placements. A peer that holds none from the epoch before
    (it restarted, joined, or idled) recomputes one from the window (`HYSTERESIS_EPOCHS`)
    until push-pull brings the cluster's (docs/routing.md, "After a restart")."""

    def __init__(self, slots_per_node: int = 8) -> None:
        self.slots_per_node = slots_per_node
        self.placed: Placed | None = None
        """The last placement, this peer's or one it took from another (`offer`)."""
        self._cuts: deque[_Cut] = deque()
        self._last_cut = -1
        self._first_cut = -1
        self._now: Scores | None = None  # the scores as of the last cut, when asked for

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
        if self._first_cut < 0:
            self._first_cut = cut
        self._last_cut = cut
        self._now = None
        c = _Cut(cut, dict(rates), dict(in_flight), total_rate, total_in_flight)
        cuts = self._cuts
        if not cuts and not c.loaded:
            return  # no load and nothing held: the window starts with the first load
        cuts.append(c)
        oldest = cut - HELD_MS
        while cuts and cuts[0].cut <= oldest:
            cuts.popleft()

    def young_at(self, cut: int) -> bool:
        """Whether scores as of `cut` come from less than a window (`WINDOW_MS`): this peer
        started, or began reading cuts, since. Its placements then rank after any peer's that
        has read the whole window (`Placed.rank`)."""
        return self._first_cut > cut - WINDOW_MS

    @property
    def admitted(self) -> Admitted:
        """The placement routing follows: the last one's (`NONE` before the first)."""
        return self.placed.admitted if self.placed is not None else NONE

    @property
    def loaded(self) -> bool:
        """Whether the window holds a cut with load (it starts with the first loaded one)."""
        return bool(self._cuts)

    @property
    def last_cut(self) -> int:
        """The last settled cut observed (-1: none yet)."""
        return self._last_cut

    def scores_at(self, cut: int) -> Scores:
        """The aged figures as of `cut` (at most `HELD_MS - WINDOW_MS` back)."""
        if cut == self._last_cut:
            if self._now is None:
                self._now = _scored(self._cuts, cut, self.slots_per_node)
            return self._now
        return _scored(self._cuts, cut, self.slots_per_node)

    @property
    def scores(self) -> dict[str, float]:
        """Each scored function's aged calls/s, not corrected for the window's filling."""
        return self.scores_at(self._last_cut).scores

    def score(self, key: str) -> float:
        """`key`'s aged calls/s (0 if not scored) as of the last cut."""
        return self.scores_at(self._last_cut).score(key)

    def demand(self, key: str) -> float:
        """`key`'s warm containers as of the last cut."""
        return self.scores_at(self._last_cut).demand(key)

    def place(
        self,
        nodes: Sequence[str],
        order_of: Callable[[str], Sequence[str]],
        slots: Mapping[str, int] | None = None,
        at: int | None = None,
    ) -> Admitted:
        """The protected set's homes and the tail's nodes over the routable `nodes`, as of
        cut `at` (default: the last observed).

        `order_of(key)`: the routable nodes in `key`'s rendezvous order. `slots`: each node's
        containers from its /metrics, when known (else `slots_per_node`). Fewer than three
        nodes, or nothing scored: no admission (`NONE`), rendezvous as before.

        Hysteresis: the placement of before is the last one (`placed`) if it is of this
        epoch or the one before; otherwise (a peer just started, or idle an epoch) the chain
        of placements from none at the `HYSTERESIS_EPOCHS - 1` epochs before `at`, each from
        the scores as of its cut and the same nodes, which every peer holding those cuts
        derives alike. Peers whose lines of placements differ (a restart, a partition, a
        cut read differently) agree by `offer`. One placed or taken for this epoch over the
        same nodes is kept as it is; a young peer keeps one it took for the epoch before from
        a peer that read the whole window until the exchange it asks for a tick into the
        epoch brings that peer's new one."""
        at = self._last_cut if at is None else at
        epoch = at // EPOCH_MS
        nodes = tuple(nodes)
        last = self.placed
        if last is not None and last.epoch >= epoch and last.nodes == nodes and last.admitted.homes:
            # placed or taken for this epoch already; or taken, before this peer's first
            # tick, from a peer whose cut crossed into the next epoch first: kept as it is
            return last.admitted
        young = self.young_at(at)
        if (
            young
            and last is not None
            and not last.young
            and last.epoch == epoch - 1
            and last.nodes == nodes
        ):
            # Taken from a peer that read the whole window: a sticky placement moves little
            # from one epoch to the next, so it is closer to what that peer places now than
            # one from this peer's fewer cuts. Kept (as this peer's, young) for the tick or
            # two until the exchange this peer asks for brings the new one (ControlLoop).
            # Placing from its own cuts instead, even with the ask, differed at 4 more of
            # a restarted peer's first 120 ticks (docs/routing.md, "After a restart").
            self.placed = Placed(epoch, nodes, last.origin, True, last.admitted)
            return last.admitted
        size = {n: (slots or {}).get(n, self.slots_per_node) for n in nodes}
        if last is not None and epoch - 1 <= last.epoch <= epoch:
            before = last.admitted
            origin = last.origin if before.homes else epoch
        else:
            before = NONE
            for back in range(HYSTERESIS_EPOCHS - 1, 0, -1):
                sc = self.scores_at(at - back * EPOCH_MS)
                before = place_from(sc, nodes, order_of, size, before)
            origin = epoch - HYSTERESIS_EPOCHS + 1
        admitted = place_from(self.scores_at(at), nodes, order_of, size, before)
        self.placed = Placed(epoch, nodes, origin, young, admitted)
        return admitted

    def offer(self, other: Placed, now_epoch: int | None = None) -> bool:
        """Another peer's placement: taken (True) when it is for the current epoch and ranks
        before this peer's (`Placed.rank`), or this peer has none for the epoch. The caller
        checks that `other.nodes` are the nodes this peer routes to. The current epoch is
        that of the last cut observed; before the first, `now_epoch` (the wall clock's), give
        or take one: a joining peer's first push-pull comes before its first tick.

        Why: a placement keeps to the one before it, so two peers whose placements once
        differ would keep them different; the lowest rank spreads with push-pull and every
        peer chains from it from the next epoch on."""
        if not other.admitted.homes:
            return False
        if self._last_cut >= 0:
            if other.epoch != self._last_cut // EPOCH_MS:
                return False
        elif now_epoch is None or abs(other.epoch - now_epoch) > 1:
            return False
        last = self.placed
        if (
            last is not None
            and last.epoch == other.epoch
            and (last.nodes != other.nodes or last.rank <= other.rank)
        ):
            return False
        self.placed = other
        return True


def place_from(
    sc: Scores,
    nodes: Sequence[str],
    order_of: Callable[[str], Sequence[str]],
    size: Mapping[str, int],
    before: Admitted,
) -> Admitted:
    """One placement from the scores `sc` over `nodes` of `size` slots, keeping to `before`
    (the placement of the epoch before) where that is fair: one link of `Admission.place`'s
    chain."""
    if len(nodes) < 3 or not sc.scores:
        return NONE
    ranked = sorted(sc.scores, key=lambda k: (-sc.scores[k], k))
    w = sc.weight
    total_rate = sc.total_rate / w
    # a call's mean hold on a container, cold starts included (Little's law)
    hold = sc.total_in_flight / sc.total_rate if sc.total_rate > 0 else 0.0
    tail_hold = COLD_START_S + hold / 2  # a tail call is mostly cold
    fixed = order_of(TAIL_KEY)
    old_t = len(before.tail)
    t = 1
    most = max(1, len(nodes) // TAIL_SHARE)
    while True:
        tail = tuple(fixed[:t])
        protected = _protected(sc, ranked, [n for n in nodes if n not in tail], size, before)
        tail_rate = max(0.0, total_rate - sum(sc.score(k) for k in protected))
        use = tail_rate * tail_hold / sum(size[n] for n in tail)
        # Hysteresis: a tail node is given back only with a margin, or the count flaps.
        limit = TAIL_UTILISATION * (0.8 if t < old_t else 1.0)
        if use <= limit:
            break
        if t >= most:
            # The tail would saturate the nodes it may have: no admission this epoch,
            # the placed homes of the hottest functions as before issue 16.
            scores = {k: sc.score(k) for k in ranked[:HOT_HOMES]}
            return Admitted(place(scores, order_of), ())
        t += 1
    unscored = max(0.0, total_rate - sum(sc.score(k) for k in ranked))
    need = sum(sc.demand(k) for k in ranked) + unscored * IDLE_TIMEOUT_S
    if len(protected) == len(ranked) or need <= PROTECTED_FILL * sum(size.values()):
        # Every function fits the cluster's memory (each unscored call counted as a
        # container of its own): nothing to confine, LRU keeps them all; the rest go by
        # rendezvous and the tail's nodes join the others.
        tail = ()
        protected = _protected(sc, ranked, list(nodes), size, before)
    homes = _homes(sc, protected, nodes, tail, tail_rate, size, order_of, before)
    return Admitted(homes, tail)


def _protected(
    sc: Scores, ranked: list[str], nodes: list[str], size: Mapping[str, int], before: Admitted
) -> list[str]:
    room = PROTECTED_FILL * sum(size[n] for n in nodes)
    chosen: list[str] = []
    used = 0.0
    for key in ranked:
        d = sc.demand(key)
        if used + d > room:
            break
        chosen.append(key)
        used += d
    if before.homes and chosen:
        # Hysteresis: an incumbent close enough to the boundary replaces the coolest
        # newcomers rather than leaving.
        floor = KEEP_SHARE * min(
            (sc.scores[k] for k in chosen if k not in before.homes), default=0.0
        )
        for key in ranked[len(chosen) :]:
            if key not in before.homes or sc.scores[key] < floor:
                continue
            d = sc.demand(key)
            newcomers = [k for k in chosen if k not in before.homes]
            while used + d > room and newcomers:
                out = newcomers.pop()
                chosen.remove(out)
                used -= sc.demand(out)
            if used + d <= room:
                chosen.append(key)
                used += d
    return chosen


def _homes(
    sc: Scores,
    protected: list[str],
    nodes: Sequence[str],
    tail: tuple[str, ...],
    tail_rate: float,
    size: Mapping[str, int],
    order_of: Callable[[str], Sequence[str]],
    before: Admitted,
) -> dict[str, str]:
    """The protected set's homes, sticky: incumbents first where they are, then what a node
    over its memory or its calls must shed (its coolest first), then the newcomers and the
    shed, hottest first.

    Why incumbents first: placed hottest first from scratch, each home depends on every
    hotter function's, and when the protected set fills most of the memory (4 GiB nodes,
    300 functions) noise in the scores reshuffled 230 homes in 7 placements, each move a
    cold start per container (docs/routing.md, "Sticky homes")."""
    score = sc.score
    placed_rate = dict.fromkeys(nodes, 0.0)
    for n in tail:
        placed_rate[n] = tail_rate / len(tail)
    room = {n: PROTECTED_FILL * size[n] for n in nodes}
    for n in tail:
        # the tail's worst case holds TAIL_UTILISATION of a tail node's slots
        room[n] = (1.0 - TAIL_UTILISATION) * size[n]
    share = (tail_rate + sum(score(k) for k in protected)) / len(nodes)
    spread_share = CALL_SHARE * share
    ranked = sorted(protected, key=lambda k: (-sc.scores[k], k))
    homes: dict[str, str] = {}
    spread: dict[str, list[str]] = {}

    def width(key: str) -> int:
        # A function over a node's share of calls is spread by the hot-set widths over the
        # first w nodes of its order, its home first: count its calls where they will go.
        r = score(key)
        if r <= spread_share:
            return 1
        return max(1, min(len(nodes), ceil(r / spread_share - 1e-9), int(r / SPREAD_MIN_RATE)))

    def put(key: str, home: str) -> None:
        w = width(key)
        p = score(key) / w
        homes[key] = home
        room[home] -= sc.demand(key)
        placed_rate[home] += p
        if w > 1:
            spread[key] = placed_order(order_of(key), home, tail)[1:w]  # as the router
            for n in spread[key]:
                placed_rate[n] += p

    def take(key: str) -> None:
        p = score(key) / width(key)
        home = homes.pop(key)
        room[home] += sc.demand(key)
        placed_rate[home] -= p
        for n in spread.pop(key, ()):
            placed_rate[n] -= p

    def may_go(key: str, n: str) -> bool:
        # the tail's nodes take only functions LRU keeps warm there anyway
        return n not in tail or score(key) * TAIL_HOT_GAP_S >= 1.0

    # 1. Incumbents stay where their containers are.
    for key in ranked:
        old = before.homes.get(key)
        if old is not None and old in room and may_go(key, old):
            put(key, old)
    # 2. A node over its memory, or over RATE_CAP shares of calls (the most step 3 gives a
    #    node), sheds its coolest first until it is within them: the hottest keep their
    #    containers (moving one costs its calls' cold starts on the new node, a burst's
    #    included), as when homes were placed hottest first.
    held: dict[str, list[str]] = {n: [] for n in nodes}
    for key, n in homes.items():
        held[n].append(key)
    for n in nodes:
        for key in sorted(held[n], key=lambda k: (score(k), k)):
            if room[n] >= 0 and placed_rate[n] <= RATE_CAP * share:
                break
            take(key)
    # 3. Newcomers and the shed, hottest first.
    for key in ranked:
        if key in homes:
            continue
        d = sc.demand(key)
        p = score(key) / width(key)
        may = [n for n in order_of(key) if room[n] >= d and may_go(key, n)]
        if not may:
            may = [n for n in order_of(key) if n not in tail]
        # A newcomer's containers, if any, are where the last placement sent it: the first
        # of the tail's nodes in its order, or its rendezvous home. It stays there while fair.
        old = None
        if key not in before.homes:
            old = next((n for n in order_of(key) if not before.tail or n in before.tail), None)
        if old is not None and old in may and placed_rate[old] + p <= REHOME_SLACK * share:
            home = old
        elif under := [n for n in may if placed_rate[n] + p <= RATE_CAP * share]:
            # Memory first: the node with the most room left among those whose calls
            # stay under RATE_CAP shares (ties: the key's own order)
            home = max(under, key=lambda n: room[n])
        else:
            home = min(may, key=lambda n: placed_rate[n])  # ties: the key's own order
        put(key, home)
    return {key: homes[key] for key in ranked}
