"""`/1/lb/stats` rows: answers per second and (node, function), read from the load figures."""

from __future__ import annotations

import pytest

from fnlb.api.stats import WINDOW_SECONDS, CallStats
from fnlb.cluster.load import LocalLoad

T0 = 1_800_000_000.0  # a whole second of Unix time


def answer(
    load: LocalLoad, fn: str, node: str, at: float, wait: float | None = None, status: int = 200
) -> None:
    load.call_started(fn, node, at)
    load.call_finished(fn, node, status, wait, 0.001, at + 0.002, answered_at=at)


def test_answers_roll_up_per_second_and_pair_in_the_original_shape() -> None:
    load = LocalLoad()
    stats = CallStats(load)
    answer(load, "r/a/f", "n1:8080", T0 + 0.1, wait=0.002)
    answer(load, "r/a/g", "n2:8080", T0 + 0.2)
    answer(load, "r/a/f", "n1:8080", T0 + 0.3, wait=0.004)
    answer(load, "r/a/f", "n1:8080", T0 + 1.5, wait=0.010)
    rows = stats.snapshot(T0 + 2)
    assert rows == [
        {
            "timestamp": "2027-01-15T08:00:00.100000Z",
            "tp": 2,
            "node": "n1:8080",
            "func": "r/a/f",
            "wait": pytest.approx(0.003),
        },
        {
            "timestamp": "2027-01-15T08:00:00.200000Z",
            "tp": 1,
            "node": "n2:8080",
            "func": "r/a/g",
            "wait": 0.0,
        },
        {
            "timestamp": "2027-01-15T08:00:01.500000Z",
            "tp": 1,
            "node": "n1:8080",
            "func": "r/a/f",
            "wait": pytest.approx(0.010),
        },
    ]
    assert [type(r["tp"]) for r in rows] == [int, int, int]
    assert stats.snapshot(T0 + 2) == rows  # reading does not drain


def test_attempts_whose_answer_is_not_returned_are_not_counted() -> None:
    load = LocalLoad()
    load.call_started("r/a/f", "n1:8080", T0)
    load.call_finished("r/a/f", "n1:8080", 503, None, None, T0)  # busy, retried elsewhere
    load.call_started("r/a/f", "n2:8080", T0)
    load.call_finished("r/a/f", "n2:8080", 0, None, None, T0)  # no connection
    answer(load, "r/a/f", "n3:8080", T0 + 0.5, status=503)  # busy, but the answer returned
    rows = CallStats(load).snapshot(T0 + 1)
    assert [(r["node"], r["tp"]) for r in rows] == [("n3:8080", 1)]


def test_only_the_last_minute_is_kept() -> None:
    load = LocalLoad(expire_after_s=600)
    for i in range(3 * WINDOW_SECONDS):
        answer(load, "r/a/f", "n1:8080", T0 + i)
        answer(load, f"r/a/once{i}", "n1:8080", T0 + i)
    now = T0 + 3 * WINDOW_SECONDS - 1
    rows = CallStats(load).snapshot(now)
    seconds = sorted({int(r["timestamp"][17:19]) for r in rows})
    assert len(rows) == 2 * WINDOW_SECONDS
    assert len(seconds) == WINDOW_SECONDS
    assert len(load._past_seconds) <= 2 * WINDOW_SECONDS + 2  # bounded, not 3 minutes' worth


def test_a_function_dropped_by_sweep_or_eviction_keeps_its_last_second() -> None:
    load = LocalLoad(max_functions=1)
    answer(load, "r/a/f", "n1:8080", T0 + 0.1)
    answer(load, "r/a/g", "n1:8080", T0 + 0.2)  # evicts r/a/f
    assert load.function_count == 1
    rows = CallStats(load).snapshot(T0 + 1)
    assert [(r["func"], r["tp"]) for r in rows] == [("r/a/f", 1), ("r/a/g", 1)]
