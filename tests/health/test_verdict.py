"""The original fnlb's health rule, table-driven."""

from __future__ import annotations

import pytest

from fnlb.health.verdict import NodeHealth, State, after_check


def run(results: str, healthy: int = 1, unhealthy: int = 2) -> list[State]:
    h = NodeHealth()
    states: list[State] = []
    for r in results:
        h = after_check(h, r == "+", healthy=healthy, unhealthy=unhealthy)
        states.append(h.state)
    return states


@pytest.mark.parametrize(
    ("results", "healthy", "unhealthy", "expected"),
    [
        ("+", 1, 2, ["online"]),
        ("-", 1, 2, ["offline"]),  # the first check decides, even a failure
        ("+-", 1, 2, ["online", "online"]),
        ("+--", 1, 2, ["online", "online", "offline"]),
        ("+-+-", 1, 2, ["online"] * 4),  # failures must be consecutive
        ("-+", 1, 2, ["offline", "online"]),
        ("-+", 3, 2, ["offline", "offline"]),
        ("-+++", 3, 2, ["offline", "offline", "offline", "online"]),
        ("-++-++", 3, 2, ["offline"] * 6),  # successes must be consecutive
        ("+---", 1, 3, ["online", "online", "online", "offline"]),
    ],
)
def test_transitions(results: str, healthy: int, unhealthy: int, expected: list[State]) -> None:
    assert run(results, healthy, unhealthy) == expected


def test_error_is_kept_until_a_success() -> None:
    h = after_check(NodeHealth(), False, healthy=1, unhealthy=2, error="refused")
    assert h.last_error == "refused"
    assert after_check(h, True, healthy=1, unhealthy=2).last_error == ""
