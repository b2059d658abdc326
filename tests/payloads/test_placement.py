"""The placement in push-pull (fnlb.payloads.placement): what a peer sends is what another
reads, and anything out of its bounds is refused on its own."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from fnlb.errors import RemoteProtocolError
from fnlb.payloads.full_state import full_state, open_full_state
from fnlb.payloads.load_digest import MAX_FUNCTION_NAME, MAX_NODE_NAME
from fnlb.payloads.placement import MAX_HOMES, WirePlacement, open_placement, placement_map

NODES = ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")
HOMES = {"app/a": NODES[0], "app/b": NODES[2], "app/c": NODES[0]}


def wire() -> dict[str, Any]:
    got = placement_map(40, 37, False, NODES, (NODES[1],), HOMES)
    assert got is not None
    return got


def test_a_placement_reads_back_as_it_was_sent_through_a_full_state() -> None:
    data = full_state({"v": 1, "entries": [], "gc_floor_ms": 0}, [], wire())
    _nodes, _verdicts, raw = open_full_state(data)
    assert open_placement(raw) == WirePlacement(40, 37, False, NODES, (NODES[1],), HOMES)


def test_a_full_state_without_a_placement_reads_as_before() -> None:
    """An older peer sends none: its node set and verdicts still merge."""
    data = msgpack.packb({"nodes": None, "verdicts": []})
    assert open_full_state(data) == (None, [], None)


def test_nothing_placed_or_more_than_the_bound_is_not_sent() -> None:
    assert placement_map(40, 37, False, NODES, (), {}) is None
    many = {f"f{i}": NODES[0] for i in range(MAX_HOMES + 1)}
    assert placement_map(40, 37, False, NODES, (), many) is None


def bad(**change: Any) -> dict[str, Any]:
    w = wire()
    w.update(change)
    return w


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [1, 2],
        bad(e=None),
        bad(e=-1),
        bad(e=2**41),
        bad(e=True),
        bad(o=41),  # an origin after the epoch
        bad(o="1"),
        bad(y=1),
        bad(n=[]),
        bad(n="10.0.0.1:8080"),
        bad(n=[NODES[0], NODES[0], NODES[1]]),
        bad(n=["x" * (MAX_NODE_NAME + 1), NODES[1], NODES[2]]),
        bad(n=[1, NODES[1], NODES[2]]),
        bad(t=[0, 1, 2]),  # every node the tail's
        bad(t=[3]),
        bad(t=[-1]),
        bad(t=[1, 1]),
        bad(t=[True]),
        bad(h=[["app/a"], []]),  # not one list a node
        bad(h=[["app/a"], [], "app/b"]),
        bad(h=[["app/a"], ["app/a"], []]),  # homed twice
        bad(h=[[""], [], []]),
        bad(h=[["x" * (MAX_FUNCTION_NAME + 1)], [], []]),
        bad(h=[[7], [], []]),
        bad(h=[[], [], []]),  # nothing placed
        bad(h=[[f"f{i}" for i in range(MAX_HOMES + 1)], [], []]),
    ],
)
def test_a_placement_out_of_bounds_is_refused(raw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as e:
        open_placement(raw)
    assert e.value.reason == "bad_placement"
