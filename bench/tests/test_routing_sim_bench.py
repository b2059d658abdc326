"""`bench/routing_sim` prints docs/routing.md's simulator tables; a short run shows its shape."""

from __future__ import annotations

import pytest

from bench.tests.support import run_bench, table_rows


@pytest.mark.slow
def test_a_short_run_prints_every_routing_row_and_plain_hashing_collapses_under_the_burst() -> None:
    done = run_bench("bench.routing_sim", "--tables", "C", "--seconds", "25", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert len(rows) == 5
    busy_503 = {name: int(r[3]) for name, r in rows.items()}
    # the burst starts at 20 s: plain hashing piles it on one node, the hot set does not
    assert busy_503["plain rendezvous (`--routing=rendezvous`)"] > 100
    assert busy_503["hot set + p2c (default)"] == 0


def test_an_unknown_table_is_refused() -> None:
    done = run_bench("bench.routing_sim", "--tables", "Z", timeout=60)
    assert done.returncode == 2
    assert "unknown table Z" in done.stderr
