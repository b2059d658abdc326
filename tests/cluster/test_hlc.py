"""The hybrid logical clock: monotonic, causal, bounded drift, wire form."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.errors import RemoteProtocolError

T0 = 1_700_000_000_000


def test_tick_follows_wall_time_and_counts_within_a_millisecond() -> None:
    clock = HybridClock("a")
    assert clock.tick(T0) == Timestamp(T0, 0, "a")
    assert clock.tick(T0) == Timestamp(T0, 1, "a")
    assert clock.tick(T0 + 5) == Timestamp(T0 + 5, 0, "a")


def test_tick_never_goes_back_when_the_wall_clock_does() -> None:
    clock = HybridClock("a")
    first = clock.tick(T0)
    assert clock.tick(T0 - 10_000) > first


def test_update_orders_the_receive_after_the_send() -> None:
    a, b = HybridClock("a"), HybridClock("b")
    sent = a.tick(T0 + 500)  # a's clock runs 500 ms ahead of b's
    received = b.update(sent, T0)
    assert received > sent
    assert b.tick(T0 + 1) > sent  # whatever b does next is later too


def test_update_cases_of_the_logical_counter() -> None:
    clock = HybridClock("b", last=Timestamp(T0, 4, "b"))
    assert clock.update(Timestamp(T0, 7, "a"), T0 - 1) == Timestamp(T0, 8, "b")
    assert clock.update(Timestamp(T0 - 5, 99, "a"), T0 - 1) == Timestamp(T0, 9, "b")
    assert clock.update(Timestamp(T0 + 3, 2, "a"), T0) == Timestamp(T0 + 3, 3, "b")
    assert clock.update(Timestamp(T0, 0, "a"), T0 + 10) == Timestamp(T0 + 10, 0, "b")


def test_stamps_of_different_peers_never_tie() -> None:
    assert Timestamp(T0, 0, "a") < Timestamp(T0, 0, "b")
    assert Timestamp(T0, 0, "b") < Timestamp(T0, 1, "a")


def test_a_stamp_too_far_ahead_is_rejected_and_leaves_the_clock_alone() -> None:
    clock = HybridClock("b", max_drift_ms=1000)
    before = clock.tick(T0)
    far = Timestamp(T0 + 1001, 0, "a")
    assert not clock.acceptable(far, T0)
    with pytest.raises(RemoteProtocolError) as err:
        clock.update(far, T0)
    assert err.value.reason == "hlc_drift"
    assert clock.last == before
    assert clock.acceptable(far, T0 + 1)  # the same stamp is fine once time catches up
    assert clock.update(far, T0 + 1) > far


def test_our_clock_stays_within_the_drift_bound_of_our_wall_time() -> None:
    clock = HybridClock("b", max_drift_ms=1000)
    clock.update(Timestamp(T0 + 1000, 0, "a"), T0)
    assert clock.tick(T0).wall_ms - T0 <= 1000


def test_restart_from_the_last_stamp_keeps_the_order() -> None:
    clock = HybridClock("a")
    last = clock.tick(T0 + 60_000)
    restarted = HybridClock("a", last=clock.last)
    assert restarted.tick(T0) > last  # the machine's clock stepped back a minute


def test_witness_moves_forward_only() -> None:
    clock = HybridClock("a", last=Timestamp(T0, 5, "a"))
    clock.witness(Timestamp(T0, 2, "z"))
    assert clock.last == Timestamp(T0, 5, "a")
    clock.witness(Timestamp(T0 + 10, 1, "z"))
    assert clock.last == Timestamp(T0 + 10, 1, "a")


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=40))
def test_wire_form_survives_msgpack(wall: int, logical: int, node: str) -> None:
    stamp = Timestamp(wall, logical, node)
    decoded = msgpack.unpackb(msgpack.packb(stamp.to_wire()))
    assert Timestamp.from_wire(decoded) == stamp


@pytest.mark.parametrize(
    "garbage",
    [None, [], [1, 2], [1, 2, 3], [-1, 0, "a"], [1.5, 0, "a"], [True, 0, "a"], [0, 0, ""], "x"],
)
def test_garbage_stamps_are_remote_errors(garbage: object) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        Timestamp.from_wire(garbage)
    assert err.value.reason == "bad_hlc"


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="node id"):
        HybridClock("")
    with pytest.raises(ValueError, match="drift"):
        HybridClock("a", max_drift_ms=-1)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5000), st.integers(0, 3000), st.integers(0, 9)),
        max_size=60,
    )
)
def test_stamps_issued_are_strictly_increasing(
    events: list[tuple[bool, int, int, int]],
) -> None:
    """Whatever the wall clock and the peers do (within the drift bound), we move forward."""
    clock = HybridClock("me", max_drift_ms=1000)
    last = clock.tick(T0)
    latest_wall = T0
    for local, now_offset, remote_offset, remote_logical in events:
        now = T0 + now_offset
        latest_wall = max(latest_wall, now)
        if local:
            stamp = clock.tick(now)
        else:
            remote = Timestamp(now - 2000 + remote_offset, remote_logical, "peer")
            stamp = clock.update(remote, now)
            assert stamp > remote
        assert stamp > last
        assert stamp.wall_ms <= latest_wall + 1000
        last = stamp
