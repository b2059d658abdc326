"""Rendezvous (highest-random-weight) hashing: every key gets a stable order over the nodes.

Each node scores every key; a key's order is the nodes sorted by score, highest first. When a
node leaves, only the keys whose first choice it was move (each to its own second choice),
and a node that joins takes only the keys it now outscores everywhere: about 1/N of them, the
minimum possible. The order also gives every key a natural "next node" for spill and retry,
identical on every peer that sees the same node list.

Cost: one 64-bit key hash plus one integer mix per node. The score is the splitmix64 finaliser
of (key hash XOR node seed), which makes the per-node scores of one key independent enough
for HRW while staying cheap in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_MASK = (1 << 64) - 1


def hash64(text: str) -> int:
    """A stable 64-bit hash of a string (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def score(key_hash: int, node_seed: int) -> int:
    """The weight of one node for one key; the highest weight wins."""
    return _mix(key_hash ^ node_seed)


class RendezvousTable:
    """Orders keys over a fixed node list; build a new table when the list changes.

    Node seeds are computed once per table, so ordering a key costs one hash of the key and
    one mix per node.
    """

    __slots__ = ("_seeded", "nodes")

    def __init__(self, nodes: Sequence[str]) -> None:
        self.nodes: tuple[str, ...] = tuple(sorted(set(nodes)))
        self._seeded = [(hash64(n), n) for n in self.nodes]

    def order(self, key: str) -> list[str]:
        """Every node, best first, for `key`."""
        h = hash64(key)
        ranked = sorted(self._seeded, key=lambda sn: _mix(h ^ sn[0]), reverse=True)
        return [n for _, n in ranked]

    def first(self, key: str) -> str | None:
        """The key's home node, without sorting the rest."""
        if not self._seeded:
            return None
        h = hash64(key)
        return max(self._seeded, key=lambda sn: _mix(h ^ sn[0]))[1]
