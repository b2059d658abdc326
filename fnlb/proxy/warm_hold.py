"""The asyncio shell of wait for warm (`-warm-wait`; the rule: fnlb.routing.warm_wait).

Both data planes hold a call through one `WarmHolds` per process: the fast plane's call is
its own ticket (its `resume` makes the first attempt), the aiohttp plane's is a future its
handler awaits (`FutureTicket`). Nothing here awaits: a finishing call releases a held one
by calling its `resume` from the finishing call's own callback, and one timer, armed at the
oldest hold's deadline, sends on the calls whose hold ran out. What it counts goes to the
call observer (fnlb.observe.calls: `fnlb_warm_wait_*` in /metrics, workers' included).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol

from fnlb.observe.calls import CallObserver
from fnlb.routing.warm_wait import Hold, WarmWait

RELEASED: Final = "released"
EXPIRED: Final = "expired"
GONE: Final = "gone"
DRAINED: Final = "drained"
_EARLY_S: Final = 0.001


class Ticket(Protocol):
    """A held call, as the plane that holds it resumes it."""

    def resume(self) -> None:
        """Send the call on now (to the node it was held for)."""


class FutureTicket:
    """The aiohttp plane's ticket: its handler awaits `future`, resolved by `resume`."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def resume(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class WarmHolds:
    """One process's held calls: the rule's decisions, a timer for deadlines, the counts."""

    __slots__ = ("_timer", "observer", "rule", "started")

    def __init__(self, max_hold_s: float, observer: CallObserver) -> None:
        self.rule: WarmWait[Ticket] = WarmWait(max_hold_s)
        self.observer = observer
        self._timer: asyncio.TimerHandle | None = None
        self.started = self.rule.started
        """A call was sent (`WarmWait.started`, bound: one call less on every attempt)."""

    def finished(self, key: str, node: str, now: float, answer_s: float | None) -> None:
        """A call there ended: the held call it frees a container for is sent on now."""
        hold = self.rule.finished(key, node, now, answer_s)
        if hold is not None:
            self.observer.held(RELEASED, now - hold.since)
            hold.ticket.resume()

    def hold(self, key: str, node: str, ticket: Ticket, now: float) -> Hold[Ticket] | None:
        """Hold the call, which arrived at `now`, if the rule says so (None: send it now)."""
        hold = self.rule.hold(key, node, ticket, now)
        if hold is not None and self._timer is None:
            self._arm(hold.deadline, now)
        return hold

    def cancel(self, hold: Hold[Ticket]) -> None:
        """The held call's client went away."""
        if self.rule.cancel(hold):
            self.observer.held(GONE, time.time() - hold.since)

    def drain(self) -> None:
        """Shutdown: every held call goes on now (it is answered before the drain ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.time()
        for hold in self.rule.drain():
            self.observer.held(DRAINED, now - hold.since)
            hold.ticket.resume()

    def _arm(self, deadline: float, now: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(max(deadline - now, 0.0), self._due)

    def _due(self) -> None:
        self._timer = None
        now = time.time()
        # The loop's clock and the wall clock may differ by a hair: a timer a little early
        # must not re-arm itself at once, again and again.
        for hold in self.rule.expired(now + _EARLY_S):
            self.observer.held(EXPIRED, now - hold.since)
            hold.ticket.resume()
        deadline = self.rule.next_deadline()
        if deadline is not None and self._timer is None:
            self._arm(deadline, now)
