"""SipHash-2-4 in pure Python, as the original fnlb hashed a URL path into 64 bits.

Why it exists: the original fnlb picked a function's home node with
`siphash.Hash(0, 0x4c617279426f6174, path)` (Go, dchest/siphash). To route the same keys to
the same nodes we need the very same 64-bit sums, and neither `hashlib` nor `hash()` offers
SipHash-2-4 (CPython's str hash is SipHash-1-3 with a secret per-process key).

Rule: no I/O here; plain integers in, integers out.

The 128-bit key is the two little-endian 64-bit halves `k0` and `k1` (as dchest/siphash
and the reference implementation take it); the result is the 64-bit tag read as a
little-endian integer, i.e. what `siphash.Hash` returns in Go.
"""

from __future__ import annotations

import struct

__all__ = ["siphash24", "siphash24_key"]

_MASK = 0xFFFFFFFFFFFFFFFF


def siphash24_key(key: bytes) -> tuple[int, int]:
    """Split a 16-byte key into the (k0, k1) halves `siphash24` takes."""
    if len(key) != 16:
        raise ValueError(f"a SipHash key is 16 bytes, not {len(key)}")
    k0, k1 = struct.unpack("<QQ", key)
    return k0, k1


def siphash24(k0: int, k1: int, data: bytes) -> int:
    """The SipHash-2-4 tag of `data` under key (k0, k1), as an unsigned 64-bit integer."""
    m = _MASK
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    n = len(data)
    whole = n - (n & 7)
    # The last word carries the remaining bytes and the message length in its top byte.
    last = ((n & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    words = [*struct.unpack_from(f"<{whole >> 3}Q", data), last]

    # The SipRound is written out inline: a call per round would double the cost.
    for w in words:
        v3 ^= w
        for _ in range(2):
            v0 = (v0 + v1) & m
            v1 = ((v1 << 13) | (v1 >> 51)) & m
            v1 ^= v0
            v0 = ((v0 << 32) | (v0 >> 32)) & m
            v2 = (v2 + v3) & m
            v3 = ((v3 << 16) | (v3 >> 48)) & m
            v3 ^= v2
            v0 = (v0 + v3) & m
            v3 = ((v3 << 21) | (v3 >> 43)) & m
            v3 ^= v0
            v2 = (v2 + v1) & m
            v1 = ((v1 << 17) | (v1 >> 47)) & m
            v1 ^= v2
            v2 = ((v2 << 32) | (v2 >> 32)) & m
        v0 ^= w

    v2 ^= 0xFF
    for _ in range(4):
        v0 = (v0 + v1) & m
        v1 = ((v1 << 13) | (v1 >> 51)) & m
        v1 ^= v0
        v0 = ((v0 << 32) | (v0 >> 32)) & m
        v2 = (v2 + v3) & m
        v3 = ((v3 << 16) | (v3 >> 48)) & m
        v3 ^= v2
        v0 = (v0 + v3) & m
        v3 = ((v3 << 21) | (v3 >> 43)) & m
        v3 ^= v0
        v2 = (v2 + v1) & m
        v1 = ((v1 << 17) | (v1 >> 47)) & m
        v1 ^= v2
        v2 = ((v2 << 32) | (v2 >> 32)) & m
    return v0 ^ v1 ^ v2 ^ v3
