"""Shared load: this peer's per (function, node) figures, and the cluster-wide view of them.

Rule 1: no asyncio, socket, time or global random here.
Rule 2: every input carries `now` (seconds, any monotonic origin shared by the calls of one
object); every output is returned. The runtime feeds calls in, publishes digests, merges the
digests peers send, and reads figures out.

Theory of operation
-------------------
`LocalLoad` is written on the request path: `call_started` and `call_finished` are O(1) and
allocate nothing after the first call of a (function, node) pair; they update a record with
__slots__ in place. Rates are exponentially decayed counts with time constant `tau`
(`time_constant_s`, default 3 s): an event `age` seconds old weighs exp(-age / tau), and the
rate is the weighted count divided by tau. For steady traffic at r calls/s this converges to r;
after a step change it moves 63 % of the way in tau seconds. To make writes cheap the decay is
"forward": an event at time t adds exp((t - L) / tau) for a landmark L, and a reader multiplies
by exp((L - now) / tau) once for all records. `sweep` moves the landmark forward (rescaling every
record, O(records), every ~50 tau) before the weights could overflow.

Figures per (function, node): arrivals (calls/s, counted when a call starts, so a call retried
on another node counts once on each), in-flight (exact), wait to start (the decayed mean of
`Xxx-Fxlb-Wait` when the server sent it, else of the time to first byte of answers below 500;
503 answers give no wait sample), and busy 503s per second. Per node: the same, summed over
functions. Functions idle for `expire_after_s` with nothing in flight are dropped by `sweep`.
Each record also counts the answers returned to clients in the current whole second, for
`GET /1/lb/stats` (`answers_per_second`): a closed second moves to a list kept for
`seconds_kept`, so that read needs no second structure written per call.

`ClusterLoad` keeps the last few digests (see `load_digest`) of each peer, this one's own
included, and answers cluster-wide questions from them. Each peer's in-flight counts are a
snapshot taken when its digest was made: they are used while that digest is younger than
`in_flight_ttl_s` and count as 0 after; a digest older than `stale_after_s` is ignored
altogether (and dropped by `expire`). Sums are taken over integer wire units, so they are
exact and the same on every peer holding the same digests.

Identical decisions: gossip delivers each digest to each peer at a different moment, so the
newest digests differ from peer to peer most of the time. Settled reads (`settled_ms`, a
wall-clock cut about a second back) use each peer's newest digest *stamped* before the cut and
judge age by stamps alone; by then gossip has delivered those digests everywhere, so peers
select the same digests and compute the same sums. `width_inputs` then snaps the sums onto
geometric grids (levels ~19 % apart) for routing's hot-set width.
"""

from __future__ import annotations

import heapq
import zlib
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from math import exp, expm1
from types import MappingProxyType
from typing import Final

import msgpack

from fnlb.errors import LocalProtocolError
from fnlb.payloads.load_digest import (
    GOSSIP_BUDGET_BYTES,
    ZERO_ROW,
    Digest,
    Row,
    decode_digest,
    encode_digest,
    quantise,
)
from fnlb.routing.attempt import BUSY

"""The status an Fn server answers with when it has no room for a call."""

_REBASE_SOFT = 50.0  # in time constants: sweep moves the landmark past this
_REBASE_HARD = 200.0  # the request path does it itself past this (exp overflows near 709)
_EVICT_TRIES = 8
_MAX_WAIT_S = 86_400.0  # a wait sample beyond a day is garbage, not a wait

TIME_CONSTANT_S: Final = 1.0
"""The rates' time constant: a step reaches 90 % in 2.3 s (the cluster's rate of a new hot
function is known everywhere within 3 s, issue #11; 3 s took 6.9 s). docs/routing.md, "Time
constants", has what it does to routing."""
YOUNG_FLOOR_S: Final = 0.5
"""The least age a record's rate is corrected for (`LocalLoad._young`): one lone call does
not read as a huge rate."""
HISTORY: Final = 32
"""Digests kept per peer: enough for settled reads as far back as the control loop reads
skipped cuts (5 cuts before one read up to 2 s late: 7.3 s, 25 sums at one per 0.3 s). With
8 (2.1 s) such a read found no sum on the root, which holds its sums as it makes them, sooner
than on its children, whose copies arrive later: their reads could differ."""
HISTORY_ENTRIES: Final = 12_000
"""Most functions and nodes listed, summed over a peer's kept digests, beyond its newest: a
full push-pull digest of 10,000 functions is kept, not several (each holds ~5 MB decoded)."""


# --- local figures --------------------------------------------------------------------------


class _NodeRec:
    """Totals over all functions on one node; shared by that node's cells."""

    __slots__ = ("born", "cells", "g_arr", "g_busy", "g_wait", "g_ws", "in_flight")

    def __init__(self, now: float) -> None:
        self.born = now
        self.cells = 0
        self.in_flight = 0
        self.g_arr = 0.0
        self.g_ws = 0.0
        self.g_wait = 0.0
        self.g_busy = 0.0


