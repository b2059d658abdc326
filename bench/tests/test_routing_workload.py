"""bench/routing's trace and its figures: what the routing comparison stands on."""

from __future__ import annotations

import itertools
import math

import pytest

from bench.routing_workload import (
    Call,
    Outcome,
    WorkloadSpec,
    floor_fraction,
    make_trace,
    ranked_names,
    summarise,
    zipf_rates,
)


def test_the_same_spec_gives_the_same_trace_and_another_seed_another() -> None:
    spec = WorkloadSpec(functions=50, total_rate=20.0, duration_s=30.0, burst_at_s=10.0)
    assert make_trace(spec) == make_trace(spec)
    other = make_trace(WorkloadSpec(functions=50, total_rate=20.0, duration_s=30.0, seed=2))
    assert other != make_trace(spec)


def test_rates_follow_zipf_and_sum_to_the_total() -> None:
    rates = zipf_rates(200, 80.0, 1.1)
    assert math.isclose(sum(rates), 80.0)
    assert math.isclose(rates[0] / rates[9], 10**1.1)


def test_the_trace_has_the_asked_rate_and_shape() -> None:
    spec = WorkloadSpec(functions=100, total_rate=50.0, duration_s=200.0, burst_s=0.0)
    calls = make_trace(spec)
    assert abs(len(calls) / 200.0 - 50.0) < 2.5  # Poisson: within ~5 standard errors
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(calls))
    counts: dict[str, int] = {}
    for c in calls:
        counts[c.fn] = counts.get(c.fn, 0) + 1
        assert 10 <= c.exec_ms <= 100
    top = sorted(counts.values(), reverse=True)
    expected_top = zipf_rates(100, 50.0, 1.1)[0] * 200.0
    assert abs(top[0] - expected_top) < 5 * math.sqrt(expected_top)
    # names carry no heat: the hottest function is not the first name
    assert max(counts, key=lambda f: counts[f]) != "f000"


def test_the_burst_multiplies_one_functions_rate_in_its_window_only() -> None:
    spec = WorkloadSpec(
        functions=20, total_rate=20.0, duration_s=300.0, burst_at_s=100.0, burst_s=50.0
    )
    calls = make_trace(spec)
    quiet = WorkloadSpec(functions=20, total_rate=20.0, duration_s=300.0, burst_s=0.0)
    name = max(
        {c.fn for c in make_trace(quiet)},
        key=lambda f: sum(1 for c in calls if c.fn == f and 100 <= c.at_s < 150),
    )
    assert name == ranked_names(spec)[spec.burst_rank]  # the oracle's reaction names it so
    inside = sum(1 for c in calls if c.fn == name and 100 <= c.at_s < 150) / 50.0
    outside = sum(1 for c in calls if c.fn == name and not 100 <= c.at_s < 150) / 250.0
    assert 6.0 < inside / outside < 15.0


@pytest.mark.parametrize(
    "bad",
    [
        WorkloadSpec(functions=0),
        WorkloadSpec(total_rate=0.0),
        WorkloadSpec(exec_ms=(50.0, 10.0)),
        WorkloadSpec(functions=5, burst_rank=5),
        WorkloadSpec(burst_factor=0.5),
    ],
)
def test_a_spec_that_cannot_work_is_refused(bad: WorkloadSpec) -> None:
    with pytest.raises(ValueError, match=r"must|needed"):
        make_trace(bad)


def test_the_floor_counts_calls_after_a_gap_longer_than_the_idle_timeout() -> None:
    calls = [
        Call(0.0, "a", 10),  # before the warm-up ends: not counted, but remembered
        Call(5.0, "a", 10),  # 5 s gap: warm
        Call(6.0, "b", 10),  # never called before: cold
        Call(30.0, "a", 10),  # 25 s gap > 20 s: cold
        Call(31.0, "b", 10),  # 25 s gap: cold
    ]
    assert floor_fraction(calls, idle_timeout_s=20.0, after_s=1.0) == 3 / 4


def test_the_row_reads_cold_latency_errors_spread_and_the_busiest_node() -> None:
    def o(
        at: float, fn: str, status: int, ms: float, cold: bool, node: str, node_ms: float
    ) -> Outcome:
        return Outcome(Call(at, fn, 10), status, ms / 1000.0, cold, node, node_ms / 1000.0)

    nan = math.nan
    outcomes = [
        o(0.5, "a", 200, 999.0, True, "n1", 990.0),  # warm-up: ignored
        o(1.0, "a", 200, 10.0, False, "n1", 9.0),
        o(2.0, "a", 200, 20.0, True, "n2", nan),  # no wait header: not in the nodes' p99
        o(3.0, "b", 200, 30.0, False, "n1", 12.0),
        o(4.0, "b", 503, 5.0, False, "n3", 4.0),
        o(5.0, "c", 0, 30000.0, False, "", nan),
    ]
    row = summarise(outcomes, after_s=1.0)
    assert row.calls == 5
    assert row.errors == 2
    assert row.cold_fraction == 1 / 3
    assert row.p50_ms == pytest.approx(20.0)
    assert row.p99_ms == pytest.approx(30.0)
    assert row.node_p99_ms == pytest.approx(12.0)  # answered calls that said how long they took
    assert row.rest_p99_ms == pytest.approx(18.0)  # 30 - 12 ms over 10 - 9 ms: the larger rest
    assert row.nodes_per_function == 1.5  # a on n1 and n2, b on n1
    assert row.busiest_share == 2 / 3
