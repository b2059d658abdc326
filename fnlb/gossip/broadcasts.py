"""The piggyback queue: which broadcasts ride on the next packet, and when they stop.

Rule 1: no asyncio, socket, time or global random here.

Theory (SWIM's infection-style dissemination, memberlist's TransmitLimitedQueue): every
membership change and every user broadcast is queued once and then piggybacked on outgoing
packets, the least-sent first, until it has been sent retransmit_limit(N) =
mult * ceil(log10(N + 1)) times; with a fan-out of several peers per round that reaches every
member in O(log N) rounds with high probability. A newer message with the same key (about the
same member, or the same user key) replaces the queued one, so superseded news is never sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def retransmit_limit(n: int, mult: int) -> int:
    """Times each broadcast is sent in a group of `n`: mult * ceil(log10(n + 1))."""
    return mult * math.ceil(math.log10(max(1, n) + 1))


@dataclass(slots=True)
class _Entry:
    key: object
    data: bytes
    transmits: int


class BroadcastQueue:
    """Encoded broadcasts keyed for invalidation, handed out least-sent first."""

    __slots__ = ("_by_key", "_levels")

    def __init__(self) -> None:
        self._by_key: dict[object, _Entry] = {}
        # transmits -> entries at that count, in queue order (newest last)
        self._levels: dict[int, dict[object, _Entry]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def queue(self, key: object, data: bytes) -> None:
        """Queue `data`, replacing any queued broadcast with the same key."""
        self.discard(key)
        entry = _Entry(key, data, 0)
        self._by_key[key] = entry
        self._levels.setdefault(0, {})[key] = entry

    def discard(self, key: object) -> None:
        """Forget the broadcast queued under `key`, if any."""
        old = self._by_key.pop(key, None)
        if old is not None:
            level = self._levels[old.transmits]
            del level[key]
            if not level:
                del self._levels[old.transmits]

    def take(self, budget: int, limit: int, overhead: int = 0) -> list[bytes]:
        """Broadcasts to piggyback within `budget` bytes, least-sent (then newest) first.

        Each message costs len(data) + `overhead`; taken ones count one more transmission and
        are dropped once sent `limit` times.
        """
        chosen: list[_Entry] = []
        left = budget
        for transmits in sorted(self._levels):
            for entry in reversed(self._levels[transmits].values()):
                cost = len(entry.data) + overhead
                if cost <= left:
                    chosen.append(entry)
                    left -= cost
                    if left < 8:
                        break
            if left < 8:
                break
        out: list[bytes] = []
        for entry in chosen:
            self.discard(entry.key)
            out.append(entry.data)
            entry.transmits += 1
            if entry.transmits < limit:
                self._by_key[entry.key] = entry
                self._levels.setdefault(entry.transmits, {})[entry.key] = entry
        return out