class _Cell:
    """One (function, node) pair; `g_*` are forward-decayed sums (see the module docstring)."""

    __slots__ = (
        "born",
        "g_arr",
        "g_busy",
        "g_wait",
        "g_ws",
        "in_flight",
        "last",
        "node",
        "sec",
        "sec_calls",
        "sec_first",
        "sec_wait",
    )

    def __init__(self, node: _NodeRec, now: float) -> None:
        self.born = now
        self.node = node
        self.in_flight = 0
        self.last = now
        self.g_arr = 0.0
        self.g_ws = 0.0  # weight of wait samples
        self.g_wait = 0.0  # weighted sum of wait samples, seconds
        self.g_busy = 0.0
        # answers in the second `sec` (see `LocalLoad.answers_per_second`)
        self.sec = -1
        self.sec_calls = 0
        self.sec_wait = 0.0
        self.sec_first = 0.0


class _FnRec:
    __slots__ = ("born", "cells", "g_arr", "in_flight", "last")

    def __init__(self, now: float) -> None:
        self.born = now
        self.cells: dict[str, _Cell] = {}
        self.in_flight = 0
        self.last = now
        self.g_arr = 0.0


@dataclass(frozen=True, slots=True)
class SecondCount:
    """Answers from one node for one function within one whole second of Unix time."""

    second: int
    first: float
    """When the first of them came (Unix time, seconds)."""
    node: str
    fn: str
    calls: int
    wait_sum: float
    """Sum of their `Xxx-Fxlb-Wait` in seconds (0 for answers without the header)."""


@dataclass(frozen=True, slots=True)
class NodeShare:
    """Load on one node (of one function, or of all): calls/s, count, seconds, busy 503s/s."""

    rate: float
    in_flight: int
    wait: float
    busy_rate: float


@dataclass(frozen=True, slots=True)
class FunctionLoad:
    """A function's load, in total and per node.

    `complete` is False when some peer's digest lumped this function with others (it was not
    among that peer's hottest), so the figures are a lower bound.
    """

    rate: float
    in_flight: int
    wait: float
    busy_rate: float
    nodes: Mapping[str, NodeShare]
    complete: bool = True


_NO_NODES: Final[Mapping[str, NodeShare]] = MappingProxyType({})
IDLE: Final = FunctionLoad(0.0, 0, 0.0, 0.0, _NO_NODES)
IDLE_NODE: Final = NodeShare(0.0, 0, 0.0, 0.0)


