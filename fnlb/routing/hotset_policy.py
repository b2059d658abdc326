"""`--routing=hotset`: the load-aware router behind the proxy's `RoutingPolicy` interface.

Rule: no asyncio, socket, time or global random here. The composition root hands in the wall
clock as a callable (`time.time`), because the proxy's policy interface carries no `now`;
tests hand in a virtual one.

The proxy calls, per call: `candidates(view, key, path)`; per attempt, `attempt_started(node,
key)` before sending and `observe(node, key, path, status, wait_header, retry_after,
answer_s)` when it ends, *including* a 503 busy that moves the call on (status 503) and a
connection that could not be opened (status 0); `answer_s` (seconds to the answer's headers)
feeds the back-off's slow-path rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fnlb.goduration import parse_go_duration_ns
from fnlb.routing.router import CandidateSource, Router

__all__ = ["HotSetPolicy", "retry_after_seconds", "wait_seconds"]


def wait_seconds(header: str | None) -> float | None:
    """The `Xxx-Fxlb-Wait` header (a Go duration) in seconds; None when absent or invalid."""
    if not header:
        return None
    try:
        return parse_go_duration_ns(header) / 1e9
    except ValueError:
        return None


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` in seconds when it is a number (Fn sends 15); None otherwise (an HTTP
    date is ignored: the back-off's own cap applies)."""
    if not header:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return value if 0.0 <= value < 86_400.0 else None


class HotSetPolicy:
    """A `RoutingPolicy` over a `Router` (keep the router: the runtime feeds it the widths,
    the other peers' in-flight and the gossiped back-off)."""

    observes = True

    def __init__(self, router: Router, clock: Callable[[], float]) -> None:
        self.router = router
        self._clock = clock

    def candidates(self, view: CandidateSource, key: str, path: str) -> Sequence[str]:
        return self.router.candidates(key, view, self._clock())

    def attempt_started(self, node: str, key: str) -> None:
        self.router.call_started(key, node)

    def observe(
        self,
        node: str,
        key: str,
        path: str,
        status: int,
        wait: str | None,
        retry_after: str | None = None,
        answer_s: float | None = None,
    ) -> None:
        self.router.call_finished(
            key,
            node,
            status,
            wait_seconds(wait),
            self._clock(),
            retry_after_seconds(retry_after),
            answer_s,
        )
