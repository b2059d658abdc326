"""The container pool of one Fn node, proven in virtual time."""

from __future__ import annotations

import random
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import LocalProtocolError
from fnlb.fnsim.model import (
    CallFinished,
    CallRejected,
    CallStarted,
    Event,
    PoolConfig,
    PoolModel,
)

FAST = PoolConfig(cold_start_s=0.3, idle_timeout_s=30.0, max_wait_s=15.0)


def run_until(model: PoolModel, t: float) -> list[Event]:
    """Advance virtual time to `t` and return every event since the last call."""
    model.handle_timer(t)
    return model.drain_events()


def started(events: list[Event]) -> dict[Hashable, CallStarted]:
    return {e.call_id: e for e in events if isinstance(e, CallStarted)}


def finished(events: list[Event]) -> dict[Hashable, CallFinished]:
    return {e.call_id: e for e in events if isinstance(e, CallFinished)}


def rejected(events: list[Event]) -> dict[Hashable, CallRejected]:
    return {e.call_id: e for e in events if isinstance(e, CallRejected)}


def test_first_call_is_cold_then_the_next_is_hot() -> None:
    model = PoolModel(FAST)
    model.submit("c1", "f", 0.02, now=0.0)
    assert model.drain_events() == []
    assert model.next_timer() == pytest.approx(0.3)
    events = run_until(model, 1.0)
    assert events[0] == CallStarted("c1", "f", 0.3, True, 0.3)
    end = events[1]
    assert isinstance(end, CallFinished)
    assert (end.call_id, end.cold, end.waited_s) == ("c1", True, 0.3)
    assert (end.at, end.ran_s) == pytest.approx((0.32, 0.02))
    assert len(events) == 2
    model.submit("c2", "f", 0.02, now=2.0)
    assert model.drain_events() == [CallStarted("c2", "f", 2.0, False, 0.0)]
    stats = model.stats()
    assert (stats.cold_starts, stats.cold_calls, stats.hot_calls) == (1, 1, 1)
    assert (stats.mem_used_mb, stats.mem_avail_mb) == (128, 1024 - 128)


def test_two_concurrent_calls_launch_two_containers() -> None:
    model = PoolModel(FAST)
    model.submit("a", "f", 1.0, now=0.0)
    model.submit("b", "f", 1.0, now=0.0)
    assert model.stats().containers_starting == 2
    events = run_until(model, 0.5)
    assert {c: e.cold for c, e in started(events).items()} == {"a": True, "b": True}
    assert model.containers_of("f") == (0, 2, 0)
    assert model.stats().mem_used_mb == 256


def test_a_call_waiting_for_a_start_takes_a_hot_container_that_frees_first() -> None:
    model = PoolModel(FAST)
    model.submit("c1", "f", 0.35, now=0.0)  # cold: runs 0.3 .. 0.65
    run_until(model, 0.4)
    model.submit("c2", "f", 0.1, now=0.4)  # launches a container ready at 0.7
    assert model.stats().containers_starting == 1
    events = run_until(model, 0.69)
    c2 = started(events)["c2"]
    assert c2.cold is False
    assert (c2.at, c2.waited_s) == pytest.approx((0.65, 0.25))
    run_until(model, 0.71)
    # The container launched for c2 became ready with nobody waiting: it idles.
    assert model.containers_of("f") == (1, 1, 0)
    stats = model.stats()
    assert (stats.cold_starts, stats.cold_calls, stats.hot_calls) == (2, 1, 1)


def test_calls_wait_first_in_first_out() -> None:
    model = PoolModel(PoolConfig(memory_mb=128, fn_memory_mb=128, cold_start_s=0.3))
    for i in range(5):
        model.submit(i, "f", 1.0, now=i * 0.01)
    events = run_until(model, 10.0)
    starts = [e.call_id for e in events if isinstance(e, CallStarted)]
    assert starts == [0, 1, 2, 3, 4]
    times = [e.at for e in events if isinstance(e, CallStarted)]
    assert times == pytest.approx([0.3, 1.3, 2.3, 3.3, 4.3])
    assert model.stats().cold_starts == 1


def test_a_call_waiting_past_the_limit_is_rejected_busy() -> None:
    model = PoolModel(PoolConfig(memory_mb=128, max_wait_s=15.0))
    model.submit("long", "f", 20.0, now=0.0)
    model.submit("late", "f", 1.0, now=1.0)
    assert model.stats().queued == 1
    events = run_until(model, 16.5)
    assert rejected(events) == {"late": CallRejected("late", "f", 16.0, "busy", 15.0)}
    stats = model.stats()
    assert (stats.server_busy, stats.queued) == (1, 0)
    # The busy call never runs, even when the container frees.
    assert "late" not in started(run_until(model, 60.0))


