from __future__ import annotations

import pytest

from fnlb.health.fn_metrics import parse_fn_metrics
from fnlb.payloads.node_metrics import NodeMetrics, metrics_from_wire

PAGE = """# HELP fn_queued calls waiting
# TYPE fn_queued gauge
fn_queued 3.0
fn_running{app="a"} 2
fn_running{app="b c"} 1
fn_util_mem_used 268435456
fn_util_mem_avail 8.05306368e+08
fn_server_busy 7
fn_calls 100
go_goroutines 12
"""


def test_parses_an_fn_page() -> None:
    m = parse_fn_metrics(PAGE, 5)
    assert m == NodeMetrics(3.0, 3.0, 268435456.0, 805306368.0, 7.0, 5)
    assert m.mem_fraction == pytest.approx(0.25)


@pytest.mark.parametrize("text", ["", "go_goroutines 1\n", "fn_queued 1\n", "fn_util_mem_used x\n"])
def test_pages_without_memory_figures_give_none(text: str) -> None:
    assert parse_fn_metrics(text, 0) is None


def test_wire_round_trip_and_garbage() -> None:
    m = NodeMetrics(1, 2, 3, 4, 5, 6)
    assert metrics_from_wire(m.to_wire()) == m
    for bad in (None, [1, 2], [1, 2, 3, 4, 5, -1], [1, 2, 3, 4, "x", 6], [1, 2, 3, 4, 5, 6.5]):
        assert metrics_from_wire(bad) is None
