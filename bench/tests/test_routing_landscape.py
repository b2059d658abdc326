"""bench/routing_landscape: one row per workload, every configuration, the same table twice."""

from __future__ import annotations

import pytest

from bench.routing_landscape import CONFIGS, main

ARGS = ["--functions", "40", "--rates", "10", "--zipf-s", "1.5", "--seeds", "1"]
SHORT = [*ARGS, "--duration-s", "90", "--warm-s", "30"]


def _cold(cell: str) -> float:
    return float(cell.split()[0].rstrip("*"))


def test_the_table_has_every_configuration_and_is_deterministic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(SHORT) == 0
    first = capsys.readouterr().out
    rows = [line for line in first.splitlines() if line.startswith("| 1024 | 40 ")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    floor = float(cells[5])
    colds = dict(zip(CONFIGS, (_cold(c) for c in cells[6 : 6 + len(CONFIGS)]), strict=True))
    assert 0.0 < floor < 100.0
    others = [v for k, v in colds.items() if k != "rr"]
    assert all(0.0 < cold < colds["rr"] for cold in others)  # round robin spreads most
    assert "fnlb under pooled memory" in first
    fnlb_busiest = cells[6 + CONFIGS.index("fnlb")].split("(")[1].rstrip(")")
    assert f"fnlb's busiest node, the most of any workload: {fnlb_busiest}x" in first
    assert main(SHORT) == 0
    assert capsys.readouterr().out == first


def test_a_warm_up_that_leaves_nothing_to_count_is_refused() -> None:
    with pytest.raises(SystemExit):
        main([*ARGS, "--duration-s", "40", "--warm-s", "30"])


def test_a_bad_execution_range_is_refused() -> None:
    with pytest.raises(SystemExit):
        main([*SHORT, "--exec-ms", "20"])
