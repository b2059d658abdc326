"""bench/routing_gap: holding the placement or the widths holds them, and the table is
deterministic."""

from __future__ import annotations

import pytest

from bench.routing_gap import CountingAdmission, HeldAdmission, HeldWidths, main, moved
from bench.routing_landscape import NODES, Fnlb, replay
from bench.routing_oracle import Workload
from bench.routing_workload import WorkloadSpec
from fnlb.fnsim.model import PoolConfig
from fnlb.routing.admission import Admitted


def _workload() -> Workload:
    spec = WorkloadSpec(functions=40, total_rate=20.0, zipf_s=1.5, duration_s=90.0, burst_at_s=50.0)
    pool = PoolConfig(memory_mb=512, cold_start_s=0.3, idle_timeout_s=15.0)
    return Workload(spec, pool, PoolConfig(memory_mb=2560), 30.0)


def test_a_held_placement_and_held_widths_route_every_call_by_them() -> None:
    w = _workload()
    held = Admitted({"/r/bench/f001": NODES[2], "/r/bench/f002": NODES[2]}, (NODES[4],))
    fnlb = Fnlb(NODES, memory_mb=512)
    fnlb.peer.control.admission = HeldAdmission(held, 4)
    fnlb.peer.control.widths = HeldWidths({"/r/bench/f001": 2})
    replay(fnlb, w.spec, w.pool, NODES, w.after)
    assert fnlb.peer.control.homes == dict(held.homes)
    assert fnlb.peer.control.tail == held.tail
    assert dict(fnlb.peer.control.widths.widths) == {"/r/bench/f001": 2}
    order = fnlb.choose(0, "/r/bench/f002", 90.0)
    assert order[0] == NODES[2]
    assert fnlb.choose(0, "/r/bench/f039", 90.0)[0] == NODES[4]  # unplaced: the tail first


def test_the_online_admission_counts_what_each_placement_moved() -> None:
    w = _workload()
    fnlb = Fnlb(NODES, memory_mb=512)
    counting = CountingAdmission(4)
    fnlb.peer.control.admission = counting
    replay(fnlb, w.spec, w.pool, NODES, w.after)
    assert counting.admitted.homes  # it placed
    assert len(counting.moved) >= 2  # the epochs at 30 and 60 s after the first placement


def test_a_move_is_a_function_protected_before_and_after_on_another_node() -> None:
    before = {"a": "n1", "b": "n2", "gone": "n3"}
    assert moved(before, {"a": "n1", "b": "n3", "new": "n4"}) == 1
    assert moved(before, before) == 0
    assert moved({}, before) == 0


def test_the_table_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--functions", "30", "--rate", "10", "--duration-s", "60", "--memory-mb", "512"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "| fnlb |" in first
    assert "| fnlb, its last placement held from the start |" in first
    assert "| pooled memory |" in first
    assert main(args) == 0
    assert capsys.readouterr().out == first


def test_a_window_out_of_range_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--window-s", "0"])
