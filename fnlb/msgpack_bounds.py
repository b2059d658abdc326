"""Decode a peer's msgpack within bounds: size, per-container lengths, depth, total items, memory.

Rule 1: no asyncio, socket, time or global random here. Rule 2: any bytes either decode or
raise `RemoteProtocolError(reason)`; nothing else escapes `unpack`.

Why this exists (issue #12): msgpack's `max_*_len` options bound each container's length,
but not how many containers there are, nor how deep they nest, nor what they cost. One byte
(0x90) is an empty array, which is a 56-byte Python list: a 3.8 MiB stream of nested empty
arrays raised a peer's peak memory by 280 MiB, from any key holder.

How: msgpack calls `list_hook` (and `object_hook` for maps) as each container completes,
innermost first. The `_Guard` hook

- counts the container and its elements against `max_items` (all containers together):
  this bounds the time too, since each container costs a Python call (~1 us);
- charges its Python size (a list is 56 + 8 n bytes, a map about 104 + 40 n) against a
  budget of `inflation` x the input's size + `slack`, and refuses the input when over:
  whatever the shape, containers never hold more than that before decoding stops;
- gives it a depth, one more than its deepest container child (children that are not
  themselves deeper than 1 are not remembered, so the bookkeeping stays small), and refuses
  past `max_depth`. msgpack's own stack stops at 1024 levels in any case.

Scalars (ints, strings, bytes) are bounded by the caller's per-path string and container
lengths, not by the budget: a short string costs ~50 bytes of Python object for a few bytes
of input, and honest payloads are made of such fields, so charging them would refuse honest
state. docs/benchmarks.md ("Hostile gossip") gives the measured worst cases.

Measured cost of the hook: about +40 % decode time on a 100,000-row push-pull; callers keep
the item bound low enough that one message decodes well within 50 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from fnlb.errors import RemoteProtocolError

_LIST_BASE, _LIST_ITEM = 56, 8
_MAP_BASE, _MAP_ITEM = 104, 40


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one decoding path; reasons are `prefix` + a fixed word.

    Reasons: `<prefix>too_large` (input size), `<prefix>malformed` (not msgpack, or a
    per-container length over its cap), `<prefix>too_deep`, `<prefix>too_many_items`,
    `<prefix>too_inflated`. `malformed` overrides the word for msgpack errors, for paths
    that already counted them under another name.
    """

    max_bytes: int
    max_depth: int
    max_items: int
    max_array: int
    max_map: int = 0
    max_str: int = 0
    max_bin: int = 0
    inflation: float = 2.0
    slack: int = 64 * 1024
    prefix: str = ""
    malformed: str = ""


class _Guard:
    """The hook msgpack calls on every completed container (see the module docstring)."""

    __slots__ = ("budget", "cost", "deep", "items", "limits")

    def __init__(self, limits: Limits, size: int) -> None:
        self.limits = limits
        self.items = 0
        self.cost = 0
        self.budget = int(limits.inflation * size) + limits.slack
        self.deep: dict[int, int] = {}

    def _depth(self, children: Any) -> int:
        depth = 1
        deep = self.deep
        for x in children:
            t = type(x)
            if t is list or t is dict:
                d = deep.pop(id(x), 1) + 1
                if d > depth:
                    depth = d
        if depth > self.limits.max_depth:
            raise RemoteProtocolError(self.limits.prefix + "too_deep", f"depth {depth}")
        return depth

    def _charge(self, n: int, cost: int) -> None:
        self.items += n + 1  # the container itself: each costs a hook call, even empty
        if self.items > self.limits.max_items:
            raise RemoteProtocolError(self.limits.prefix + "too_many_items", f"{self.items}")
        self.cost += cost
        if self.cost > self.budget:
            raise RemoteProtocolError(
                self.limits.prefix + "too_inflated", f"{self.cost} bytes of containers"
            )

    def list_hook(self, value: list[Any]) -> list[Any]:
        n = len(value)
        self._charge(n, _LIST_BASE + _LIST_ITEM * n)
        depth = self._depth(value)
        if depth > 1:
            self.deep[id(value)] = depth
        return value

    def object_hook(self, value: dict[Any, Any]) -> dict[Any, Any]:
        n = len(value)
        self._charge(n, _MAP_BASE + _MAP_ITEM * n)
        depth = self._depth(value.values())
        if depth > 1:
            self.deep[id(value)] = depth
        return value


def unpack(data: bytes | bytearray | memoryview, limits: Limits) -> Any:
    """The value `data` encodes, or RemoteProtocolError(reason) if it breaks a bound."""
    if len(data) > limits.max_bytes:
        raise RemoteProtocolError(limits.prefix + "too_large", f"{len(data)} bytes")
    guard = _Guard(limits, len(data))
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
            list_hook=guard.list_hook,
            object_hook=guard.object_hook,
        )
    except RemoteProtocolError:
        raise
    except Exception as exc:
        # msgpack signals bad input with ValueError subclasses (ExtraData, FormatError,
        # StackError, UnicodeDecodeError) but also other types for some inputs: whatever it
        # raises, the bytes were not a valid message (Rule 2).
        word = limits.malformed or limits.prefix + "malformed"
        raise RemoteProtocolError(word, type(exc).__name__) from None
