"""Which nodes to avoid for a while, per function or for all: 503 busy, climbing waits, shared.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every input carries `now`
(wall-clock seconds: entries travel between peers, whose clocks NTP keeps within a few ms);
every output is returned.

Theory of operation
-------------------
A node that answers a call of f with 503 busy (Fn's "server too busy", sent before the call
runs) is avoided *for f* for `first_s`, doubled at each further 503 in a row up to `max_s`
(and never beyond the node's `Retry-After`); the next success of f on that node ends the
streak. A node whose `Xxx-Fxlb-Wait` for f climbs past `slow_wait_s` (a decayed mean, so one
slow call does not count) is avoided for f for `first_s`. A node whose *path* got slow (its
answers to f take far longer than f's answers usually take, wait excluded: two in a row at
`slow_path_ratio` times f's typical time and `slow_path_s` more) is avoided for f for
`first_s`, doubled while its answers stay slow: a slow link or a hung host shows there,
not in the wait header. When `node_wide_after` different
functions are avoided on one node at once, the node itself is saturated and is avoided *for
all functions* until the last of those entries ends.

Avoiding does not remove a node: the router moves it to the end of the candidate order, so the
call goes to the next node of the function's order and the node is still tried when every
other node is worse. When an entry ends, the node's next call probes it: busy again doubles
the time, a success gives the function back to it.

Sharing: every entry made here is queued for gossip (`take_updates`); a peer `merge`s what
others made, keeping the later end time. Entries learned from peers are not sent on again
(the gossip layer already spreads a broadcast to everyone). End times are clamped to
`now + max_s` on receipt so a peer with a wrong clock cannot pin a node for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fnlb.errors import LocalProtocolError
from fnlb.payloads.backoff import (
    ALL_FUNCTIONS,
    MAX_WIRE_ENTRIES,
    BackoffEntry,
    decode_entries,
    encode_entries,
    pack_entries,
)

__all__ = [
    "ALL_FUNCTIONS",
    "MAX_WIRE_ENTRIES",
    "Backoff",
    "BackoffEntry",
    "BackoffPolicy",
    "decode_entries",
    "encode_entries",
    "pack_entries",
]

_WAIT_DECAY: Final = 0.3
_TYPICAL_DECAY: Final = 0.05
"""Weight of a normal answer in a function's typical answer time."""
_TYPICAL_SLOW_DECAY: Final = 0.01
"""Weight of a slow answer: a function that became slower everywhere is learnt, slowly,
while one slow node cannot drag the baseline up before it is avoided."""
_TYPICAL_MIN_SAMPLES: Final = 5
_TYPICAL_FLOOR_S: Final = 0.005
_NO_ENTRIES: Final[Mapping[str, float]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long nodes are avoided. Peers may differ; the same policy everywhere is simplest."""

    first_s: float = 1.0
    """Seconds a node is avoided for a function after its first 503 (or a slow wait)."""
    max_s: float = 15.0
    """Longest avoidance, doubling from `first_s` at each 503 in a row (Fn's Retry-After)."""
    node_wide_after: int = 2
    """Functions avoided on one node at once that make it avoided for every function."""
    slow_wait_s: float = 1.0
    """Decayed mean of the `Xxx-Fxlb-Wait` header (s) past which a node is avoided for that
    function. Only the header counts: a time to first byte includes the function's own run."""
    slow_path_ratio: float = 4.0
    """An answer of f (time to its headers, minus the wait header) this many times f's
    typical one is slow..."""
    slow_path_s: float = 0.5
    """...if it is also this many seconds longer: a cold start (~0.3 s) or a jittery
    function is not a slow node; a path that adds seconds is."""
    max_entries: int = 10_000
    """Most (function, node) records kept; the oldest go first when full."""

    def check(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.node_wide_after < 1:
            raise LocalProtocolError("need 0 < first_s <= max_s and node_wide_after >= 1")
        if self.slow_wait_s <= 0 or self.max_entries < 1:
            raise LocalProtocolError("need slow_wait_s > 0 and max_entries >= 1")
        if self.slow_path_ratio <= 1 or self.slow_path_s < 0:
            raise LocalProtocolError("need slow_path_ratio > 1 and slow_path_s >= 0")


class _Pair:
    """One (function, node): its avoidance end, busy and slow streaks and decayed wait."""

    __slots__ = ("slow", "streak", "until", "wait")

    def __init__(self) -> None:
        self.until = 0.0
        self.streak = 0
        self.slow = 0  # slow answers in a row
        self.wait = -1.0  # no sample yet


class Backoff:
    """The avoidance table of one peer: local observations plus entries gossiped by others.

    `avoided(fn, node, now)` is the request path's question (two dict lookups, no allocation);
    `active` lets it skip even those when nothing is avoided.
    """

    __slots__ = (
        "_fns",
        "_node_fns",
        "_nodes",
        "_pairs",
        "_policy",
        "_typical",
        "_updates",
        "active_until",
    )

    def __init__(self, policy: BackoffPolicy | None = None) -> None:
        self._policy = policy or BackoffPolicy()
        self._policy.check()
        self._pairs: dict[tuple[str, str], _Pair] = {}  # (fn, node), oldest first
        self._fns: dict[str, dict[str, float]] = {}  # fn -> node -> until (avoided pairs)
        self._node_fns: dict[str, dict[str, float]] = {}  # node -> fn -> until (the same)
        self._nodes: dict[str, float] = {}  # node -> until (node-wide)
        self._updates: dict[tuple[str, str], float] = {}
        self._typical: dict[str, list[float]] = {}  # fn -> [typical answer s, samples]
        self.active_until = 0.0
        """The latest end of any entry: nothing is avoided once `now` passes it."""

    @property
    def policy(self) -> BackoffPolicy:
        return self._policy

    # -- the request path ----------------------------------------------------------------

    def avoided(self, fn: str, node: str, now: float) -> bool:
        """Whether `node` should be tried only after the others for a call of `fn`."""
        if now >= self.active_until:
            return False
        until = self._nodes.get(node)
        if until is not None and now < until:
            return True
        per_fn = self._fns.get(fn)
        if per_fn is None:
            return False
        until = per_fn.get(node)
        return until is not None and now < until

    def tables(self, fn: str) -> tuple[Mapping[str, float], Mapping[str, float]]:
        """(node -> end of avoidance for `fn`, node -> end of node-wide avoidance): what
        `avoided` reads, for a caller that asks about many nodes at once. Read-only."""
        return self._fns.get(fn, _NO_ENTRIES), self._nodes

    def affects(self, fn: str) -> bool:
        """Whether some entry (maybe ended, until `expire` runs) concerns calls of `fn`: if
        not, the router need not ask about each node."""
        return bool(self._nodes) or fn in self._fns

    # -- observations --------------------------------------------------------------------

    def busy(self, fn: str, node: str, now: float, retry_after_s: float | None = None) -> float:
        """`node` answered a call of `fn` with 503 busy; returns the end of its avoidance."""
        p = self._policy
        pair = self._pair(fn, node)
        span = min(p.first_s * (2.0 ** min(pair.streak, 30)), p.max_s)
        if retry_after_s is not None and retry_after_s > 0:
            span = min(span, retry_after_s)
        pair.streak += 1
        until = max(pair.until, now + span)
        pair.until = until
        self._avoid(fn, node, until, now, local=True)
        return until

    def finished(
        self,
        fn: str,
        node: str,
        wait_s: float | None,
        now: float,
        answer_s: float | None = None,
    ) -> None:
        """A call of `fn` on `node` was answered (not 503): end the busy streak, and fold the
        server's wait header (None when absent) into the decayed wait. `answer_s`: seconds
        from sending the call to the answer's headers, when the caller measured them."""
        p = self._policy
        pair = self._pairs.get((fn, node))
        if answer_s is not None and 0.0 <= answer_s < 86_400.0:
            waited = wait_s if wait_s is not None and 0.0 <= wait_s <= answer_s else 0.0
            if self._slow_path(fn, answer_s - waited):
                if pair is None:
                    pair = self._pair(fn, node)
                pair.slow += 1
                if pair.slow >= 2:  # one slow answer may be the function's own; two, the node
                    span = min(p.first_s * (2.0 ** min(pair.slow - 2, 30)), p.max_s)
                    pair.until = max(pair.until, now + span)
                    self._avoid(fn, node, pair.until, now, local=True)
            elif pair is not None:
                pair.slow = 0
        if pair is None:
            if wait_s is None or wait_s < p.slow_wait_s * _WAIT_DECAY:
                return  # nothing to remember: no streak, and a wait too short to matter
            pair = self._pair(fn, node)
            pair.wait = 0.0  # the waits before were too short to remember: call them 0
        pair.streak = 0
        if wait_s is None or not 0.0 <= wait_s < 86_400.0:
            return
        if 0.0 < pair.until <= now:
            pair.until = 0.0  # the first call after an avoidance: judge the node afresh
            pair.wait = -1.0
        pair.wait = wait_s if pair.wait < 0 else pair.wait + _WAIT_DECAY * (wait_s - pair.wait)
        if pair.wait >= p.slow_wait_s and pair.until <= now:
            pair.until = now + p.first_s
            self._avoid(fn, node, pair.until, now, local=True)

    def _slow_path(self, fn: str, answer_s: float) -> bool:
        """Whether one answer of `fn` (wait excluded) is far slower than `fn`'s typical one;
        folds it into that typical time either way."""
        p = self._policy
        typical = self._typical.get(fn)
        if typical is None:
            if len(self._typical) >= p.max_entries:
                del self._typical[next(iter(self._typical))]
            self._typical[fn] = [answer_s, 1.0]
            return False
        mean, samples = typical
        base = mean if mean > _TYPICAL_FLOOR_S else _TYPICAL_FLOOR_S
        slow = (
            samples >= _TYPICAL_MIN_SAMPLES
            and answer_s >= base * p.slow_path_ratio
            and answer_s >= mean + p.slow_path_s
        )
        typical[0] = mean + (_TYPICAL_SLOW_DECAY if slow else _TYPICAL_DECAY) * (answer_s - mean)
        typical[1] = samples + 1.0
        return slow

    # -- gossip --------------------------------------------------------------------------

    def take_updates(self, limit: int = MAX_WIRE_ENTRIES) -> list[BackoffEntry]:
        """Entries made here since the last call, to broadcast (at most `limit`)."""
        out: list[BackoffEntry] = []
        while self._updates and len(out) < limit:
            (fn, node), until = self._updates.popitem()
            out.append(BackoffEntry(node, fn, until))
        return out

    def merge(self, entries: Iterable[BackoffEntry], now: float) -> int:
        """Take peers' entries (the later end wins); returns how many changed something."""
        changed = 0
        horizon = now + self._policy.max_s
        for e in entries:
            until = min(e.until, horizon)
            if until <= now:
                continue
            if self._avoid(e.fn, e.node, until, now, local=False):
                changed += 1
        return changed

    def entries(self, now: float) -> list[BackoffEntry]:
        """Every entry in force, sorted (for reports and tests)."""
        out = [BackoffEntry(n, ALL_FUNCTIONS, u) for n, u in self._nodes.items() if u > now]
        for fn, per in self._fns.items():
            out.extend(BackoffEntry(n, fn, u) for n, u in per.items() if u > now)
        return sorted(out, key=lambda e: (e.node, e.fn))

    def expire(self, now: float) -> int:
        """Drop ended entries and idle records; returns how many entries ended. Call it every
        second or so (the request path never needs it: ended entries are simply ignored)."""
        ended = 0
        for node in [n for n, u in self._nodes.items() if u <= now]:
            del self._nodes[node]
            ended += 1
        for fn in list(self._fns):
            per = self._fns[fn]
            for node in [n for n, u in per.items() if u <= now]:
                del per[node]
                by_node = self._node_fns[node]
                del by_node[fn]
                if not by_node:
                    del self._node_fns[node]
                ended += 1
            if not per:
                del self._fns[fn]
        horizon = now - self._policy.max_s
        slow = self._policy.slow_wait_s
        # A pair in a slow-answer streak is not idle: its next slow answer must find the
        # first one, however the sweeps fall between them.
        idle = [
            k for k, v in self._pairs.items() if v.until < horizon and v.wait < slow and not v.slow
        ]
        for key in idle:
            del self._pairs[key]
        return ended

    # -- internals -----------------------------------------------------------------------

    def _pair(self, fn: str, node: str) -> _Pair:
        key = (fn, node)
        pair = self._pairs.get(key)
        if pair is None:
            if len(self._pairs) >= self._policy.max_entries:
                del self._pairs[next(iter(self._pairs))]
            pair = self._pairs[key] = _Pair()
        return pair

    def _avoid(self, fn: str, node: str, until: float, now: float, *, local: bool) -> bool:
        if fn == ALL_FUNCTIONS:
            if self._nodes.get(node, 0.0) >= until:
                return False
            self._nodes[node] = until
        else:
            per = self._fns.get(fn)
            if per is None:
                per = self._fns[fn] = {}
            if per.get(node, 0.0) >= until:
                return False
            per[node] = until
            by_node = self._node_fns.get(node)
            if by_node is None:
                by_node = self._node_fns[node] = {}
            by_node[fn] = until
            self._node_wide(node, now, local)
        self.active_until = max(self.active_until, until)
        if local:
            self._updates[(fn, node)] = until
        return True

    def _node_wide(self, node: str, now: float, local: bool) -> None:
        """Avoid `node` for all when `node_wide_after` functions avoid it at once."""
        ends = [u for u in self._node_fns[node].values() if u > now]
        if len(ends) < self._policy.node_wide_after:
            return
        until = sorted(ends)[-self._policy.node_wide_after]
        if self._nodes.get(node, 0.0) < until:
            self._nodes[node] = until
            if local:
                self._updates[(ALL_FUNCTIONS, node)] = until