def test_a_container_freed_exactly_at_the_deadline_serves_the_call() -> None:
    model = PoolModel(PoolConfig(memory_mb=128, cold_start_s=0.0, max_wait_s=1.0))
    model.submit("a", "f", 1.0, now=0.0)
    model.submit("b", "f", 1.0, now=0.0)
    events = run_until(model, 5.0)
    assert started(events)["b"].at == 1.0
    assert not rejected(events)


def test_idle_containers_expire_after_the_idle_timeout() -> None:
    model = PoolModel(PoolConfig(idle_timeout_s=30.0))
    model.submit("c1", "f", 0.7, now=0.0)  # finishes at 1.0
    run_until(model, 30.9)
    assert model.containers_of("f") == (1, 0, 0)
    assert model.next_timer() == pytest.approx(31.0)
    run_until(model, 31.0)
    assert model.containers_of("f") == (0, 0, 0)
    stats = model.stats()
    assert (stats.idle_expiries, stats.mem_used_mb) == (1, 0)
    assert model.next_timer() is None
    model.submit("c2", "f", 0.1, now=40.0)
    assert model.drain_events() == []  # cold again: waits for a new container
    assert started(run_until(model, 41.0))["c2"].cold


def test_an_idle_container_reused_is_not_expired_by_its_old_idle_time() -> None:
    model = PoolModel(PoolConfig(cold_start_s=0.0, idle_timeout_s=10.0))
    model.submit("a", "f", 1.0, now=0.0)
    run_until(model, 9.0)
    model.submit("b", "f", 5.0, now=9.0)  # reuses it until 14; idle again from 14
    run_until(model, 23.9)
    assert model.containers_of("f") == (1, 0, 0)
    run_until(model, 24.0)
    assert model.containers_of("f") == (0, 0, 0)


def test_memory_full_evicts_other_functions_idle_containers_least_recently_used_first() -> None:
    model = PoolModel(PoolConfig(memory_mb=256, fn_memory_mb=128, cold_start_s=0.1))
    model.submit("a1", "a", 0.1, now=0.0)
    model.submit("b1", "b", 0.1, now=1.0)
    run_until(model, 2.0)
    assert model.stats().mem_avail_mb == 0
    model.submit("a2", "a", 0.1, now=2.5)  # a was used again: b is now least recently used
    run_until(model, 3.0)
    model.submit("c1", "c", 0.1, now=3.0)
    assert model.containers_of("b") == (0, 0, 0)
    assert model.containers_of("a") == (1, 0, 0)
    assert model.containers_of("c") == (0, 0, 1)
    assert model.stats().evictions == 1
    assert started(run_until(model, 3.1))["c1"].cold


def test_busy_containers_are_never_evicted_the_call_waits_for_memory() -> None:
    model = PoolModel(PoolConfig(memory_mb=128, cold_start_s=0.1, max_wait_s=15.0))
    model.submit("a1", "a", 2.0, now=0.0)  # busy 0.1 .. 2.1
    model.submit("b1", "b", 0.1, now=0.5)
    # Memory is held by a busy container: b waits, nothing is evicted or launched yet.
    assert (model.stats().evictions, model.stats().queued) == (0, 1)
    assert model.stats().containers_starting == 0
    events = run_until(model, 5.0)
    # a1 ends at 2.1, its container idles and is evicted at once for b, which starts cold.
    b1 = started(events)["b1"]
    assert b1.cold is True
    assert (b1.at, b1.waited_s) == pytest.approx((2.2, 1.7))
    stats = model.stats()
    assert (stats.evictions, stats.cold_starts) == (1, 2)


def test_cancel_withdraws_a_waiting_call_only() -> None:
    model = PoolModel(PoolConfig(memory_mb=128))
    model.submit("run", "f", 5.0, now=0.0)
    model.submit("wait", "f", 1.0, now=0.1)
    run_until(model, 1.0)
    assert model.cancel("run", now=1.0) is False
    assert model.cancel("wait", now=1.0) is True
    assert model.cancel("wait", now=1.0) is False
    assert (model.stats().queued, model.stats().cancelled) == (0, 1)
    events = run_until(model, 60.0)
    assert "wait" not in started(events)
    assert "wait" not in rejected(events)
    assert set(finished(events)) == {"run"}


def test_a_function_larger_than_the_node_is_refused() -> None:
    model = PoolModel(PoolConfig(memory_mb=256))
    model.submit("x", "big", 1.0, now=0.0, memory_mb=512)
    assert model.drain_events() == [CallRejected("x", "big", 0.0, "too_big", 0.0)]
    assert model.stats().too_big == 1


