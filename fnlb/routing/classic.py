"""The original fnlb's routing ("classic"), bit for bit, for `--routing=classic`.

Rule 1: no asyncio, socket, time or global random here. Rule 2: randomness comes in through
an object with a `random()` method; wait figures come in as observations; the decision is
returned.

Theory of operation (fnproject/fn `fnlb/lb/ch.go`, January 2018, and fnproject/lb):

1. The key is the URL path. Its 64-bit sum is SipHash-2-4 with k0=0, k1=0x4c617279426f6174.
2. A jump hash of that sum over the *sorted* list of healthy nodes gives the home index.
   The original's jump hash is not quite Lamping & Veach's: it computes the next jump as
   `(b + 1) * (2**31 // (key >> 33) + 1)` in integers where the paper has
   `(b + 1) * 2**31 / ((key >> 33) + 1)` in floating point. Every jump at least doubles
   `b + 1`, so index 1 of the sorted list is never a home, and with two nodes every key's
   home is the first one. `fnlb_jump_hash` keeps that, so a classic peer agrees with an
   original fnlb; `jump_hash` is the paper's function, selectable with `jump="paper"`.
   (The original also panics when `key >> 33` is 0, odds 2**-31 per step; we jump out.)
3. Each response's `XXX-FXLB-WAIT` header (a Go duration) feeds an EWMA per (node, path)
   with decay 0.1; the first sample is taken as is, a missing or unparsable header counts
   as a wait of 0, as in the original.
4. Starting at the home index, a node is accepted when its EWMA is under 500 ms; from 500 ms
   to 2 s with an integer percentage falling linearly from 40 to 10; above 2 s with 10 %.
   A refused node passes the call to the next node in the list, wrapping around. The
   original walks around the ring until some node accepts; we stop after `max_passes`
   full passes and return the home node (with the default of 100 passes the odds of that
   are at most 0.9 ** (100 * len(nodes)), so the draws match the original's in practice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from fnlb.goduration import parse_go_duration_ns
from fnlb.routing.picked import HOME, SPILL
from fnlb.routing.siphash import siphash24

__all__ = [
    "DECAY",
    "FNLB_K0",
    "FNLB_K1",
    "LOWER_WAIT_NS",
    "UPPER_WAIT_NS",
    "WAIT_HEADER",
    "ClassicRouter",
    "RandomSource",
    "accept_percent",
    "ewma",
    "fnlb_jump_hash",
    "jump_hash",
    "key_sum",
    "wait_from_header",
]

FNLB_K0 = 0
FNLB_K1 = 0x4C617279426F6174  # "LaryBoat"
WAIT_HEADER = "XXX-FXLB-WAIT"
DECAY = 0.1
LOWER_WAIT_NS = 500_000_000
UPPER_WAIT_NS = 2_000_000_000

_MASK64 = (1 << 64) - 1
_JUMP_MULT = 2862933555777941757


class RandomSource(Protocol):
    """What the router needs of a random generator: `random.Random` fits."""

    def random(self) -> float:
        """A float uniformly drawn from [0, 1)."""
        ...


def key_sum(key: str) -> int:
    """The original fnlb's 64-bit sum of a URL path: SipHash-2-4 with its fixed key."""
    return siphash24(FNLB_K0, FNLB_K1, key.encode())


