"""Gossip payload: a peer's full state for push-pull anti-entropy.

Schema version 1 (implicit: the map's keys): `{"nodes": snapshot, "verdicts": [[peer, node,
online, stamp], ...]}`, the node-set replica (`NodeSet.snapshot()`, versioned by its own
"v") and the verdicts that can still matter (fnlb.payloads.verdict): every peer's on a
contested node, one some peer calls offline (fnlb.cluster.state, `local_state`; elsewhere a
missing verdict is presumed online), so a healed partition agrees within an exchange or
two. Load is not part of it: fresh within a second anyway, stale after five. Since issue 16
an optional "placement": the sender's last admission placement (fnlb.payloads.placement),
left raw here and checked by its reader, so that a malformed one costs only itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fnlb.errors import RemoteProtocolError
from fnlb.payloads.envelope import pack, unpack


def full_state(nodes: Any, verdicts: Iterable[list[Any]], placement: Any = None) -> bytes:
    state = {"nodes": nodes, "verdicts": list(verdicts)}
    if placement is not None:
        state["placement"] = placement
    return pack(state)


def open_full_state(data: bytes) -> tuple[Any, list[list[Any]], Any]:
    """(node-set snapshot, verdicts as 4-field lists, the raw placement or None);
    RemoteProtocolError when malformed."""
    state = unpack(data)
    if not isinstance(state, dict) or not isinstance(state.get("verdicts"), list):
        raise RemoteProtocolError("bad_cluster_state", "not a cluster state map")
    verdicts = state["verdicts"]
    for item in verdicts:
        if not isinstance(item, list) or len(item) != 4:
            raise RemoteProtocolError("bad_cluster_state", "bad verdict")
    return state.get("nodes"), verdicts, state.get("placement")
