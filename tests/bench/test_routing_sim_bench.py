"""`bench/routing_sim` prints docs/routing.md's simulator tables; a short run shows its shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_short_run_prints_every_routing_row_and_plain_hashing_collapses_under_the_burst() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.routing_sim", "--tables", "C", "--seconds", "25"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and "---" not in line and "routing |" not in line
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert len(rows) == 5
    busy_503 = {name: int(r[3]) for name, r in rows.items()}
    # the burst starts at 20 s: plain hashing piles it on one node, the hot set does not
    assert busy_503["plain rendezvous (`--routing=rendezvous`)"] > 100
    assert busy_503["hot set + p2c (default)"] == 0


def test_an_unknown_table_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.routing_sim", "--tables", "Z"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown table Z" in done.stderr
