"""Suspicion timeouts: memberlist's minimum and Lifeguard's shrinking formula, by table."""

from __future__ import annotations

import math

import pytest

from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.suspicion import (
    Suspicion,
    expected_confirmations,
    remaining_suspicion_time,
    suspicion_timeout,
)

LAN = GossipProfile.lan()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, 4.0),  # log10 floored at 1
        (5, 4.0),
        (10, 4.0),
        (100, 8.0),
        (1000, 12.0),
        (50, 4 * math.log10(50)),
    ],
)
def test_suspicion_timeout_grows_with_log10_n(n: int, expected: float) -> None:
    assert suspicion_timeout(n, LAN) == pytest.approx(expected)


def test_suspicion_timeout_scales_with_profile() -> None:
    ours = GossipProfile.fnlb_default()
    assert suspicion_timeout(5, ours) == pytest.approx(4 * 0.4)
    assert suspicion_timeout(20, ours) == pytest.approx(4 * 0.4 * math.log10(20))


@pytest.mark.parametrize(
    ("n", "k"),
    [(2, 0), (3, 0), (4, 2), (5, 2), (100, 2)],
)
def test_expected_confirmations_is_zero_in_tiny_groups(n: int, k: int) -> None:
    assert expected_confirmations(n, LAN) == k


@pytest.mark.parametrize(
    ("c", "k", "elapsed", "lo", "hi", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),  # no confirmation: the maximum
        (3, 3, 0.0, 2.0, 30.0, 2.0),  # all K confirmations: the minimum
        (1, 3, 0.0, 2.0, 30.0, 30.0 - 28.0 * math.log(2) / math.log(4)),
        (2, 3, 0.0, 2.0, 30.0, 30.0 - 28.0 * math.log(3) / math.log(4)),
        (5, 3, 0.0, 2.0, 30.0, 2.0),  # more than K: floored at the minimum
        (0, 0, 0.0, 2.0, 30.0, 2.0),  # K = 0: the minimum at once
        (0, 3, 10.0, 2.0, 30.0, 20.0),  # elapsed time is subtracted
        (3, 3, 5.0, 2.0, 30.0, -3.0),  # overdue
    ],
)
def test_remaining_time_follows_lifeguard_formula(
    c: int, k: int, elapsed: float, lo: float, hi: float, expected: float
) -> None:
    assert remaining_suspicion_time(c, k, elapsed, lo, hi) == pytest.approx(expected)


def test_independent_confirmations_bring_the_deadline_forward() -> None:
    s = Suspicion.begin("a", now=100.0, n=10, profile=LAN)
    assert s.k == 2
    assert s.deadline == pytest.approx(100.0 + 24.0)
    assert not s.confirm("a")  # the accuser is not its own confirmation
    assert s.confirm("b")
    first = s.deadline
    assert 104.0 < first < 124.0
    assert not s.confirm("b")  # nor is a repeat
    assert s.confirm("c")
    assert s.deadline == pytest.approx(104.0)
    assert not s.confirm("d")  # K reached: nothing more to gain
