"""`bench/routing --quick` replays a small trace through all four configurations.

A smoke run: it asserts that the benchmark works end to end and that what it reports
happened (every configuration answered every counted call, the nodes said which calls were
cold, the plot was drawn), never that one configuration beat another: that figure comes from
a full run and lives in docs/routing.md.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench.tests.support import run_bench, table_rows


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_quick_run_prints_a_row_per_configuration_and_draws_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "latency.png"
    done = run_bench("bench.routing", "--quick", "--plot", str(png), timeout=240)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    rows = table_rows(out)
    configs = ["haproxy-roundrobin", "haproxy-bounded", "fnlb-classic", "fnlb", "pooled-memory"]
    assert [name for name in rows if not name.startswith("workload")] == configs
    counted = {rows[name][0] for name in configs}
    assert len(counted) == 1  # the same trace everywhere
    assert int(counted.pop()) > 100
    assert all(rows[name][6] == "0" for name in configs), rows  # errors
    for name in configs:  # every balancer passed on how long the node took, and it took less
        p99, at_nodes, rest = (float(x) for x in rows[name][3:6])
        assert 0 < at_nodes <= p99, (name, rows[name])
        assert 0 < rest < p99, (name, rows[name])  # the balancer's and the client's own part
    assert all(float(rows[name][1]) > 0 for name in configs)  # cold starts were seen
    assert "cold fraction: fnlb" in out
    # each fnlb peer's placement at the end (they may differ for a moment at an epoch)
    said = re.search(r"# fnlb: (the same|DIFFERENT) placements at the end: (.*)", out + done.stderr)
    assert said is not None
    assert len(said.group(2).split()) == 3  # one epoch:digest (or -) per peer
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_configuration_is_refused_with_the_known_ones() -> None:
    done = run_bench("bench.routing", "--configs", "nginx", timeout=60)
    assert done.returncode == 2
    assert "unknown configuration nginx" in done.stderr
    assert "haproxy-bounded" in done.stderr
