"""`bench/proxy --quick` starts every configuration, loads each and prints the full table.

A smoke run (1 s per configuration): it asserts the benchmark works end to end, never a
speed. The figures themselves belong in docs/benchmarks.md, from a full run.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.bench.support import run_bench

pytestmark = [
    pytest.mark.skipif(
        shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)"
    ),
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="haproxy not installed (apt-get install haproxy)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("fnlb.cli.serve") is None, reason="fnlb serve not built yet"
    ),
]


def test_quick_run_prints_a_row_for_every_configuration() -> None:
    done = run_bench("bench.proxy", "--quick", "--connections", "8", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names[0].startswith("backend alone")
    assert names[1:] == ["haproxy", "aiohttp pass-through", "fnlb"]
    assert "fnlb / aiohttp pass-through = " in done.stdout
    assert "rerun: python -m bench.proxy --duration=1" in done.stdout
