"""How many nodes a function's calls spread over: its hot-set width w(f), equal on every peer.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every input carries its time
(a wall-clock cut in ms); the widths are returned.

Theory of operation
-------------------
A function's calls go to the first w(f) nodes of its rendezvous order (its *hot set*). One
node keeps the function's containers warm best (Fn keeps an idle container 30 s; spreading
over many nodes lets them go cold), so w(f) is as small as the load allows:

    base(f) = ceil(in_flight(f) / (slots_per_node * target_utilisation))

`in_flight(f)` is the cluster-wide number of calls of f in flight (each one holds a container;
by Little's law it is rate x duration, so it already weighs the rate by how long calls last),
`slots_per_node` the containers of f one node can hold (1 GiB / 128 MB = 8) and
`target_utilisation` the share of them we plan to use (0.7, Knative's default), so a burst
finds room before the width catches up. Two pressure signals add to it:

- 503 busy answers for f at `busy_widen_rate` (2) per second or more and at least
  `busy_widen_share` (a fifth) of its calls, cluster-wide: the width grows by one node per
  tick while they last (the nodes it has refuse more calls than the back-off's spill absorbs);
- optionally (`wait_widen_s`, off by default), a cluster-wide wait to start of that many
  seconds or more: one node more than `base`.

**Hysteresis.** The width is the *maximum* of these targets over the last
`shrink_window_s` seconds of ticks: it grows at the first tick that asks for more and shrinks
only when no tick in the window asked for as much (HPA's scale-down stabilisation, applied to
one function). Containers are not abandoned by a momentary dip, and a figure straddling a grid
threshold cannot make the width flap.

**Why every peer gets the same w(f).** The inputs are `ClusterLoad.width_table(n, now,
settled_ms=cut)` at cuts aligned on `tick_ms` (cut = floor((wall - settle) / tick) * tick):
every peer reads the very same cuts, and a settled read at a given cut selects, on every peer
that holds them, the same digests (each peer's newest digest stamped at or before the cut),
sums them exactly in integers and snaps them onto the same grid. `WidthTracker` is then a pure
function of the sequence of (tick index, table, node count) it is fed: the hysteresis state
depends on *which* ticks were seen and what they read, never on when a peer happened to look.
Peers differ only when one lacked a digest at a cut (rare, see docs/routing.md, the shared
load model) or missed ticks (a peer that has just started has a shorter history; it agrees
after one window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from math import ceil
from types import MappingProxyType
from typing import Final, Protocol

from fnlb.errors import LocalProtocolError

__all__ = ["NO_WIDTHS", "LoadLevels", "WidthPolicy", "WidthTracker", "aligned_cut", "base_width"]


class LoadLevels(Protocol):
    """The settled, quantised figures of one function: `fnlb.cluster.load.WidthInputs` fits."""

    @property
    def in_flight(self) -> int: ...

    @property
    def rate(self) -> float: ...

    @property
    def wait(self) -> float: ...

    @property
    def busy_rate(self) -> float: ...


@dataclass(frozen=True, slots=True)
class WidthPolicy:
    """How load turns into hot-set width. Every peer must use the same policy."""

    slots_per_node: int = 8
    """Containers of one function one Fn node can hold: node memory / function memory
    (1 GiB / 128 MB = 8, Fn's defaults). Larger keeps functions on fewer nodes."""
    target_utilisation: float = 0.7
    """Share of those slots a hot set is planned to fill (Knative's 70 %): the rest is room
    for a burst while the width catches up."""
    min_width: int = 1
    """Nodes every function gets, however idle. 1 keeps one warm home per function."""
    max_width: int = 0
    """Most nodes one function spreads over; 0: all routable nodes."""
    shrink_window_s: float = 60.0
    """Seconds a width is held after the load that asked for it has gone (Knative's stable
    window). Longer keeps containers warm through lulls; shorter concentrates sooner."""
    grow_after_s: float = 0.0
    """Seconds a higher target must last before the width follows; 0: at the first tick."""
    tick_ms: int = 1000
    """Spacing of the settled cuts the tracker is fed (ms)."""
    busy_widen_rate: float = 2.0
    """Cluster-wide 503s per second of one function that, together with `busy_widen_share`,
    widen its hot set by one node per tick while they last."""
    busy_widen_share: float = 0.2
    """Share of a function's calls answered 503 from which its hot set widens. A few 503s
    are the back-off's business (it spills the calls to the next node of the order and
    probes the busy one); only when a fifth of the calls are still refused is the set too
    narrow for what its nodes can take."""
    wait_widen_s: float = 0.0
    """Cluster-wide wait to start (s) from which a function gets one node more than its
    in-flight asks for; 0: off. Off by default: without Fn's wait header the "wait" is the
    time to first byte, which includes the function's own run time, and in simulation a
    wait caused by cold starts under memory pressure was not helped by a wider set (more
    containers, more evictions). Slow nodes are avoided per node by the back-off instead."""

    call_share: float = 1.25
    """A function whose calls/s exceed this many equal node shares of the listed functions'
    calls spreads over as many nodes as keep it under one (issue 16: a burst of a short
    function needs few containers but would make its home the busiest node by far); 0: off.
    1.25: the bounded load's balance factor."""

    def check(self) -> None:
        """Raise LocalProtocolError when a field is out of range."""
        if self.slots_per_node < 1 or not 0.0 < self.target_utilisation <= 1.0:
            raise LocalProtocolError("need slots_per_node >= 1 and 0 < target_utilisation <= 1")
        if self.min_width < 1 or self.max_width < 0 or self.tick_ms < 1:
            raise LocalProtocolError("need min_width >= 1, max_width >= 0, tick_ms >= 1")
        if self.shrink_window_s < 0 or self.busy_widen_rate <= 0 or self.wait_widen_s < 0:
            raise LocalProtocolError("need shrink_window_s >= 0 and positive pressure limits")
        if not 0 <= self.busy_widen_share <= 1:
            raise LocalProtocolError("need 0 <= busy_widen_share <= 1")
        if self.call_share < 0:
            raise LocalProtocolError("need call_share >= 0")

    @property
    def confirm_ticks(self) -> int:
        """Ticks a higher target must last before the width follows (1: at once)."""
        return max(1, ceil(self.grow_after_s * 1000.0 / self.tick_ms - 1e-9))

    @property
    def window_ticks(self) -> int:
        """Ticks over which the maximum target is taken (at least 1: the current one)."""
        return max(1, ceil(self.shrink_window_s * 1000.0 / self.tick_ms))


def aligned_cut(wall_ms: int, settle_ms: int = 1000, tick_ms: int = 1000) -> int:
    """The newest settled cut at or before `wall_ms - settle_ms`, on the `tick_ms` grid.

    Every peer computes the same cuts, so their settled reads select the same digests."""
    return (wall_ms - settle_ms) // tick_ms * tick_ms


def base_width(levels: LoadLevels, policy: WidthPolicy) -> int:
    """Nodes `levels`' in-flight calls need at the target utilisation, plus one under a long
    wait; at least `min_width`. Pure: equal inputs give equal widths on every peer."""
    per_node = policy.slots_per_node * policy.target_utilisation
    need = ceil(levels.in_flight / per_node - 1e-9)
    if policy.wait_widen_s and levels.wait >= policy.wait_widen_s:
        need += 1
    return max(need, policy.min_width)


SPREAD_MIN_RATE: Final = 1.0
"""Calls/s a function must bring each node of its hot set before it is spread for balance:
with Fn's 30 s idle timeout that keeps its container warm on every one of them."""
SPREAD_CONFIRM_TICKS: Final = 3
"""Settled ticks in a row a function's calls must exceed the call share before it is spread
for balance. The first second of a burst lists a few calls of a few functions, and one of
them over the share then is chance, not load; held for the shrink window, such a spread
put a function of the README demo on two nodes for a minute, each with its own container.
A burst that lasts spreads three seconds later."""

NO_WIDTHS: Final[Mapping[str, int]] = MappingProxyType({})


class _Track:
    """Targets of one function: the last few raw ones (to confirm a rise) and the confirmed
    ones over the window, as a monotonic (decreasing) deque."""

    __slots__ = ("raw", "spread", "targets")

    def __init__(self) -> None:
        self.targets: deque[tuple[int, int]] = deque()  # (tick, target), targets decreasing
        self.raw: deque[tuple[int, int]] = deque()  # (tick, raw target), the last few ticks
        self.spread: deque[tuple[int, int]] = deque()  # (tick, raw spread for balance)

    def confirmed(self, tick: int, raw: int, ticks: int, floor: int) -> int:
        """The lowest raw target of the last `ticks` ticks; `floor` if one is missing (the
        function was cold then)."""
        return self._lowest(self.raw, tick, raw, ticks, floor)

    def confirmed_spread(self, tick: int, raw: int, ticks: int, floor: int) -> int:
        """As `confirmed`, for the spread for balance (its own history)."""
        return self._lowest(self.spread, tick, raw, ticks, floor)

    @staticmethod
    def _lowest(q: deque[tuple[int, int]], tick: int, raw: int, ticks: int, floor: int) -> int:
        q.append((tick, raw))
        while q[0][0] <= tick - ticks:
            q.popleft()
        if len(q) < ticks:
            return floor
        return min(t for _k, t in q)

    def push(self, tick: int, target: int, oldest: int) -> int:
        q = self.targets
        while q and q[-1][1] <= target:
            q.pop()
        q.append((tick, target))
        while q[0][0] < oldest:
            q.popleft()
        return q[0][1]

    def width(self, oldest: int) -> int:
        q = self.targets
        while q and q[0][0] < oldest:
            q.popleft()
        return q[0][1] if q else 0

    def rising(self, tick: int, ticks: int, floor: int) -> bool:
        """Whether a raw target above `floor` may still be confirmed."""
        return any(k > tick - ticks and t > floor for k, t in self.raw) or any(
            k > tick - SPREAD_CONFIRM_TICKS and t > floor for k, t in self.spread
        )


class WidthTracker:
    """w(f) for every function that is not at its minimum, from settled figures per tick.

    Feed `update(cut_ms, table, nodes)` once per tick (a timer every `tick_ms`, with
    `cut_ms = aligned_cut(wall_ms, settle_ms, tick_ms)`); read `widths` (an immutable mapping,
    swapped whole, so the request path reads it without a lock). A function absent from
    `widths` has `min_width`.
    """

    __slots__ = ("_last_tick", "_policy", "_tracks", "widths")

    def __init__(self, policy: WidthPolicy | None = None) -> None:
        self._policy = policy or WidthPolicy()
        self._policy.check()
        self._tracks: dict[str, _Track] = {}
        self._last_tick: int | None = None
        self.widths: Mapping[str, int] = NO_WIDTHS

    @property
    def policy(self) -> WidthPolicy:
        return self._policy

    def update(self, cut_ms: int, table: Mapping[str, LoadLevels], nodes: int) -> bool:
        """Fold the settled figures read at `cut_ms` in; True if this tick was new.

        `table`: the width inputs of the hottest functions at that cut (absent = cold);
        `nodes`: the routable nodes then (caps the growth under 503s). A tick at or before one
        already seen is ignored, so a late or repeated timer cannot change the result.
        """
        p = self._policy
        if cut_ms % p.tick_ms:
            raise LocalProtocolError(f"cut {cut_ms} ms is not on the {p.tick_ms} ms grid")
        tick = cut_ms // p.tick_ms
        if self._last_tick is not None and tick <= self._last_tick:
            return False
        self._last_tick = tick
        oldest = tick - p.window_ticks + 1
        cap = nodes if p.max_width == 0 else min(nodes, p.max_width)
        cap = max(cap, p.min_width)
        confirm = p.confirm_ticks
        previous = self.widths
        out: dict[str, int] = {}
        share = p.call_share * sum(v.rate for v in table.values()) / max(nodes, 1)
        for fn, levels in table.items():
            target = base_width(levels, p)
            spread = p.min_width
            if share > 0.0 and levels.rate > share:
                # ... while every node it spreads to keeps a container warm (a call a second)
                spread = min(ceil(levels.rate / share - 1e-9), int(levels.rate / SPREAD_MIN_RATE))
                spread = min(max(spread, p.min_width), cap)
            if levels.busy_rate >= max(p.busy_widen_rate, p.busy_widen_share * levels.rate):
                target = max(target, previous.get(fn, p.min_width) + 1)
            target = min(target, cap)
            track = self._tracks.get(fn)
            if track is None:
                if target <= p.min_width and spread <= p.min_width:
                    continue  # nothing to remember: the default width
                track = self._tracks[fn] = _Track()
            if confirm > 1:
                target = track.confirmed(tick, target, confirm, p.min_width)
            # The spread for balance is confirmed on its own (SPREAD_CONFIRM_TICKS)
            spread = track.confirmed_spread(tick, spread, SPREAD_CONFIRM_TICKS, p.min_width)
            width = track.push(tick, max(target, spread), oldest)
            if width > p.min_width:
                out[fn] = width
        for fn in [f for f in self._tracks if f not in table]:
            width = self._tracks[fn].width(oldest)
            if width > p.min_width:
                out[fn] = width
        for fn in [f for f in self._tracks if f not in out]:
            track = self._tracks[fn]
            if track.width(oldest) <= p.min_width and not track.rising(tick, confirm, p.min_width):
                del self._tracks[fn]
        self.widths = MappingProxyType(out)
        return True

    def width(self, fn: str) -> int:
        """`fn`'s current width before the cap by routable nodes (`min_width` when absent)."""
        return self.widths.get(fn, self._policy.min_width)