def test_jitter_comes_from_the_injected_rng_and_is_reproducible() -> None:
    def run(seed: int) -> list[float]:
        model = PoolModel(PoolConfig(cold_start_s=0.0, jitter=0.5), random.Random(seed))
        for i in range(20):
            model.submit(i, "f", 1.0, now=float(i * 10))
        events = run_until(model, 300.0)
        return [e.ran_s for e in events if isinstance(e, CallFinished)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    assert all(0.5 <= ran <= 1.5 for ran in first)
    assert len(set(first)) > 1


def test_jitter_without_an_rng_is_a_usage_error() -> None:
    with pytest.raises(LocalProtocolError):
        PoolModel(PoolConfig(jitter=0.1))


def test_a_call_id_in_use_is_a_usage_error() -> None:
    model = PoolModel()
    model.submit(1, "f", 1.0, now=0.0)
    with pytest.raises(LocalProtocolError):
        model.submit(1, "f", 1.0, now=0.0)


@pytest.mark.parametrize(
    ("config", "word"),
    [
        (PoolConfig(memory_mb=0), "memory_mb"),
        (PoolConfig(memory_mb=100, fn_memory_mb=128), "fn_memory_mb"),
        (PoolConfig(cold_start_s=-1), "cold_start_s"),
        (PoolConfig(max_wait_s=float("nan")), "max_wait_s"),
        (PoolConfig(jitter=2.0), "jitter"),
    ],
)
def test_impossible_configurations_are_refused_by_name(config: PoolConfig, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        PoolModel(config)


# ---- invariants under arbitrary traffic ---------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0),  # gap before the operation
        st.sampled_from(["a", "b", "c", "d"]),  # function
        st.floats(min_value=0.0, max_value=3.0),  # execution time
        st.booleans(),  # cancel the previous call instead of submitting
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, memory_slots=st.integers(min_value=1, max_value=4))
def test_every_call_ends_exactly_once_in_fifo_order_within_memory(
    ops: list[tuple[float, str, float, bool]], memory_slots: int
) -> None:
    config = PoolConfig(
        memory_mb=128 * memory_slots, cold_start_s=0.3, idle_timeout_s=5.0, max_wait_s=4.0
    )
    model = PoolModel(config)
    now = 0.0
    submitted: dict[int, tuple[str, float]] = {}
    cancelled: set[int] = set()
    events: list[Event] = []
    for i, (gap, fn, exec_s, cancel_previous) in enumerate(ops):
        now += gap
        events += run_until(model, now)
        if cancel_previous and i and model.cancel(i - 1, now):
            cancelled.add(i - 1)
        else:
            model.submit(i, fn, exec_s, now)
            submitted[i] = (fn, now)
        stats = model.stats()
        assert 0 <= stats.mem_used_mb <= config.memory_mb
        used = 128 * (stats.containers_idle + stats.containers_busy + stats.containers_starting)
        assert stats.mem_used_mb == used
        assert stats.queued >= 0
    events += run_until(model, now + 100.0)
    assert model.next_timer() is None

    ends = [e.call_id for e in events if not isinstance(e, CallStarted)]
    assert len(ends) == len(set(ends))
    assert set(ends) | cancelled == set(submitted)
    assert not set(ends) & cancelled

    # Per function, calls start in the order they were submitted.
    starts = [e for e in events if isinstance(e, CallStarted)]
    for fn in "abcd":
        order = [int(str(e.call_id)) for e in starts if e.fn == fn]
        assert order == sorted(order)
    for e in starts:
        assert e.waited_s <= config.max_wait_s + 1e-9
        assert e.at == pytest.approx(submitted[int(str(e.call_id))][1] + e.waited_s)
    stats = model.stats()
    assert stats.calls == len(submitted)
    assert stats.completed + stats.server_busy + stats.cancelled == len(submitted)
    assert stats.cold_calls + stats.hot_calls == stats.completed
    assert stats.mem_used_mb == 0


def test_a_long_virtual_run_of_many_nodes_stays_consistent() -> None:
    """What a routing simulation does: many models, one virtual clock, 20 000 calls."""
    rng = random.Random(1)
    nodes = [PoolModel(PoolConfig(cold_start_s=0.3), rng) for _ in range(10)]
    now = 0.0
    for i in range(20_000):
        now += rng.expovariate(500.0)
        node = nodes[i % 10]
        node.submit(i, f"fn{rng.randrange(2)}", 0.02, now)
    done = 0
    for node in nodes:
        node.handle_timer(now + 60.0)
        done += sum(isinstance(e, CallFinished) for e in node.drain_events())
    assert done == 20_000
    # Two light functions in eight slots: after warm-up nearly every call is hot.
    assert sum(n.stats().cold_starts for n in nodes) < 500
    assert all(n.stats().mem_used_mb == 0 for n in nodes)
