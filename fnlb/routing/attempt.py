"""One record per proxied attempt: what the Peer learns from sending a call to a node.

The proxy builds one `Attempt` when an attempt ends (answered, busy, failed or cancelled) and
hands it to `Peer.attempt_finished` once; the Peer feeds this peer's load figures and the
routing policy from it. Headers are parsed once, by the proxy, with one meaning each: a
missing, malformed or negative `Xxx-Fxlb-Wait` is `wait_s = None` everywhere.
"""

from __future__ import annotations

from typing import Final

BUSY: Final = 503
"""Fn's "server too busy" (sent with Retry-After before the call runs): the call may move on."""
NO_ANSWER: Final = 0
"""`Attempt.status` when no answer came: no connection, a connection that died, a client
that went away."""


class Attempt:
    """How one attempt of one call on one node ended (times: wall clock, seconds)."""

    __slots__ = (
        "answer_s",
        "answered_at",
        "ended",
        "key",
        "node",
        "path",
        "retry_after_s",
        "status",
        "wait_s",
    )

    def __init__(
        self,
        key: str,
        node: str,
        path: str,
        status: int,
        ended: float,
        wait_s: float | None = None,
        retry_after_s: float | None = None,
        answer_s: float | None = None,
        answered_at: float | None = None,
    ) -> None:
        self.key = key
        """The function key (fnlb.routing.function_key)."""
        self.node = node
        self.path = path
        """The decoded request path (the classic policy keys its averages by it)."""
        self.status = status
        """The node's HTTP status, or `NO_ANSWER`; 503 is busy (Fn's "too busy")."""
        self.ended = ended
        """When the attempt ended: the answer's body was sent on, or it failed."""
        self.wait_s = wait_s
        """The node's `Xxx-Fxlb-Wait` in seconds; None when absent or unusable."""
        self.retry_after_s = retry_after_s
        """The node's `Retry-After` in seconds when it is a number; None otherwise."""
        self.answer_s = answer_s
        """Seconds from sending the call to the answer's headers; None without an answer."""
        self.answered_at = answered_at
        """When the answer this call returns to its client came; None for an attempt whose
        answer is not returned (a failure, a busy node the call moved on from)."""
