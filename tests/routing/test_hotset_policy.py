"""`--routing=hotset` behind the proxy's policy interface: a busy answer moves the function."""

from __future__ import annotations

import pytest

from fnlb.cluster.view import NodeView
from fnlb.routing.hotset_policy import HotSetPolicy, retry_after_seconds, wait_seconds
from fnlb.routing.router import Router

NODES = [f"10.0.0.{i}:8080" for i in range(1, 6)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_attempt_moves_the_function_and_it_comes_back_after_the_back_off() -> None:
    clock = Clock()
    policy = HotSetPolicy(Router(), clock)
    view = NodeView(1, dict.fromkeys(NODES, "online"))
    order = view.candidates("f")
    assert list(policy.candidates(view, "f", "/r/app/f")) == order
    policy.attempt_started(order[0], "f")
    assert policy.router.local_in_flight(order[0]) == 1
    policy.observe(order[0], "f", "/r/app/f", 503, "15s", "15")
    assert policy.router.local_in_flight(order[0]) == 0
    assert policy.candidates(view, "f", "/r/app/f")[0] == order[1]
    policy.attempt_started(order[1], "f")
    policy.observe(order[1], "f", "/r/app/f", 200, "1.5ms")
    clock.now += 1.0
    assert policy.candidates(view, "f", "/r/app/f")[0] == order[0]


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, None), ("", None), ("12.5ms", 0.0125), ("1m", 60.0), ("x", None)]
)
def test_wait_header(header: str | None, seconds: float | None) -> None:
    assert wait_seconds(header) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("15", 15.0),
        (" 2 ", 2.0),
        ("Fri, 31 Dec 1999 23:59:59 GMT", None),
        ("-1", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
