"""Wait for warm's rule (fnlb.routing.warm_wait), in virtual time: numbers are seconds."""

from __future__ import annotations

import pytest

from fnlb.routing.warm_wait import WarmWait

F, N, M = "/r/app/f", "n1:8080", "n2:8080"


def warmed(max_hold_s: float = 0.3, answer_s: float = 0.02) -> WarmWait[str]:
    """One call of F answered warm on N (so F's warm answer time is known), then one call
    in flight there: the most it has had at once is 1, and that one is busy."""
    w: WarmWait[str] = WarmWait(max_hold_s)
    w.started(F, N, 0.0)
    w.finished(F, N, 0.02, answer_s)
    w.started(F, N, 1.0)
    return w


def test_a_call_is_held_when_every_container_it_made_start_is_busy() -> None:
    w = warmed()
    hold = w.hold(F, N, "second", 1.001)
    assert hold is not None
    assert hold.ticket == "second"
    assert w.held == 1
    assert hold.deadline == pytest.approx(1.301)


def test_the_first_call_to_finish_releases_the_oldest_held_one() -> None:
    w = warmed()
    w.started(F, N, 1.0)  # two in flight: two containers
    a, b = w.hold(F, N, "a", 1.01), w.hold(F, N, "b", 1.02)
    assert a is not None
    assert b is not None
    released = w.finished(F, N, 1.03, 0.02)
    assert released is a
    assert not a.live
    assert w.held == 1
    w.started(F, N, 1.03)  # the caller sends it on
    released = w.finished(F, N, 1.04, 0.02)
    assert released is b
    assert w.held == 0
    assert w.next_deadline() is None


def test_no_hold_while_a_container_it_made_start_is_idle() -> None:
    w = warmed()
    w.started(F, N, 1.0)
    w.finished(F, N, 1.02, 0.02)  # two were in flight at once; one is now free
    assert w.hold(F, N, "x", 1.03) is None


def test_no_hold_without_a_call_in_flight_or_a_known_node() -> None:
    w: WarmWait[str] = WarmWait(0.3)
    assert w.hold(F, N, "x", 0.0) is None  # nothing known
    w.started(F, N, 0.0)
    w.finished(F, N, 0.02, 0.02)
    assert w.hold(F, N, "x", 0.03) is None  # none in flight: the warm container is free
    w.started(F, N, 0.05)
    assert w.hold(F, M, "x", 0.06) is None  # another node: its containers are not F's


def test_no_hold_for_a_function_whose_warm_answers_are_not_short() -> None:
    # Warm answers of 0.2 s are over half the maximum hold (0.3 s, a cold start): waiting
    # for one to free saves too little.
    assert warmed(answer_s=0.2).hold(F, N, "x", 1.001) is None
    # Answers longer than the maximum hold (cold ones) are no estimate at all.
    assert warmed(answer_s=0.35).hold(F, N, "x", 1.001) is None


def test_cold_answers_do_not_spoil_the_warm_estimate() -> None:
    w = warmed()
    for i in range(20):  # cold: a 0.3 s start plus the execution
        w.started(F, M, 2.0 + i)
        w.finished(F, M, 2.32 + i, 0.32)
    w.started(F, N, 30.0)
    w.started(F, N, 30.0)  # keep N's containers in flight and within the idle timeout
    assert w.hold(F, N, "x", 30.01) is not None


def test_no_more_calls_held_than_in_flight() -> None:
    w = warmed()
    assert w.hold(F, N, "a", 1.01) is not None
    assert w.hold(F, N, "b", 1.02) is None  # one finishing call frees one container
    w.started(F, N, 1.03)  # b went on: Fn starts a container, the most is now 2
    assert w.hold(F, N, "c", 1.04) is not None  # a and c: one for each call in flight
    assert w.hold(F, N, "d", 1.05) is None


def test_held_calls_go_on_at_their_deadline_in_order() -> None:
    w = warmed()
    w.started(F, N, 1.0)
    a, b = w.hold(F, N, "a", 1.01), w.hold(F, N, "b", 1.05)
    assert a is not None
    assert b is not None
    assert w.next_deadline() == pytest.approx(1.31)
    assert w.expired(1.30) == []
    assert w.expired(1.31) == [a]
    assert w.next_deadline() == pytest.approx(1.35)
    assert w.expired(2.0) == [b]
    assert w.held == 0
    assert w.next_deadline() is None
    # the calls they were waiting for finish later: nothing is left to release
    assert w.finished(F, N, 2.1, 0.02) is None


def test_a_cancelled_hold_is_neither_released_nor_expired() -> None:
    w = warmed()
    hold = w.hold(F, N, "a", 1.01)
    assert hold is not None
    assert w.cancel(hold)
    assert not w.cancel(hold)  # once
    assert w.held == 0
    assert w.finished(F, N, 1.02, 0.02) is None
    assert w.expired(5.0) == []


def test_drain_releases_every_held_call_oldest_first() -> None:
    w = warmed()
    w.started(F, M, 1.0)
    a, b = w.hold(F, N, "a", 1.01), w.hold(F, M, "b", 1.02)
    assert a is not None
    assert b is not None
    assert [h.ticket for h in w.drain()] == ["a", "b"]
    assert not a.live
    assert not b.live
    assert w.held == 0
    assert w.expired(9.0) == []
    assert w.finished(F, N, 9.0, 0.02) is None


def test_the_high_water_count_resets_after_the_idle_timeout() -> None:
    w: WarmWait[str] = WarmWait(0.3, idle_s=30.0)
    for _ in range(3):  # three containers once
        w.started(F, N, 0.0)
    for _ in range(3):
        w.finished(F, N, 0.02, 0.02)
    w.started(F, N, 10.0)
    assert w.hold(F, N, "x", 10.01) is None  # two of the three are still warm
    w.finished(F, N, 10.02, 0.02)
    w.started(F, N, 45.0)  # idle for over 30 s: the containers are gone, one starts now
    assert w.hold(F, N, "x", 45.01) is not None


def test_idle_state_is_dropped_and_bounded() -> None:
    w: WarmWait[str] = WarmWait(0.3, idle_s=30.0, max_slots=3)
    for i in range(5):
        w.started(f"/r/app/{i}", N, 0.0)
        w.finished(f"/r/app/{i}", N, 0.02, 0.02)
    assert len(w) == 3  # past the bound, new pairs are not tracked (never held)
    w.sweep(20.0)
    assert len(w) == 3  # within the idle timeout: kept
    w.sweep(40.0)
    assert len(w) == 0
    w.started(F, N, 40.0)
    assert len(w) == 1


def test_a_pair_in_flight_or_holding_is_never_swept() -> None:
    w = warmed()
    hold = w.hold(F, N, "a", 1.01)
    w.sweep(1000.0)
    assert len(w) == 1
    assert hold is not None
    assert hold.live
    assert w.finished(F, N, 1000.0, None) is hold  # a busy or failed end frees it too


def test_max_hold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        WarmWait(0.0)
