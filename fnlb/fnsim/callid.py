"""Call ids shaped like Fn's: ULIDs (26 Crockford base32 characters, time-ordered).

A ULID is 48 bits of Unix milliseconds then 80 random bits. Drawing 80 random bits per call
would cost more than the rest of a hot call, so each generator draws them once and adds a
counter, as ULID's "monotonic" mode does: ids stay unique within a generator and, with 80
random bits of start, across generators in practice.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


def encode_ulid(ms: int, randomness: int) -> str:
    """(milliseconds since the epoch, 80-bit integer) -> 26-character ULID text."""
    value = ((ms & ((1 << 48) - 1)) << _RANDOM_BITS) | (randomness & _RANDOM_MASK)
    chars = [""] * 26
    for i in range(25, -1, -1):
        chars[i] = _CROCKFORD[value & 31]
        value >>= 5
    return "".join(chars)


class CallIds:
    """A source of unique ULID-shaped call ids for one emulated node."""

    __slots__ = ("_base", "_count")

    def __init__(self) -> None:
        self._base = int.from_bytes(os.urandom(10), "big")
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return encode_ulid(time.time_ns() // 1_000_000, self._base + self._count)
