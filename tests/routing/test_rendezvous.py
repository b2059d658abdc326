"""Rendezvous hashing moves only what it must, and every peer orders keys alike."""

from __future__ import annotations

import pytest

from fnlb.routing.function_key import function_key
from fnlb.routing.rendezvous import RendezvousTable

KEYS = [f"r/app{i % 37}/fn{i}" for i in range(10_000)]
NODES = [f"10.0.0.{i}:8080" for i in range(1, 11)]


def homes(table: RendezvousTable) -> dict[str, str]:
    return {k: table.order(k)[0] for k in KEYS}


@pytest.mark.parametrize("leaving", NODES)
def test_removing_any_node_moves_only_its_own_keys(leaving: str) -> None:
    before = homes(RendezvousTable(NODES))
    after = homes(RendezvousTable([n for n in NODES if n != leaving]))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == leaving for k in moved)
    assert len(moved) / len(KEYS) <= 1 / len(NODES) + 0.01


def test_adding_a_node_moves_at_most_its_fair_share() -> None:
    for extra in ("10.0.0.11:8080", "0.0.0.0:1", "zzz:9"):
        before = homes(RendezvousTable(NODES))
        after = homes(RendezvousTable([*NODES, extra]))
        moved = [k for k in KEYS if before[k] != after[k]]
        assert all(after[k] == extra for k in moved)
        assert len(moved) / len(KEYS) <= 1 / (len(NODES) + 1) + 0.01


def test_keys_spread_evenly() -> None:
    counts: dict[str, int] = {}
    for home in homes(RendezvousTable(NODES)).values():
        counts[home] = counts.get(home, 0) + 1
    assert max(counts.values()) < 1.15 * len(KEYS) / len(NODES)


def test_order_is_independent_of_input_order_and_complete() -> None:
    a = RendezvousTable(NODES)
    b = RendezvousTable(list(reversed(NODES)))
    for key in KEYS[:500]:
        assert a.order(key) == b.order(key)
        assert sorted(a.order(key)) == sorted(NODES)
        assert a.first(key) == a.order(key)[0]


def test_empty_table() -> None:
    assert RendezvousTable([]).order("x") == []
    assert RendezvousTable([]).first("x") is None


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/r/app/route", "r/app/route"),
        ("/r/app/deep/route/", "r/app/deep/route"),
        ("/r/app", "r/app"),
        ("/invoke/01ABCDEF", "01ABCDEF"),
        ("/invoke/01ABCDEF/", "01ABCDEF"),
        ("/t/app/hook", "t/app/hook"),
        ("/t/app/a/b", "t/app/a/b"),
        ("/version", "/version"),
        ("/", "/"),
        ("/invoke/", "/invoke/"),
    ],
)
def test_function_key(path: str, key: str) -> None:
    assert function_key(path) == key