def fnlb_jump_hash(key: int, buckets: int) -> int:
    """The original fnlb's jump hash of a 64-bit sum into `buckets` (integer variant, see 2.)."""
    if buckets <= 0:
        raise ValueError("jump hash needs at least one bucket")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULT + 1) & _MASK64
        high = key >> 33
        if high == 0:  # Go would divide by zero here; any jump past the end ends the walk.
            return b
        j = (b + 1) * ((1 << 31) // high + 1)
    return b


def jump_hash(key: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash (arXiv 1406.2294) of a 64-bit sum."""
    if buckets <= 0:
        raise ValueError("jump hash needs at least one bucket")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULT + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def ewma(old_ns: int, new_ns: int) -> int:
    """One step of the original's wait average: 10 % new sample, truncated to whole ns."""
    return int(new_ns * DECAY + old_ns * (1 - DECAY))


def accept_percent(wait_ns: int) -> int:
    """The chance, in whole percent, that a node whose average wait is `wait_ns` takes a call.

    100 under 500 ms; 40 at 500 ms falling linearly (truncated) to 10 at 2 s; 10 above.
    """
    if wait_ns < LOWER_WAIT_NS:
        return 100
    if wait_ns > UPPER_WAIT_NS:
        return 10
    fraction = float(wait_ns - LOWER_WAIT_NS) / float(UPPER_WAIT_NS - LOWER_WAIT_NS)
    return int(40.0 - fraction * 30.0)


class ClassicRouter:
    """The original fnlb's router: a home by hash, then a walk away from slow nodes.

    One instance per process holds the wait averages of that process, as the original did;
    it is not shared by gossip. Not thread-safe; the proxy calls it from one event loop.
    """

    def __init__(
        self,
        rng: RandomSource,
        *,
        jump: Literal["fnlb", "paper"] = "fnlb",
        max_passes: int = 100,
        key_cache_size: int = 65536,
        max_wait_entries: int = 100_000,
    ) -> None:
        if max_passes < 1 or key_cache_size < 1 or max_wait_entries < 1:
            raise ValueError("max_passes, key_cache_size and max_wait_entries must be >= 1")
        self._rng = rng
        self._jump = fnlb_jump_hash if jump == "fnlb" else jump_hash
        self._max_passes = max_passes
        self._key_cache_size = key_cache_size
        self._max_wait_entries = max_wait_entries
        self._sums: dict[str, int] = {}
        self._waits: dict[tuple[str, str], int] = {}
        self._nodes_in: Sequence[str] | None = None
        self._nodes_sorted: tuple[str, ...] = ()
        self.picked = HOME
        """What the last `pick` chose (fnlb.routing.picked): its home, or SPILL when the
        walk moved on from a slow home."""

    def home_index(self, key: str, count: int) -> int:
        """The index of `key`'s home in a sorted list of `count` nodes."""
        total = self._sums.get(key)
        if total is None:
            total = key_sum(key)
            if len(self._sums) >= self._key_cache_size:
                del self._sums[next(iter(self._sums))]  # drop the oldest cached key
            self._sums[key] = total
        return self._jump(total, count)

    def pick(self, key: str, nodes: Sequence[str]) -> str | None:
        """The node for a call to path `key` among the healthy `nodes` (None if there are none).

        `nodes` needs no particular order: it is sorted here, and the sorted copy is kept
        while the caller passes the same tuple again (an immutable view's routable nodes).
        """
        ordered = self._sorted(nodes)
        count = len(ordered)
        if count == 0:
            return None
        home = self.home_index(key, count)
        i = home
        for _ in range(self._max_passes * count):
            node = ordered[i]
            if self._accepts(node, key):
                self.picked = HOME if i == home else SPILL
                return node
            i = i + 1 if i + 1 < count else 0
        self.picked = HOME
        return ordered[home]

    def candidates(self, key: str, nodes: Sequence[str]) -> list[str]:
        """The picked node first, then the others in list order after it, for retries.

        The original had no retry (a dead node gave 502); this order is what its walk
        would try next, so classic routing gains retries without changing the first choice.
        """
        first = self.pick(key, nodes)
        if first is None:
            return []
        ordered = self._nodes_sorted
        start = ordered.index(first)
        return [*ordered[start:], *ordered[:start]]

    def observe(self, node: str, key: str, wait_ns: int) -> int:
        """Fold one wait sample (ns) for `key` on `node` into its average; returns the average."""
        wait_ns = max(wait_ns, 0)  # a negative Go duration is nonsense; the original took it
        slot = (node, key)
        old = self._waits.get(slot)
        if old is None:
            if len(self._waits) >= self._max_wait_entries:
                del self._waits[next(iter(self._waits))]
            new = wait_ns
        else:
            new = ewma(old, wait_ns)
        self._waits[slot] = new
        return new

    def observe_header(self, node: str, key: str, header: str | None) -> int:
        """`observe` with the raw `XXX-FXLB-WAIT` value; missing or bad values count as 0."""
        return self.observe(node, key, wait_from_header(header))

    def wait_average(self, node: str, key: str) -> int | None:
        """The current wait average (ns) of `key` on `node`, None before any sample."""
        return self._waits.get((node, key))

    def forget_node(self, node: str) -> None:
        """Drop the averages of a node that left, so a node re-added later starts afresh."""
        for slot in [s for s in self._waits if s[0] == node]:
            del self._waits[slot]

    def _accepts(self, node: str, key: str) -> bool:
        percent = accept_percent(self._waits.get((node, key), 0))
        if percent >= 100:
            return True  # no draw, as in the original: draws happen only for slow nodes
        return int(self._rng.random() * 100) < percent

    def _sorted(self, nodes: Sequence[str]) -> tuple[str, ...]:
        if nodes is not self._nodes_in or not isinstance(nodes, tuple):
            self._nodes_sorted = tuple(sorted(nodes))
            self._nodes_in = nodes
        return self._nodes_sorted


def wait_from_header(value: str | None) -> int:
    """The wait (ns) an `XXX-FXLB-WAIT` header reports; 0 when absent or unparsable.

    The original ignored parse errors and recorded a zero wait; so do we, because newer Fn
    servers send no header at all and a zero keeps every node acceptable.
    """
    if not value:
        return 0
    try:
        return parse_go_duration_ns(value)
    except ValueError:
        return 0
