"""Gossip payload: a peer's last admission placement, in its push-pull full state.

Schema version 1, a map under the full state's "placement" key:

    {"e": epoch, "o": origin, "y": young, "n": [node, ...], "t": [tail index, ...],
     "h": [[function, ...], ...]}

`n` the routable nodes it placed over, `t` the tail's nodes as indices into `n`, `h` the
protected functions homed on each node of `n`, in `n`'s order (one string each: a few
hundred functions cost a few kilobytes an exchange). What it means: fnlb.routing.admission,
`Placed` and `Admission.offer`. A placement that breaks a bound below is refused with
RemoteProtocolError (`bad_placement`); the caller drops it and keeps the rest of the state,
so that a later schema never costs an older peer its node set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from fnlb.errors import RemoteProtocolError
from fnlb.payloads.load_digest import MAX_FUNCTION_NAME, MAX_NODE_NAME, MAX_NODES

MAX_HOMES: Final = 16_384
"""Protected functions carried at most (the control loop scores 256; a placement over more
is not sent, and one claiming more is refused)."""
MAX_EPOCH: Final = 2**40
"""Epochs are 30 s apart: 2^40 of them is further than any clock goes."""


class WirePlacement(NamedTuple):
    """A placement as it travels (fnlb.routing.admission's `Placed`, flattened)."""

    epoch: int
    origin: int
    young: bool
    nodes: tuple[str, ...]
    tail: tuple[str, ...]
    homes: Mapping[str, str]


def placement_map(
    epoch: int,
    origin: int,
    young: bool,
    nodes: Sequence[str],
    tail: Sequence[str],
    homes: Mapping[str, str],
) -> dict[str, Any] | None:
    """A placement for the wire; None when it has no homes or too many to send."""
    if not homes or len(homes) > MAX_HOMES:
        return None
    index = {n: i for i, n in enumerate(nodes)}
    by_node: list[list[str]] = [[] for _ in nodes]
    for key, node in homes.items():
        by_node[index[node]].append(key)
    return {
        "e": epoch,
        "o": origin,
        "y": young,
        "n": list(nodes),
        "t": [index[n] for n in tail],
        "h": by_node,
    }


def open_placement(raw: Any) -> WirePlacement:
    """The placement a peer sent; RemoteProtocolError (`bad_placement`) when any field is
    missing, of another type, out of bounds, or names a node twice or a function twice."""
    if not isinstance(raw, dict):
        raise _bad("not a map")
    epoch, origin, young = raw.get("e"), raw.get("o"), raw.get("y")
    nodes, tail, homes = raw.get("n"), raw.get("t"), raw.get("h")
    if not (isinstance(epoch, int) and isinstance(origin, int)):
        raise _bad("bad epoch or origin")
    if not (_count(epoch) and _count(origin) and origin <= epoch):
        raise _bad("bad epoch or origin")
    if not isinstance(young, bool):
        raise _bad("bad young flag")
    if not (isinstance(nodes, list) and 0 < len(nodes) <= MAX_NODES):
        raise _bad("bad nodes")
    if not all(isinstance(n, str) and 0 < len(n.encode()) <= MAX_NODE_NAME for n in nodes):
        raise _bad("bad node name")
    if len(set(nodes)) != len(nodes):
        raise _bad("a node named twice")
    if not (isinstance(tail, list) and len(tail) < len(nodes)):
        raise _bad("bad tail")
    if not all(type(i) is int and 0 <= i < len(nodes) for i in tail) or len(set(tail)) != len(tail):
        raise _bad("bad tail index")
    if not (isinstance(homes, list) and len(homes) == len(nodes)):
        raise _bad("bad homes")
    placed: dict[str, str] = {}
    for node, keys in zip(nodes, homes, strict=True):
        if not isinstance(keys, list):
            raise _bad("bad homes")
        for key in keys:
            if not (isinstance(key, str) and 0 < len(key.encode()) <= MAX_FUNCTION_NAME):
                raise _bad("bad function name")
            if key in placed:
                raise _bad("a function homed twice")
            placed[key] = node
            if len(placed) > MAX_HOMES:
                raise _bad("too many homes")
    if not placed:
        raise _bad("no homes")
    return WirePlacement(epoch, origin, young, tuple(nodes), tuple(nodes[i] for i in tail), placed)


def _count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_EPOCH


def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError("bad_placement", why)
