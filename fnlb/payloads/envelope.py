"""The cluster envelope: how every fnlb gossip message is framed, and its strict reader.

Schema version 1 (the kinds below; a new shape gets a new kind, so old peers drop it and
count it as `bad_cluster_message` rather than misread it). A broadcast or direct message is
a msgpack array `[kind, ...]`:

    ["n", [entry, ...]]                 node-set entries       fnlb.payloads.node_set
    ["v", peer, node, online, stamp]    one peer's verdict      fnlb.payloads.verdict
    ["m", node, reading]                a node's /metrics       fnlb.payloads.node_metrics
    ["b", backoff_bytes]                routing back-off        fnlb.payloads.backoff
    ["l", peer, digest_bytes]           one peer's load digest  fnlb.payloads.load_digest

A push-pull full state is a map: fnlb.payloads.full_state. Anything malformed raises
RemoteProtocolError (dropped by the caller and counted by reason).
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from fnlb import msgpack_bounds
from fnlb.errors import RemoteProtocolError

MAX_MESSAGE_BYTES: Final = 8 << 20
"""Largest message or full state read (a full state of thousands of nodes fits)."""
NODE_SET: Final = "n"
VERDICT: Final = "v"
NODE_METRICS: Final = "m"
BACKOFF: Final = "b"
LOAD: Final = "l"


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


# Issue #12: bounded like every msgpack path (fnlb.msgpack_bounds). The deepest honest shape
# is a full state: map, "nodes" map, entries, entry (4); the item cap keeps one decode within
# ~50 ms on a loaded core; strings are addresses and names, bins carry nested digests.
_LIMITS: Final = msgpack_bounds.Limits(
    max_bytes=MAX_MESSAGE_BYTES,
    max_depth=6,
    max_items=64 * 1024,  # ~10 items a node: some 6,000 nodes
    max_array=65_536,
    max_map=65_536,
    max_str=4096,
    max_bin=MAX_MESSAGE_BYTES,
    slack=1 << 20,
    prefix="cluster_",
    malformed="bad_cluster_msgpack",
)


def unpack(data: bytes) -> Any:
    """The msgpack value of `data`; RemoteProtocolError when too large, malformed, or over a
    bound on depth, items or decoded size (`cluster_too_deep`, `cluster_too_many_items`,
    `cluster_too_inflated`)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise RemoteProtocolError("cluster_state_too_large", f"{len(data)} bytes")
    return msgpack_bounds.unpack(data, _LIMITS)


def open_message(payload: bytes) -> list[Any]:
    """The array of a broadcast, its kind first; RemoteProtocolError when it is not one of
    the shapes above (the payload inside each is checked by its own module)."""
    msg = unpack(payload)
    if not isinstance(msg, list) or not msg:
        raise RemoteProtocolError("bad_cluster_message", "not a non-empty list")
    kind = msg[0]
    n = len(msg)
    if (
        (kind == NODE_SET and n == 2 and isinstance(msg[1], list))
        or (kind == VERDICT and n == 5)
        or (kind == NODE_METRICS and n == 3 and isinstance(msg[1], str))
        or (kind == BACKOFF and n == 2 and isinstance(msg[1], bytes))
        or (kind == LOAD and n == 3 and isinstance(msg[1], str) and isinstance(msg[2], bytes))
    ):
        return msg
    raise RemoteProtocolError("bad_cluster_message", f"unknown kind {kind!r}")


def load_message(peer: str, digest: bytes) -> bytes:
    """`["l", peer, digest]`: one peer's load digest (fnlb.payloads.load_digest)."""
    return pack([LOAD, peer, digest])


def backoff_message(entries: bytes) -> bytes:
    """`["b", entries]`: routing back-off (fnlb.payloads.backoff)."""
    return pack([BACKOFF, entries])


def metrics_message(node: str, reading: list[float | int]) -> bytes:
    """`["m", node, reading]`: a node's /metrics reading (fnlb.payloads.node_metrics)."""
    return pack([NODE_METRICS, node, reading])