class LocalLoad:
    """This peer's load figures, written by the request path, read by gossip and routing."""

    __slots__ = (
        "_fns",
        "_inv_tau",
        "_landmark",
        "_nodes",
        "_past_seconds",
        "_seq",
        "epoch",
        "evicted",
        "expire_after_s",
        "max_functions",
        "seconds_kept",
        "tau",
    )

    def __init__(
        self,
        *,
        time_constant_s: float = TIME_CONSTANT_S,
        expire_after_s: float = 120.0,
        max_functions: int = 100_000,
        epoch: int = 0,
        seconds_kept: int = 60,
    ) -> None:
        """`epoch`: a number larger at each start of this peer (wall-clock ms will do), so
        peers order a restarted peer's digests after its old ones. `max_functions`: a hard cap
        on tracked functions (a client spraying random paths cannot grow memory without
        bound); past it, the least recently swept idle function is evicted and counted in
        `evicted`. `seconds_kept`: how far back `answers_per_second` looks, in seconds."""
        if not time_constant_s > 0 or not expire_after_s > 0 or max_functions < 1:
            raise LocalProtocolError("time constant, expiry and max_functions must be positive")
        if seconds_kept < 1:
            raise LocalProtocolError("seconds_kept must be positive")
        self.tau = time_constant_s
        self._inv_tau = 1.0 / time_constant_s
        self.expire_after_s = expire_after_s
        self.max_functions = max_functions
        self.epoch = epoch
        self.evicted = 0
        self._seq = 0
        self._landmark = 0.0
        self._fns: OrderedDict[str, _FnRec] = OrderedDict()
        self._nodes: dict[str, _NodeRec] = {}
        self.seconds_kept = seconds_kept
        # closed per-second counts of answers: (second, first, node, fn, calls, wait_sum)
        self._past_seconds: deque[tuple[int, float, str, str, int, float]] = deque()

    # -- the request path --------------------------------------------------------------------

    def call_started(self, fn: str, node: str, now: float) -> None:
        """A call of `fn` was sent to `node`. O(1); allocates only for a new pair."""
        rec = self._fns.get(fn)
        if rec is None:
            rec = self._new_function(fn, now)
        cell = rec.cells.get(node)
        if cell is None:
            cell = self._new_cell(rec, node, now)
        x = (now - self._landmark) * self._inv_tau
        if x > _REBASE_HARD:
            self._rebase(now)
            x = 0.0
        e = exp(x)
        cell.g_arr += e
        cell.in_flight += 1
        cell.last = now
        rec.g_arr += e
        rec.in_flight += 1
        rec.last = now
        nrec = cell.node
        nrec.g_arr += e
        nrec.in_flight += 1

    def call_finished(
        self,
        fn: str,
        node: str,
        status: int,
        wait_s: float | None,
        ttfb_s: float | None,
        now: float,
        answered_at: float | None = None,
    ) -> None:
        """A call started with `call_started(fn, node)` ended (answered, failed or cancelled).

        `status`: the node's HTTP status (0 or any >= 500 when no answer came). `wait_s`: the
        `Xxx-Fxlb-Wait` header in seconds, None when absent. `ttfb_s`: seconds until the first
        byte of the answer, None when none came; it stands in for the wait when the header is
        absent and the status is below 500. A 503 counts as busy and gives no wait sample.
        `answered_at`: when the answer this call returns to its client came (Unix time), None
        for an attempt whose answer is not returned (a failure, a busy node retried); these
        are what `answers_per_second` counts.
        """
        rec = self._fns.get(fn)
        cell = None if rec is None else rec.cells.get(node)
        if rec is None or cell is None or cell.in_flight <= 0:
            raise LocalProtocolError(f"call_finished({fn!r}, {node!r}) without call_started")
        if answered_at is not None:
            second = int(answered_at)
            if cell.sec == second:
                cell.sec_calls += 1
                cell.sec_wait += wait_s or 0.0
            else:
                if cell.sec_calls:
                    self._close_second(fn, node, cell, second)
                cell.sec = second
                cell.sec_calls = 1
                cell.sec_wait = wait_s or 0.0
                cell.sec_first = answered_at
        x = (now - self._landmark) * self._inv_tau
        if x > _REBASE_HARD:
            self._rebase(now)
            x = 0.0
        nrec = cell.node
        cell.in_flight -= 1
        cell.last = now
        rec.in_flight -= 1
        rec.last = now
        nrec.in_flight -= 1
        if status == BUSY:
            e = exp(x)
            cell.g_busy += e
            nrec.g_busy += e
            return
        w = wait_s if wait_s is not None else (ttfb_s if status < 500 else None)
        if w is not None and 0.0 <= w < _MAX_WAIT_S:  # NaN and inf fail the comparison
            e = exp(x)
            cell.g_ws += e
            cell.g_wait += w * e
            nrec.g_ws += e
            nrec.g_wait += w * e

    def _close_second(self, fn: str, node: str, cell: _Cell, now_second: int) -> None:
        past = self._past_seconds
        past.append((cell.sec, cell.sec_first, node, fn, cell.sec_calls, cell.sec_wait))
        horizon = now_second - self.seconds_kept
        while past and past[0][0] <= horizon:
            past.popleft()

    def _new_function(self, fn: str, now: float) -> _FnRec:
        fns = self._fns
        if len(fns) >= self.max_functions:
            for _ in range(_EVICT_TRIES):
                old_fn, old = fns.popitem(last=False)
                if old.in_flight == 0:
                    self._release(old_fn, old)
                    self.evicted += 1
                    break
                fns[old_fn] = old
        rec = fns[fn] = _FnRec(now)
        return rec

    def _new_cell(self, rec: _FnRec, node: str, now: float) -> _Cell:
        nrec = self._nodes.get(node)
        if nrec is None:
            nrec = self._nodes[node] = _NodeRec(now)
        nrec.cells += 1
        cell = rec.cells[node] = _Cell(nrec, now)
        return cell

    def _release(self, fn: str, rec: _FnRec) -> None:
        for node, cell in rec.cells.items():
            self._release_cell(fn, node, cell)

    def _release_cell(self, fn: str, node: str, cell: _Cell) -> None:
        """Take an idle cell's (long decayed) weights out of its node, and the node with its
        last cell. Its answers of the last second it saw stay counted."""
        if cell.sec_calls:
            self._close_second(fn, node, cell, cell.sec)
        nrec = cell.node
        nrec.cells -= 1
        if nrec.cells == 0:
            del self._nodes[node]
            return
        nrec.g_arr = max(0.0, nrec.g_arr - cell.g_arr)
        nrec.g_ws = max(0.0, nrec.g_ws - cell.g_ws)
        nrec.g_wait = max(0.0, nrec.g_wait - cell.g_wait)
        nrec.g_busy = max(0.0, nrec.g_busy - cell.g_busy)

    # -- maintenance -------------------------------------------------------------------------

    def sweep(self, now: float, limit: int | None = None) -> int:
        """Drop functions (and per-node cells) idle for `expire_after_s`; returns how many
        functions went.

        Examines `limit` functions (default: all), oldest-examined first, so a runtime may
        call it often with a small limit to spread the cost. Also moves the decay landmark
        when due (O(records), every ~50 time constants).
        """
        if (now - self._landmark) * self._inv_tau > _REBASE_SOFT:
            self._rebase(now)
        fns = self._fns
        n = len(fns) if limit is None else min(limit, len(fns))
        cutoff = now - self.expire_after_s
        dropped = 0
        for _ in range(n):
            fn, rec = fns.popitem(last=False)
            if rec.in_flight == 0 and rec.last < cutoff:
                self._release(fn, rec)
                dropped += 1
                continue
            if len(rec.cells) > 1:
                idle = [k for k, c in rec.cells.items() if c.in_flight == 0 and c.last < cutoff]
                for node in idle:
                    cell = rec.cells.pop(node)
                    rec.g_arr = max(0.0, rec.g_arr - cell.g_arr)
                    self._release_cell(fn, node, cell)
            fns[fn] = rec
        return dropped

    def _rebase(self, now: float) -> None:
        # Every weight is relative to the landmark: moving it rescales them all at once.
        f = exp((self._landmark - now) * self._inv_tau)
        self._landmark = now
        for rec in self._fns.values():
            rec.g_arr *= f
            for c in rec.cells.values():
                c.g_arr *= f
                c.g_ws *= f
                c.g_wait *= f
                c.g_busy *= f
        for n in self._nodes.values():
            n.g_arr *= f
            n.g_ws *= f
            n.g_wait *= f
            n.g_busy *= f

    # -- reading -----------------------------------------------------------------------------

    @property
    def function_count(self) -> int:
        """Functions tracked now (active, or idle for less than `expire_after_s`)."""
        return len(self._fns)

    @property
    def cell_count(self) -> int:
        """(function, node) pairs tracked now."""
        return sum(len(r.cells) for r in self._fns.values())

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    def in_flight(self, fn: str, node: str | None = None) -> int:
        """Calls of `fn` in flight from this peer (to `node`, or to any node). Exact."""
        rec = self._fns.get(fn)
        if rec is None:
            return 0
        if node is None:
            return rec.in_flight
        cell = rec.cells.get(node)
        return 0 if cell is None else cell.in_flight

    def node_in_flight(self, node: str) -> int:
        """Calls in flight from this peer to `node`, all functions. Exact."""
        nrec = self._nodes.get(node)
        return 0 if nrec is None else nrec.in_flight

    def _rate_factor(self, now: float) -> float:
        return exp((self._landmark - now) * self._inv_tau) * self._inv_tau

    def _young(self, born: float, now: float) -> float:
        """How much to scale the rate of a record first seen at `born`: 1 / (1 - exp(-age /
        tau)) while it is young, 1 once it is old (below 0.1 %: after 7 tau).

        The decayed count of steady calls at r/s that began `age` ago is r x tau x (1 -
        exp(-age / tau)), not r x tau: a new function's rate read as the plain decayed count
        would climb to r only over a few tau (90 % after 2.3 tau), however many calls it
        had, as if calls before its first had been zero. Dividing by the weight the record
        has actually had reads r from the first calls. The age is floored at
        YOUNG_FLOOR_S, so one lone call reads at most 1 / (tau (1 - exp(-0.5 / tau))) calls/s
        (2.5 at tau = 1 s) rather than infinity.
        """
        x = (now - born) * self._inv_tau
        if x >= 7.0:
            return 1.0
        return 1.0 / -expm1(-max(x, YOUNG_FLOOR_S * self._inv_tau))

    def function_load(self, fn: str, now: float) -> FunctionLoad:
        """This peer's own figures for `fn`, unquantised (IDLE when it is not tracked)."""
        rec = self._fns.get(fn)
        if rec is None:
            return IDLE
        r = self._rate_factor(now)
        nodes = {
            node: _share(
                c.g_arr, c.in_flight, c.g_ws, c.g_wait, c.g_busy, r * self._young(c.born, now)
            )
            for node, c in sorted(rec.cells.items())
        }
        return _combine(nodes)

    def node_load(self, node: str, now: float) -> NodeShare:
        """This peer's own figures for `node` over all functions, unquantised."""
        n = self._nodes.get(node)
        if n is None:
            return IDLE_NODE
        r = self._rate_factor(now) * self._young(n.born, now)
        return _share(n.g_arr, n.in_flight, n.g_ws, n.g_wait, n.g_busy, r)

    def answers_per_second(self, now: float) -> list[SecondCount]:
        """Answers per (second, node, function) over the last `seconds_kept` seconds, by
        second and then by when each pair's first answer in that second came.

        O(functions tracked + seconds kept): for a management read, not the request path.
        """
        horizon = int(now) - self.seconds_kept
        rows = [row for row in self._past_seconds if row[0] > horizon]
        for fn, rec in self._fns.items():
            for node, c in rec.cells.items():
                if c.sec_calls and c.sec > horizon:
                    rows.append((c.sec, c.sec_first, node, fn, c.sec_calls, c.sec_wait))
        rows.sort(key=lambda row: (row[0], row[1]))
        return [SecondCount(*row) for row in rows]

    def digest(
        self, now: float, budget_bytes: int = GOSSIP_BUDGET_BYTES, *, stamp_ms: int = 0
    ) -> bytes:
        """This peer's figures as a digest of at most `budget_bytes` (see `load_digest`).

        `stamp_ms`: the wall clock now, in ms since the Unix epoch, for digests that are
        broadcast to every peer; settled reads of `ClusterLoad` select digests by it, so peers
        decide alike. Leave it 0 for a push-pull digest: it reaches one peer only, so it must
        not be selected by settled reads (an unstamped digest never is).

        The hottest functions (by calls/s + in-flight) are listed per node, the next ones by
        their totals, the rest lumped. Each call takes the next sequence number. Cost:
        O(functions) to rank them, about 2 ms for 10,000 functions.
        """
        r = self._rate_factor(now)
        young = self._young
        node_rows = sorted(
            (
                (
                    name,
                    _row(n.g_arr, n.in_flight, n.g_ws, n.g_wait, n.g_busy, r * young(n.born, now)),
                )
                for name, n in self._nodes.items()
            ),
            key=lambda item: (-(item[1][0] + 100 * item[1][1]), item[0]),
        )
        totals = (
            sum(row[0] for _n, row in node_rows),
            sum(row[1] for _n, row in node_rows),
            0,
            sum(row[3] for _n, row in node_rows),
        )
        k = max(1, budget_bytes // 6)  # no entry is smaller than 6 bytes
        items = self._fns.items()
        ranked: Sequence[tuple[str, _FnRec]]

        def hotness(kv: tuple[str, _FnRec]) -> float:
            rec = kv[1]
            return rec.g_arr * r * young(rec.born, now) + rec.in_flight

        if k < len(self._fns):
            ranked = heapq.nlargest(k, items, key=hotness)
        else:
            ranked = sorted(items, key=lambda kv: -hotness(kv))
        self._seq += 1
        return encode_digest(
            epoch=self.epoch,
            seq=self._seq,
            functions=_function_rows(ranked, r, lambda born: young(born, now)),
            nodes=node_rows,
            totals=totals,
            function_count=len(self._fns),
            budget=budget_bytes,
            stamp_ms=stamp_ms,
        )


def _row(g_arr: float, in_flight: int, g_ws: float, g_wait: float, g_busy: float, r: float) -> Row:
    return quantise(g_arr * r, in_flight, g_wait / g_ws if g_ws > 0.0 else 0.0, g_busy * r)


def _share(
    g_arr: float, in_flight: int, g_ws: float, g_wait: float, g_busy: float, r: float
) -> NodeShare:
    return NodeShare(g_arr * r, in_flight, g_wait / g_ws if g_ws > 0.0 else 0.0, g_busy * r)


def _combine(nodes: dict[str, NodeShare], complete: bool = True) -> FunctionLoad:
    rate = sum(s.rate for s in nodes.values())
    weight = sum(max(s.rate, 1e-9) for s in nodes.values())
    wait = sum(s.wait * max(s.rate, 1e-9) for s in nodes.values()) / weight if nodes else 0.0
    return FunctionLoad(
        rate,
        sum(s.in_flight for s in nodes.values()),
        wait,
        sum(s.busy_rate for s in nodes.values()),
        MappingProxyType(nodes),
        complete,
    )


def _function_rows(
    ranked: Sequence[tuple[str, _FnRec]], r: float, young: Callable[[float], float]
) -> Iterator[tuple[str, list[tuple[str, Row]]]]:
    for fn, rec in ranked:
        cells = []
        for node, c in rec.cells.items():
            row = _row(c.g_arr, c.in_flight, c.g_ws, c.g_wait, c.g_busy, r * young(c.born))
            if row != ZERO_ROW:
                cells.append((node, row))
        if cells:
            yield fn, cells


# --- quantisation for identical decisions ---------------------------------------------------


def _grid(start: int, stop: int) -> tuple[int, ...]:
    """Integer thresholds start * 2^(k/4), k = 0, 1, ... (steps of ~19 %), duplicates removed.

    Rounded to integers once, at import, so every platform gets the same table whatever its
    libm does in the last bit.
    """
    out: list[int] = []
    k = 0
    while True:
        v = round(start * 2 ** (k / 4))
        if v > stop:
            return tuple(out)
        if not out or v > out[-1]:
            out.append(v)
        k += 1


RATE_GRID: Final = _grid(10, 10**14)
"""Rate thresholds in centi-calls/s, from 0.1 call/s up by 2^(1/4)."""
COUNT_GRID: Final = _grid(1, 10**12)
"""In-flight thresholds: 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, ..."""
WAIT_GRID: Final = COUNT_GRID
"""Wait thresholds in milliseconds: 1 ms, 2 ms, ... up by 2^(1/4)."""


def grid_level(units: int, grid: Sequence[int]) -> int:
    """How many thresholds of `grid` are <= `units`: 0 below the first one."""
    return bisect_right(grid, units)


def grid_floor(level: int, grid: Sequence[int]) -> int:
    """The smallest value (in grid units) at `level`: 0 for level 0."""
    return grid[level - 1] if level > 0 else 0


@dataclass(frozen=True, slots=True)
class WidthInputs:
    """A function's cluster-wide load snapped onto geometric grids, for hot-set width.

    Levels are the inputs: equal on two peers that hold the same digests, and unchanged by
    differences of less than one grid step (~19 %) unless they straddle a threshold. Routing
    should add its own hysteresis on top (e.g. widen at level L, narrow only below L - 2).
    `peers`: how many peers' fresh digests contributed.
    """

    rate_level: int
    in_flight_level: int
    wait_level: int
    busy_level: int
    peers: int

    @property
    def rate(self) -> float:
        """Calls/s at the bottom of the rate level."""
        return grid_floor(self.rate_level, RATE_GRID) / 100.0

    @property
    def in_flight(self) -> int:
        return grid_floor(self.in_flight_level, COUNT_GRID)

    @property
    def wait(self) -> float:
        """Seconds at the bottom of the wait level."""
        return grid_floor(self.wait_level, WAIT_GRID) / 1000.0

    @property
    def busy_rate(self) -> float:
        return grid_floor(self.busy_level, RATE_GRID) / 100.0


COLD: Final = WidthInputs(0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What every peer should agree on when gossip has converged; compare with `checksum`.

    Totals are in wire units (centi-calls/s, counts) and include lumped functions and nodes.
    """

    peers: tuple[str, ...]
    rate_c: int
    in_flight: int
    busy_c: int
    hot: tuple[tuple[str, WidthInputs], ...]

    def checksum(self) -> int:
        """CRC-32 of a canonical encoding of the quantised summary."""
        body = [
            list(self.peers),
            grid_level(self.rate_c, RATE_GRID),
            grid_level(self.in_flight, COUNT_GRID),
            grid_level(self.busy_c, RATE_GRID),
            [
                [fn, w.rate_level, w.in_flight_level, w.wait_level, w.busy_level, w.peers]
                for fn, w in self.hot
            ],
        ]
        return zlib.crc32(msgpack.packb(body, use_bin_type=True))


# --- the cluster-wide view ------------------------------------------------------------------


class _Units:
    """Integer accumulator for one node's share of a function: exact, order-independent."""

    __slots__ = ("busy_c", "in_flight", "rate_c", "wait_sum", "wait_weight")

    def __init__(self) -> None:
        self.rate_c = 0
        self.in_flight = 0
        self.wait_sum = 0
        self.wait_weight = 0
        self.busy_c = 0

    def add(self, row: Row, with_in_flight: bool) -> None:
        r, i, w, b = row
        weight = max(r, 1)  # waits weigh by calls; a 0-rate row still counts a little
        self.rate_c += r
        if with_in_flight:
            self.in_flight += i
        self.wait_sum += w * weight
        self.wait_weight += weight
        self.busy_c += b

    @property
    def wait_ms(self) -> int:
        return self.wait_sum // self.wait_weight if self.wait_weight else 0

    def share(self) -> NodeShare:
        return NodeShare(
            self.rate_c / 100.0,
            self.in_flight,
            self.wait_sum / self.wait_weight / 1000.0 if self.wait_weight else 0.0,
            self.busy_c / 100.0,
        )


def _entries(d: Digest) -> int:
    return len(d.functions) + len(d.totals) + len(d.nodes)


class ClusterLoad:
    """The recent load digests of every peer (this one included), and sums over them.

    Feed it `merge(peer, digest_bytes, now)` for every digest received by broadcast or
    push-pull and for each of this peer's own digests (so this peer sees itself exactly as the
    others do), `peer_left(peer)` when membership says a peer is gone, and `expire(now)` now
    and then to free stale digests.

    Reads come in two kinds. By default they use each peer's newest digest, judged fresh by
    when it arrived here (`now`, this process's clock): the most current figures. Given
    `settled_ms` (a wall-clock time in ms, typically now minus one second), they use instead
    each peer's newest digest *stamped* at or before `settled_ms`, judged by stamps alone: peers
    whose clocks agree and who have received the same digests by then (gossip has had a second
    to deliver them) select the very same digests, hence compute the very same figures. Routing
    decisions that every peer must make alike should use settled reads.
    """

    __slots__ = (
        "_history",
        "_left",
        "in_flight_ttl_s",
        "kept",
        "single_source",
        "stale_after_s",
        "version",
    )

    def __init__(
        self,
        *,
        stale_after_s: float = 5.0,
        in_flight_ttl_s: float = 2.5,
        single_source: bool = False,
    ) -> None:
        """`stale_after_s`: a digest older than this is ignored (a peer sends one every few
        hundred ms, so this survives a few lost broadcasts). `in_flight_ttl_s`: a digest's
        in-flight counts are used only while it is younger than this. `single_source`: the
        digests are whole-cluster sums from whichever peer is the load tree's root
        (fnlb.cluster.load_tree): reads use one of them, the newest by stamp (ties to the
        smaller name), never their sum; a former root's last sums (a root that died, or
        one of two sides' roots after a partition healed) are then passed over at once."""
        if not 0 < in_flight_ttl_s <= stale_after_s:
            raise LocalProtocolError("need 0 < in_flight_ttl_s <= stale_after_s")
        self.stale_after_s = stale_after_s
        self.in_flight_ttl_s = in_flight_ttl_s
        self.single_source = single_source
        self.version = 0
        """Incremented whenever the newest digest of some peer changes."""
        self.kept = 0
        """Incremented whenever a digest is kept (a newest one, or an older one not held)."""
        # per peer: its last HISTORY digests with their arrival times, oldest first
        self._history: dict[str, list[tuple[Digest, float]]] = {}
        # peers that left: the order of their last digest and when they left
        self._left: dict[str, tuple[tuple[int, int], float]] = {}

    def merge(self, peer: str, data: bytes, now: float) -> bool:
        """Keep `data` among `peer`'s recent digests; True if it is now the newest.

        An older digest arriving late is kept too if it is not a repeat (settled reads may
        need it). When the newest held is stale, the history restarts: a peer restarted with
        the same epoch starts its sequence again. Raises RemoteProtocolError(reason) if `data`
        is not a valid digest (drop and count); nothing changes then.
        """
        digest = decode_digest(data)
        gone = self._left.get(peer)
        if gone is not None:
            if digest.order <= gone[0] and now - gone[1] <= self.stale_after_s:
                return False  # a late copy of a departed peer's digest, still gossiped
            del self._left[peer]
        hist = self._history.get(peer)
        if hist is None or now - hist[-1][1] > self.stale_after_s:
            hist = self._history[peer] = []
        order = digest.order
        at = len(hist)
        while at > 0 and hist[at - 1][0].order > order:
            at -= 1
        if at > 0 and hist[at - 1][0].order == order:
            return False  # a repeat
        if at == 0 and len(hist) >= HISTORY:
            return False  # older than everything kept
        newest = at == len(hist)
        hist.insert(at, (digest, now))
        self.kept += 1
        if len(hist) > HISTORY:
            del hist[0]
        while len(hist) > 1 and sum(_entries(d) for d, _t in hist) > HISTORY_ENTRIES:
            del hist[0]  # push-pull digests are large: keep few of them
        if newest:
            self.version += 1
        return newest

    def newest_stamp_ms(self, peer: str) -> int | None:
        """The stamp (wall ms) of `peer`'s newest digest held, None when none is."""
        hist = self._history.get(peer)
        return hist[-1][0].stamp_ms if hist else None

    def peer_left(self, peer: str, now: float) -> bool:
        """Forget `peer`'s digests (it left or was declared dead); True if there were some.

        Copies of its digests still travelling are refused for `stale_after_s`; a digest it
        makes after coming back (a higher sequence, or a higher epoch after a restart) is not.
        """
        hist = self._history.pop(peer, None)
        if hist is None:
            return False
        self._left[peer] = (hist[-1][0].order, now)
        self.version += 1
        return True

    def expire(self, now: float) -> list[str]:
        """Drop peers whose newest digest arrived more than `stale_after_s` ago; returns them."""
        old = [p for p, h in self._history.items() if now - h[-1][1] > self.stale_after_s]
        for p in old:
            del self._history[p]
        for p in [p for p, (_o, t) in self._left.items() if now - t > self.stale_after_s]:
            del self._left[p]
        if old:
            self.version += 1
        return old

    def digests(self, now: float) -> list[Digest]:
        """Each peer's newest fresh digest, by peer name."""
        return [d for _p, d, _i in self._select_all(now, None)]

    def _select(self, now: float, settled_ms: int | None) -> list[tuple[str, Digest, bool]]:
        """(peer, digest, whether its in-flight counts are used) for every peer counted, by
        peer name: the newest fresh digest, or the newest settled one; with `single_source`
        only the newest of those (by stamp, then the smaller name)."""
        out = self._select_all(now, settled_ms)
        if self.single_source and len(out) > 1:
            return [min(out, key=lambda s: (-s[1].stamp_ms, s[0]))]
        return out

    def _select_all(self, now: float, settled_ms: int | None) -> list[tuple[str, Digest, bool]]:
        out: list[tuple[str, Digest, bool]] = []
        if settled_ms is None:
            for p, hist in sorted(self._history.items()):
                d, t = hist[-1]
                if now - t <= self.stale_after_s:
                    out.append((p, d, now - t <= self.in_flight_ttl_s))
            return out
        stale_ms = self.stale_after_s * 1000.0
        ttl_ms = self.in_flight_ttl_s * 1000.0
        for p, hist in sorted(self._history.items()):
            for d, _t in reversed(hist):
                if d.stamp_ms == 0:
                    continue  # unstamped (a push-pull digest reaches one peer only): skip it
                if d.stamp_ms <= settled_ms:
                    age = settled_ms - d.stamp_ms
                    if age <= stale_ms:
                        out.append((p, d, age <= ttl_ms))
                    break
        return out

    def peers(self, now: float, settled_ms: int | None = None) -> list[str]:
        """Peers counted by reads (fresh, or settled), sorted."""
        return [p for p, _d, _i in self._select(now, settled_ms)]

    def _function_units(
        self, fn: str, now: float, settled_ms: int | None
    ) -> tuple[dict[str, _Units], _Units, bool, int]:
        """Per node shares (from digests listing `fn` per node), the total (those and the
        digests listing only its totals), whether no digest lumped it, and how many digests
        listed it."""
        nodes: dict[str, _Units] = {}
        total = _Units()
        complete = True
        peers = 0
        for _p, d, with_in_flight in self._select(now, settled_ms):
            cells = d.functions.get(fn)
            if cells is not None:
                peers += 1
                for node, row in cells.items():
                    u = nodes.get(node)
                    if u is None:
                        u = nodes[node] = _Units()
                    u.add(row, with_in_flight)
                    total.add(row, with_in_flight)
                continue
            summed = d.totals.get(fn)
            if summed is not None:
                peers += 1
                total.add(summed, with_in_flight)
            elif d.rest.rate_c or d.rest.in_flight or d.rest.busy_c:
                complete = False
        return nodes, total, complete, peers

    def function_load(self, fn: str, now: float, settled_ms: int | None = None) -> FunctionLoad:
        """Cluster-wide load of `fn`: rate, in-flight, wait, busy rate, and per node.

        `nodes` holds what the digests listing `fn` per node say; a digest listing only its
        totals adds to the totals, not to `nodes`.
        """
        nodes, total, complete, _peers = self._function_units(fn, now, settled_ms)
        t = total.share()
        shares = {node: nodes[node].share() for node in sorted(nodes)}
        return FunctionLoad(
            t.rate, t.in_flight, t.wait, t.busy_rate, MappingProxyType(shares), complete
        )

    def node_load(self, node: str, now: float, settled_ms: int | None = None) -> NodeShare:
        """Cluster-wide load on `node`, all functions. A lower bound when a peer's digest
        lumped this node with others (a broadcast lists only the busiest nodes that fit)."""
        u = _Units()
        for _p, d, with_in_flight in self._select(now, settled_ms):
            row = d.nodes.get(node)
            if row is not None:
                u.add(row, with_in_flight)
        return u.share()

    def _rates(self, now: float, settled_ms: int | None) -> dict[str, int]:
        rates: dict[str, int] = {}
        for _p, d, _i in self._select(now, settled_ms):
            for fn, cells in d.functions.items():
                rates[fn] = rates.get(fn, 0) + sum(row[0] for row in cells.values())
            for fn, row in d.totals.items():
                rates[fn] = rates.get(fn, 0) + row[0]
        return rates

    def hot_functions(
        self, n: int, now: float, settled_ms: int | None = None
    ) -> list[tuple[str, float]]:
        """The `n` functions with the highest cluster-wide rate, as (fn, calls/s), hottest
        first; ties go to the smaller name, so every peer lists them alike."""
        rates = self._rates(now, settled_ms)
        top = heapq.nsmallest(n, rates.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(fn, rate_c / 100.0) for fn, rate_c in top]

    def width_inputs(self, fn: str, now: float, settled_ms: int | None = None) -> WidthInputs:
        """`fn`'s cluster-wide figures on the grids (COLD when no digest lists it)."""
        _nodes, total, _complete, peers = self._function_units(fn, now, settled_ms)
        if not peers:
            return COLD
        return WidthInputs(
            grid_level(total.rate_c, RATE_GRID),
            grid_level(total.in_flight, COUNT_GRID),
            grid_level(total.wait_ms, WAIT_GRID),
            grid_level(total.busy_c, RATE_GRID),
            peers,
        )

    def width_table(
        self, n: int, now: float, settled_ms: int | None = None
    ) -> Mapping[str, WidthInputs]:
        """Width inputs of the `n` hottest functions, for a view: absent means COLD."""
        return MappingProxyType(
            {
                fn: self.width_inputs(fn, now, settled_ms)
                for fn, _r in self.hot_functions(n, now, settled_ms)
            }
        )

    def summary(self, now: float, hot: int = 32, settled_ms: int | None = None) -> LoadSummary:
        """Totals over the digests counted (lumps included) and the `hot` hottest functions."""
        rate_c = in_flight = busy_c = 0
        selected = self._select(now, settled_ms)
        for _p, d, with_in_flight in selected:
            for r, i, _w, b in d.nodes.values():
                rate_c += r
                busy_c += b
                if with_in_flight:
                    in_flight += i
            rate_c += d.other_nodes.rate_c
            busy_c += d.other_nodes.busy_c
            if with_in_flight:
                in_flight += d.other_nodes.in_flight
        table = self.width_table(hot, now, settled_ms)
        return LoadSummary(
            tuple(p for p, _d, _i in selected), rate_c, in_flight, busy_c, tuple(table.items())
        )
