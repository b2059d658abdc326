"""`--routing=hotset`: the load-aware router behind the `RoutingPolicy` interface.

Rule: no asyncio, socket, time or global random here. The composition root hands in the wall
clock as a callable (`time.time`), because the policy interface carries no `now` on the
request path; simulators hand in a virtual one.

The Peer calls, per call: `candidates(view, key, path)`; per attempt, `attempt_started(node,
key)` before sending and `observe(attempt)` when it ends, *including* a 503 busy that moves
the call on (status 503) and a connection that could not be opened (status 0); the record's
`answer_s` (seconds to the answer's headers) feeds the back-off's slow-path rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fnlb.routing.attempt import Attempt
from fnlb.routing.load_router import CandidateSource, Router

__all__ = ["HotSetPolicy"]


class HotSetPolicy:
    """A `RoutingPolicy` over a `Router` (keep the router: the runtime feeds it the widths,
    the other peers' in-flight and the gossiped back-off)."""

    observes = True

    def __init__(self, router: Router, clock: Callable[[], float]) -> None:
        self.router = router
        self.load_router: Router | None = router
        self._clock = clock

    def candidates(self, view: CandidateSource, key: str, path: str) -> Sequence[str]:
        return self.router.candidates(key, view, self._clock())

    def attempt_started(self, node: str, key: str) -> None:
        self.router.call_started(key, node)

    def observe(self, attempt: Attempt) -> None:
        self.router.call_finished(
            attempt.key,
            attempt.node,
            attempt.status,
            attempt.wait_s,
            self._clock(),
            attempt.retry_after_s,
            attempt.answer_s,
        )
