"""Many modelled nodes on one virtual clock give the same story as stepping each node."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.fnsim.fleet import Fleet
from fnlb.fnsim.model import CallFinished, Event, PoolConfig, PoolModel

CONFIG = PoolConfig(memory_mb=256, cold_start_s=0.3, idle_timeout_s=2.0, max_wait_s=1.0)

_traffic = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.5),  # gap
        st.integers(min_value=0, max_value=3),  # node
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0.0, max_value=1.5),  # execution time
    ),
    max_size=80,
)


def _order(pair: tuple[int, Event]) -> tuple[float, int, str]:
    return (pair[1].at, pair[0], repr(pair[1]))


@settings(max_examples=100, deadline=None)
@given(traffic=_traffic)
def test_fleet_matches_nodes_stepped_one_by_one(
    traffic: list[tuple[float, int, str, float]],
) -> None:
    fleet = Fleet(4, CONFIG)
    alone = [PoolModel(CONFIG) for _ in range(4)]
    now = 0.0
    seen_fleet = []
    seen_alone = []
    for i, (gap, node, fn, exec_s) in enumerate(traffic):
        now += gap
        fleet.advance(now)
        for model in alone:
            model.handle_timer(now)
        fleet.submit(node, i, fn, exec_s, now)
        alone[node].submit(i, fn, exec_s, now)
        seen_fleet += fleet.drain_events()
        for n, model in enumerate(alone):
            seen_alone += [(n, e) for e in model.drain_events()]
        assert fleet.stats() == [m.stats() for m in alone]
    end = fleet.next_timer()
    while end is not None:
        fleet.advance(end)
        end = fleet.next_timer()
    for n, model in enumerate(alone):
        model.handle_timer(now + 100.0)
        seen_alone += [(n, e) for e in model.drain_events()]
    seen_fleet += fleet.drain_events()
    assert sorted(seen_fleet, key=_order) == sorted(seen_alone, key=_order)
    assert fleet.stats() == [m.stats() for m in alone]


def test_events_come_out_in_time_order_tagged_by_node() -> None:
    fleet = Fleet(2, PoolConfig(cold_start_s=0.1))
    fleet.submit(0, "x", "f", 1.0, now=0.0)
    fleet.submit(1, "y", "f", 0.2, now=0.0)
    fleet.advance(5.0)
    events = fleet.drain_events()
    assert [(n, e.call_id, type(e).__name__) for n, e in events] == [
        (0, "x", "CallStarted"),
        (1, "y", "CallStarted"),
        (1, "y", "CallFinished"),
        (0, "x", "CallFinished"),
    ]
    assert all(isinstance(e, CallFinished) for _, e in events[2:])


def test_cancel_goes_to_the_named_node() -> None:
    fleet = Fleet(2, PoolConfig(memory_mb=128))
    fleet.submit(1, "a", "f", 5.0, now=0.0)
    fleet.submit(1, "b", "f", 1.0, now=0.1)
    assert fleet.cancel(0, "b", now=0.2) is False
    assert fleet.cancel(1, "b", now=0.2) is True
    assert fleet.stats()[1].cancelled == 1


def test_a_fleet_needs_a_node() -> None:
    with pytest.raises(ValueError, match="count"):
        Fleet(0)
