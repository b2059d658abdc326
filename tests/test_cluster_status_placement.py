"""`fnlb cluster status` shows the protected set and the tail's nodes (issue 16)."""

from __future__ import annotations

from typing import Any

from fnlb.cli.cluster import format_status


def report(placement: Any) -> dict[str, Any]:
    return {
        "self": "p0",
        "peers": [{"name": "p0", "address": "127.0.0.1:1", "state": "alive", "incarnation": 0}],
        "nodes": [],
        "version": 1,
        "checksum": "x",
        "placement": placement,
    }


def test_status_lists_the_protected_set_per_node_and_the_tail() -> None:
    placement = {
        "protected": {"/r/a/f1": "n1:8080", "/r/a/f2": "n2:8080", "/r/a/f3": "n1:8080"},
        "tail_nodes": ["n3:8080"],
    }
    out = format_status({"u": report(placement)}, True)
    assert "placement: 3 functions protected; tail nodes: n3:8080" in out
    lines = out.splitlines()
    assert any(line.split()[:3] == ["n1:8080", "protected", "2"] for line in lines)
    assert any(line.split()[:3] == ["n3:8080", "tail", "0"] for line in lines)


def test_status_says_when_nothing_is_placed_and_stays_quiet_without_placement() -> None:
    out = format_status({"u": report({"protected": {}, "tail_nodes": []})}, True)
    assert "nothing placed yet" in out
    assert "placement:" not in format_status({"u": report(None)}, True)


def test_status_shows_each_peers_placement_digest_and_says_when_they_differ() -> None:
    """Peers agree on a placement through push-pull (docs/routing.md, After a restart): the
    agreement table shows each one's digest, and a line says when they differ."""
    placed = {"protected": {"/r/a/f1": "n1:8080"}, "tail_nodes": [], "epoch": 7}
    same = {"u1": report({**placed, "digest": "ab12"}), "u2": report({**placed, "digest": "ab12"})}
    out = format_status(same, True)
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("u")] == [
        "ab12",
        "ab12",
    ]
    assert "placements differ" not in out
    apart = {**same, "u2": report({**placed, "digest": "cd34"})}
    assert "placements differ" in format_status(apart, True)
    # a peer with nothing placed (no digest) is not counted as differing
    quiet = {**same, "u3": report({"protected": {}, "tail_nodes": []})}
    assert "placements differ" not in format_status(quiet, True)
