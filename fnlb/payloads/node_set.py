"""Gossip payload: node-set entries (kind "n" of the cluster envelope), also the body of a
write-ack hold request (`POST /1/lb/cluster/hold`).

Schema version 1 (implicit: the five-field entry is the whole schema): `["n", [entry, ...]]`
with `entry = [addr, wall_ms, logical, origin, present]`, one last-writer-wins element of
the node set stamped by the hybrid logical clock of peer `origin` (fnlb.cluster.nodeset,
`Entry.to_wire` / `Entry.from_wire`, which checks each field). The full replica, for disk
and push-pull, is `NodeSet.snapshot()` (its own "v": SNAPSHOT_VERSION).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fnlb.errors import RemoteProtocolError
from fnlb.payloads.envelope import NODE_SET, pack, unpack


def node_set_message(entries: Iterable[Sequence[Any]]) -> bytes:
    """`["n", [entry, ...]]` for entries in their wire form (`Entry.to_wire`)."""
    return pack([NODE_SET, [list(e) for e in entries]])


def held_entries(payload: bytes) -> list[Any]:
    """The entries of a hold request: only kind "n" with at least one entry is held (a peer's
    verdicts, load and readings travel by gossip and are no business of the hold)."""
    msg = unpack(payload)
    if not (isinstance(msg, list) and len(msg) == 2 and msg[0] == NODE_SET):
        raise RemoteProtocolError("not_a_node_change", "only node-set entries are held")
    if not isinstance(msg[1], list) or not msg[1]:
        raise RemoteProtocolError("not_a_node_change", "no entries")
    return msg[1]
