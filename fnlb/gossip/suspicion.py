"""Suspicion timeouts: how long a suspected member has to refute before it is declared dead.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every input carries `now`.

Theory (SWIM + Lifeguard): a member that misses a probe becomes Suspect, not Dead. The
minimum time it gets to refute grows with log10 of the group size, because news takes
O(log N) gossip rounds to reach it and its refutation O(log N) to come back. Lifeguard starts
the timer at a maximum (a lone suspicion may come from a prober that is itself slow) and
shrinks it as other members independently confirm the suspicion:

    timeout(C) = max - (max - min) * log(C + 1) / log(K + 1)

where C is the number of independent confirmations so far and K the number expected
(suspicion_mult - 2, or 0 in groups too small to provide them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fnlb.gossip.profile import GossipProfile


def suspicion_timeout(n: int, profile: GossipProfile) -> float:
    """Minimum seconds a suspect has to refute in a group of `n` members.

    suspicion_mult * max(1, log10 n) * probe_interval (memberlist's formula).
    """
    scale = max(1.0, math.log10(max(1, n)))
    return profile.suspicion_mult * scale * profile.probe_interval


def expected_confirmations(n: int, profile: GossipProfile) -> int:
    """K: independent confirmations that bring a suspicion down to its minimum timeout.

    suspicion_mult - 2, but 0 when the group is too small to supply them (n - 2 < K).
    """
    k = max(0, profile.suspicion_mult - 2)
    return 0 if n - 2 < k else k


def remaining_suspicion_time(
    confirmations: int, k: int, elapsed: float, min_timeout: float, max_timeout: float
) -> float:
    """Seconds left before a suspicion fires, given C confirmations and time already elapsed.

    Lifeguard's timeout(C) = max - (max - min) * log(C + 1) / log(K + 1), floored at min,
    minus `elapsed`; may be negative (the suspicion is overdue). With K = 0 it is min.
    """
    if k <= 0:
        timeout = min_timeout
    else:
        frac = math.log(confirmations + 1) / math.log(k + 1)
        timeout = max(min_timeout, max_timeout - (max_timeout - min_timeout) * frac)
    return timeout - elapsed


@dataclass(slots=True)
class Suspicion:
    """One running suspicion of one member: its start, bounds and who confirmed it."""

    start: float
    min_timeout: float
    max_timeout: float
    k: int
    confirmers: set[str] = field(default_factory=set)
    deadline: float = 0.0

    @classmethod
    def begin(cls, accuser: str, now: float, n: int, profile: GossipProfile) -> Suspicion:
        """A new suspicion raised by `accuser` (who does not count as a confirmation)."""
        lo = suspicion_timeout(n, profile)
        hi = profile.suspicion_max_timeout_mult * lo
        s = cls(start=now, min_timeout=lo, max_timeout=hi, k=expected_confirmations(n, profile))
        s.confirmers.add(accuser)
        s.deadline = now + remaining_suspicion_time(0, s.k, 0.0, lo, hi)
        return s

    @property
    def confirmations(self) -> int:
        """Independent confirmations received (the first accuser excluded)."""
        return len(self.confirmers) - 1

    def confirm(self, accuser: str) -> bool:
        """Record `accuser`'s suspicion; True if it was new (then re-gossip it)."""
        if self.confirmations >= self.k or accuser in self.confirmers:
            return False
        self.confirmers.add(accuser)
        left = remaining_suspicion_time(
            self.confirmations, self.k, 0.0, self.min_timeout, self.max_timeout
        )
        self.deadline = self.start + left
        return True
