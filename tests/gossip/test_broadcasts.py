"""The piggyback queue: retransmit limits, invalidation, least-sent first, packet budget."""

from __future__ import annotations

import pytest

from fnlb.gossip.broadcasts import BroadcastQueue, retransmit_limit


@pytest.mark.parametrize(
    ("n", "mult", "expected"),
    [
        (1, 4, 4),
        (5, 4, 4),
        (9, 4, 4),
        (10, 4, 8),
        (99, 4, 8),
        (100, 4, 12),
        (500, 4, 12),
        (1000, 2, 8),
    ],
)
def test_retransmit_limit_is_mult_times_ceil_log10(n: int, mult: int, expected: int) -> None:
    assert retransmit_limit(n, mult) == expected


def test_newer_broadcast_with_same_key_replaces_the_queued_one() -> None:
    q = BroadcastQueue()
    q.queue("n1", b"alive-1")
    q.queue("n1", b"alive-2")
    assert len(q) == 1
    assert q.take(1000, limit=3) == [b"alive-2"]


def test_each_broadcast_stops_after_its_limit() -> None:
    q = BroadcastQueue()
    q.queue("k", b"x")
    sent = [q.take(100, limit=3) for _ in range(5)]
    assert sent == [[b"x"], [b"x"], [b"x"], [], []]
    assert len(q) == 0


def test_least_sent_first_then_newest() -> None:
    q = BroadcastQueue()
    q.queue("old", b"o" * 10)
    q.take(100, limit=5)
    q.queue("a", b"a" * 10)
    q.queue("b", b"b" * 10)
    assert q.take(25, limit=5) == [b"b" * 10, b"a" * 10]
    q.queue("c", b"c" * 10)
    assert q.take(12, limit=5) == [b"c" * 10]


def test_take_respects_budget_and_skips_what_does_not_fit() -> None:
    q = BroadcastQueue()
    q.queue("big", b"B" * 50)
    q.queue("small", b"s" * 5)
    assert q.take(20, limit=5) == [b"s" * 5]
    assert "big" in q
