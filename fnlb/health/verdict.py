"""How consecutive health-check results turn into a node's state (the original fnlb's rule).

A node starts `unknown` and its first check decides either way. After that it goes `offline`
after `unhealthy` consecutive failures and back `online` after `healthy` consecutive
successes. A failed connection seen by the proxy (a passive check) counts as one failure.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["unknown", "online", "offline"]


@dataclass(frozen=True, slots=True)
class NodeHealth:
    state: State = "unknown"
    successes: int = 0
    failures: int = 0
    last_error: str = ""


def after_check(
    h: NodeHealth, ok: bool, *, healthy: int, unhealthy: int, error: str = ""
) -> NodeHealth:
    """The node's health after one more check result."""
    if ok:
        successes = h.successes + 1
        state: State = h.state
        if h.state == "unknown" or (h.state == "offline" and successes >= healthy):
            state = "online"
        return NodeHealth(state, successes, 0, "")
    failures = h.failures + 1
    state = h.state
    if h.state == "unknown" or (h.state == "online" and failures >= unhealthy):
        state = "offline"
    return NodeHealth(state, 0, failures, error)
