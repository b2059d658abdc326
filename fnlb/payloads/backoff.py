"""Gossip payload: routing back-off entries (kind "b" of the cluster envelope).

Schema version 1, the first element of the array: `[1, [node, fn, until_ms], ...]`, at most
MAX_WIRE_ENTRIES entries: avoid `node` for calls of `fn` (ALL_FUNCTIONS, the empty string:
for every function) until `until_ms`, the sender's wall clock in ms. A message of another
version is refused (`backoff_bad_version`). What the entries mean: fnlb.routing.backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from fnlb import msgpack_bounds
from fnlb.errors import LocalProtocolError, RemoteProtocolError

ALL_FUNCTIONS: Final = ""
"""The function name of a node-wide entry."""
MAX_WIRE_ENTRIES: Final = 64
"""Most entries one gossip message carries (each ~40-80 bytes; a SWIM packet ~1300)."""
_WIRE_VERSION: Final = 1
_MAX_WIRE_BYTES: Final = 16_384
_MAX_NAME: Final = 1024


@dataclass(frozen=True, slots=True)
class BackoffEntry:
    """Avoid `node` for `fn` (ALL_FUNCTIONS: for every function) until `until` (wall s)."""

    node: str
    fn: str
    until: float


def encode_entries(entries: Sequence[BackoffEntry]) -> bytes:
    """msgpack `[1, [node, fn, until_ms], ...]`: one message of at most MAX_WIRE_ENTRIES
    entries, whatever its size (`pack_entries` splits by a byte budget)."""
    if len(entries) > MAX_WIRE_ENTRIES:
        raise LocalProtocolError(f"at most {MAX_WIRE_ENTRIES} entries per message")
    body = [_WIRE_VERSION, *([e.node, e.fn, round(e.until * 1000)] for e in entries)]
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def pack_entries(entries: Sequence[BackoffEntry], budget_bytes: int = 1000) -> list[bytes]:
    """`entries` as gossip messages of at most `budget_bytes` each (and MAX_WIRE_ENTRIES);
    an entry too large to fit alone (a function key of a kilobyte) is left out."""
    out: list[bytes] = []
    batch: list[list[object]] = []
    size = 4  # version and the array header (up to 3 bytes for 16+ items)
    for e in entries:
        item: list[object] = [e.node, e.fn, round(e.until * 1000)]
        n = len(msgpack.packb(item, use_bin_type=True))
        if n + 4 > budget_bytes:
            continue
        if batch and (size + n > budget_bytes or len(batch) >= MAX_WIRE_ENTRIES):
            out.append(msgpack.packb([_WIRE_VERSION, *batch], use_bin_type=True))
            batch, size = [], 4
        batch.append(item)
        size += n
    if batch:
        out.append(msgpack.packb([_WIRE_VERSION, *batch], use_bin_type=True))
    return out


_LIMITS: Final = msgpack_bounds.Limits(
    max_bytes=_MAX_WIRE_BYTES,
    max_depth=2,
    max_items=8 * (MAX_WIRE_ENTRIES + 1),
    max_array=MAX_WIRE_ENTRIES + 1,
    max_str=_MAX_NAME,
    prefix="backoff_",
    malformed="backoff_malformed",
)


def decode_entries(data: bytes) -> list[BackoffEntry]:
    """The entries of a peer's message; RemoteProtocolError(reason) on anything malformed."""
    if len(data) > _MAX_WIRE_BYTES:
        raise RemoteProtocolError("backoff_too_large", f"{len(data)} bytes")
    body: Any = msgpack_bounds.unpack(data, _LIMITS)  # issue #12: depth, items, memory
    if not isinstance(body, list) or not body or body[0] != _WIRE_VERSION:
        raise RemoteProtocolError("backoff_bad_version")
    out: list[BackoffEntry] = []
    for item in body[1:]:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not isinstance(item[0], str)
            or not item[0]
            or not isinstance(item[1], str)
            or type(item[2]) is not int
            or not 0 < item[2] < 1 << 53
        ):
            raise RemoteProtocolError("backoff_bad_entry")
        out.append(BackoffEntry(item[0], item[1], item[2] / 1000.0))
    return out
