"""Wait for warm (issue 16, clause 2): hold a call at the balancer instead of making Fn start
a container, when one of the function's warm containers on its node will free sooner.

Fn starts a new container when a call finds its function's containers on the node all busy;
under memory pressure that start evicts another function's warm container, which then pays a
cold start of its own. With short executions (20 ms) and slow starts (300 ms) waiting for a
busy container is the shorter path. A balancer cannot see Fn's containers, but it sees its own
calls: when its calls of a function in flight on a node reach the most it has had there at
once, every container it made that node start is busy (as far as it can tell), and the first
of those calls to finish frees one.

The rule, per (function, node) of this process's own calls (gossiped counts are a few hundred
ms old, longer than such a call lasts), as bench/routing_landscape's model (`replay`'s
`hold_s`) measured it:

- hold a call when its calls in flight there are at least 1 and at least the most it has had
  there at once within the idle timeout (Fn's containers outlive their last call by that
  much, no longer), the function's warm answers take under half the maximum hold (which
  stands for a cold start's length), and fewer calls are held there than are in flight (each
  finishing call frees one container for one held call);
- a finishing call of the function there releases the oldest held call onto the container it
  frees (first in, first out);
- a held call is sent anyway at its deadline, `max_hold_s` after it was held (Fn then starts a
  container, as without waiting).

The warm answer time is a moving average of the function's answers quicker than the maximum
hold: a cold answer (a start plus the execution) is longer than a start, so it is left out;
a function whose answers all take longer is never held (waiting would not be shorter).

Sans-I/O and deterministic: times come in as arguments; what is held is an opaque ticket the
caller gives back to its call path (fnlb.proxy.warm_hold is the asyncio shell). Memory is
bounded: a (function, node) with nothing in flight or held, and a function's estimate, are
dropped after the idle timeout without calls; at most `max_slots` of them are kept.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, TypeVar

T = TypeVar("T")

IDLE_S: Final = 30.0
"""Fn's default idle timeout: a container idle this long is gone, and with it what the
high-water count of calls in flight said about the node's containers."""
MAX_SLOTS: Final = 100_000
"""(function, node) pairs kept at most; past this, new pairs are not tracked (never held)."""
_EWMA: Final = 0.2
"""Weight of a new answer in the warm answer time (the model's)."""
_SWEEP_EVERY: Final = 4096
"""Calls between two looks at the clock for expired state."""


class Hold(Generic[T]):
    """One held call: the caller keeps it to cancel the hold (its client went away)."""

    __slots__ = ("deadline", "live", "since", "slot", "ticket")

    def __init__(self, ticket: T, slot: _Slot[T], since: float, deadline: float) -> None:
        self.ticket = ticket
        self.slot = slot
        self.since = since
        self.deadline = deadline
        self.live = True
        """False once released, expired, cancelled or drained."""


class _Slot(Generic[T]):
    """A function's calls from this process on one node."""

    __slots__ = ("held", "in_flight", "key", "last", "most", "node")

    def __init__(self, key: str, node: str, now: float) -> None:
        self.key = key
        self.node = node
        self.in_flight = 0
        self.most = 0
        """The most calls in flight at once since the slot last went idle: the containers
        this process made the node start, as far as it can tell."""
        self.last = now
        """When a call was last sent."""
        self.held: deque[Hold[T]] = deque()


