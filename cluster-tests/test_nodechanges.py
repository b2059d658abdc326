"""What node list a record of acknowledged node changes must lead to (no root needed)."""

from __future__ import annotations

import pytest
from harness.nodechanges import NodeChange, conflicting, expected_nodes, promised_nodes


def change(op: str, node: str, at: float, *, ok: bool = True, via: str = "p1") -> NodeChange:
    assert op in ("add", "delete")
    return NodeChange("add" if op == "add" else "delete", node, via, at, ok)


def test_acknowledged_changes_apply_in_the_order_they_were_acknowledged() -> None:
    changes = [
        change("delete", "a:1", 3.0),
        change("add", "a:1", 1.0),
        change("add", "b:1", 2.0),
        change("delete", "c:1", 4.0),
    ]
    assert expected_nodes({"c:1"}, changes) == {"b:1"}


def test_changes_that_were_not_acknowledged_promise_nothing() -> None:
    changes = [change("add", "a:1", 1.0, ok=False), change("delete", "b:1", 2.0, ok=False)]
    promise = promised_nodes({"b:1", "c:1"}, changes)
    assert promise.undecided == {"a:1", "b:1"}
    assert promise.present == {"c:1"}
    assert not promise.absent


def test_a_node_changed_through_two_peers_is_a_conflict_the_test_cannot_order() -> None:
    changes = [
        change("add", "a:1", 1.0, via="p1"),
        change("delete", "a:1", 2.0, via="p2"),
        change("add", "b:1", 1.0, via="p1"),
        change("delete", "b:1", 2.0, via="p1"),
        change("add", "c:1", 1.0, via="p1"),
        change("add", "c:1", 2.0, via="p2", ok=False),
    ]
    assert conflicting(changes) == {"a:1"}


def test_an_unacknowledged_change_leaves_its_node_undecided_until_an_acked_one() -> None:
    changes = [
        change("add", "a:1", 1.0, ok=False),
        change("delete", "b:1", 2.0, ok=False),
        change("delete", "c:1", 1.0, ok=False),
        change("add", "c:1", 2.0),
    ]
    promise = promised_nodes({"b:1"}, changes)
    assert promise.undecided == {"a:1", "b:1"}
    assert promise.present == {"c:1"}
    assert promise.broken_by({"a:1", "c:1"}) == []
    assert promise.broken_by({"b:1"}) == ["c:1 acknowledged but missing"]
    with pytest.raises(ValueError, match="undecided"):
        expected_nodes({"b:1"}, changes)


def test_a_deleted_node_that_comes_back_breaks_the_promise() -> None:
    promise = promised_nodes({"a:1"}, [change("delete", "a:1", 1.0)])
    assert promise.broken_by({"a:1"}) == ["a:1 deleted (acknowledged) but present"]
