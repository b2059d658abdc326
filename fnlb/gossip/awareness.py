"""Lifeguard local health awareness: a member that seems slow suspects others less.

Rule 1: no asyncio, socket, time or global random here.

Theory: when this member misses acks and nacks it expected, or has to refute a suspicion of
itself, the likelier explanation is that *it* is slow (CPU starved, event loop stalled,
congested link) rather than that its peers died. Its score rises (0 .. max-1) and stretches its
own probe interval and timeouts by (score + 1), so a sick member does not fill the cluster
with false suspicions. Each successful probe lowers the score by one.
"""

from __future__ import annotations


class Awareness:
    """A health score in [0, max_multiplier - 1]; 0 is healthy."""

    __slots__ = ("_max", "score")

    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        """Raise (positive) or lower (negative) the score, clamped to its range."""
        self.score = min(self._max - 1, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        """`timeout` stretched by this member's own ill health: timeout * (score + 1)."""
        return timeout * (self.score + 1)