class WarmWait(Generic[T]):
    """The decisions of wait for warm; see the module docstring."""

    __slots__ = (
        "_calls",
        "_count",
        "_estimates",
        "_order",
        "_slots",
        "held",
        "idle_s",
        "max_hold_s",
        "max_slots",
    )

    def __init__(self, max_hold_s: float, idle_s: float = IDLE_S, max_slots: int = MAX_SLOTS):
        if max_hold_s <= 0:
            raise ValueError("max_hold_s must be greater than 0")
        self.max_hold_s = max_hold_s
        self.idle_s = idle_s
        self.max_slots = max_slots
        self._slots: dict[str, dict[str, _Slot[T]]] = {}
        """Node -> function key -> its pair: two lookups and no tuple made per call."""
        self._count = 0
        self._estimates: dict[str, list[float]] = {}
        """Function key -> [warm answer time, when last updated], updated in place (no
        allocation per answer)."""
        self._order: deque[Hold[T]] = deque()
        """Every hold in the order it was made, which is its deadlines' order (one maximum
        hold for all); released or cancelled ones are skipped when they reach the front."""
        self._calls = 0
        self.held = 0
        """Calls held now."""

    # -- what the call path reports ---------------------------------------------------------

    def started(self, key: str, node: str, now: float) -> None:
        """A call of function `key` was sent to `node` (any attempt, held before or not)."""
        on_node = self._slots.get(node)
        slot = on_node.get(key) if on_node is not None else None
        if slot is None:
            self._calls += 1
            if self._calls >= _SWEEP_EVERY:
                self._calls = 0
                self.sweep(now)
            if self._count >= self.max_slots:
                return
            on_node = self._slots.get(node)
            if on_node is None:
                on_node = self._slots[node] = {}
            slot = on_node[key] = _Slot(key, node, now)
            self._count += 1
        elif now - slot.last > self.idle_s:
            slot.most = 0  # idle past the timeout: the containers it counted are gone
        slot.last = now
        n = slot.in_flight = slot.in_flight + 1
        if n > slot.most:
            slot.most = n

    def finished(self, key: str, node: str, now: float, answer_s: float | None) -> Hold[T] | None:
        """A call `started` there ended; `answer_s`: seconds to its answer's headers when it
        answered (None: busy, failed, cancelled). Returns the hold of the call to send there
        now, on the container this one frees (the caller sends it, which reports `started`)."""
        if answer_s is not None and 0.0 <= answer_s < self.max_hold_s:
            est = self._estimates.get(key)
            if est is None:
                self._estimates[key] = [answer_s, now]
            else:
                est[0] += _EWMA * (answer_s - est[0])
                est[1] = now
        on_node = self._slots.get(node)
        slot = on_node.get(key) if on_node is not None else None
        if slot is None or slot.in_flight <= 0:
            return None
        slot.in_flight -= 1
        held = slot.held
        if not held:
            return None
        hold = held.popleft()
        hold.live = False
        self.held -= 1
        return hold

    # -- holding ----------------------------------------------------------------------------

    def hold(self, key: str, node: str, ticket: T, now: float) -> Hold[T] | None:
        """Hold a call of `key` about to go to `node` (its first candidate) when the rule
        says so: its `Hold`, or None when it must be sent now."""
        on_node = self._slots.get(node)
        slot = on_node.get(key) if on_node is not None else None
        if slot is None:
            return None
        n = slot.in_flight
        if n < 1 or n < slot.most or now - slot.last > self.idle_s or len(slot.held) >= n:
            return None
        est = self._estimates.get(key)
        if est is None or est[0] >= self.max_hold_s / 2:
            return None
        hold = Hold(ticket, slot, now, now + self.max_hold_s)
        slot.held.append(hold)
        self._order.append(hold)
        self.held += 1
        return hold

    def cancel(self, hold: Hold[T]) -> bool:
        """The held call's client went away: forget it (False: it was no longer held)."""
        if not hold.live:
            return False
        hold.live = False
        hold.slot.held.remove(hold)
        self.held -= 1
        return True

    def expired(self, now: float) -> list[Hold[T]]:
        """The holds whose deadline has come, oldest first: their calls go on now, to the
        node (Fn starts a container)."""
        out: list[Hold[T]] = []
        order = self._order
        while order and (not order[0].live or order[0].deadline <= now):
            hold = order.popleft()
            if hold.live:
                hold.live = False
                hold.slot.held.remove(hold)
                self.held -= 1
                out.append(hold)
        return out

    def next_deadline(self) -> float | None:
        """When the oldest live hold expires; None when nothing is held."""
        order = self._order
        while order and not order[0].live:
            order.popleft()
        return order[0].deadline if order else None

    def drain(self) -> list[Hold[T]]:
        """Every live hold, oldest first, released (shutdown: their calls go on now)."""
        out = [h for h in self._order if h.live]
        for hold in out:
            hold.live = False
            hold.slot.held.remove(hold)
        self._order.clear()
        self.held = 0
        return out

    # -- memory -----------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Drop the (function, node) pairs with nothing in flight or held and no call for
        the idle timeout, and the estimates of functions not answered for as long."""
        idle = self.idle_s
        for node, on_node in list(self._slots.items()):
            dead = [
                k
                for k, s in on_node.items()
                if s.in_flight == 0 and not s.held and now - s.last > idle
            ]
            for k in dead:
                del on_node[k]
            self._count -= len(dead)
            if not on_node:
                del self._slots[node]
        stale = [f for f, (_e, at) in self._estimates.items() if now - at > idle]
        for f in stale:
            del self._estimates[f]

    def __len__(self) -> int:
        """(function, node) pairs tracked now."""
        return self._count
