"""`--routing=hotset` behind the proxy's policy interface: a busy answer moves the function."""

from __future__ import annotations

from fnlb.cluster.view import NodeView
from fnlb.routing.attempt import Attempt
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.load_router import Router

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
    policy.observe(Attempt("f", order[0], "/r/app/f", 503, clock.now, 15.0, 15.0))
    assert policy.router.local_in_flight(order[0]) == 0
    assert policy.candidates(view, "f", "/r/app/f")[0] == order[1]
    policy.attempt_started(order[1], "f")
    policy.observe(Attempt("f", order[1], "/r/app/f", 200, clock.now, 0.0015))
    clock.now += 1.0
    assert policy.candidates(view, "f", "/r/app/f")[0] == order[0]
