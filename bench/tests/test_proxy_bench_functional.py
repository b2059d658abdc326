"""`bench/proxy --quick` starts every configuration, loads each and prints the full table.

A smoke run (1 s per configuration): it asserts the benchmark works end to end, never a
speed. The figures themselves belong in docs/benchmarks.md, from a full run.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from bench.proxy import parse_args, rerun_command, worker_counts
from bench.tests.support import run_bench

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
    nginx = ["nginx (proxy, 1 process)"] if shutil.which("nginx") else []  # the nodes too
    assert names[1:] == ["haproxy", *nginx, "aiohttp pass-through", "fnlb"]
    assert "fnlb / aiohttp pass-through = " in done.stdout
    assert "rerun: python -m bench.proxy --duration=1" in done.stdout


def test_worker_counts_are_checked_and_repeated_in_the_rerun_command() -> None:
    args = parse_args(["--fnlb-workers=2,4"])
    assert worker_counts(args) == [2, 4]
    assert "--fnlb-workers=2,4" in rerun_command(args)
    for bad in ("2,x", "0"):
        with pytest.raises(SystemExit):
            parse_args([f"--fnlb-workers={bad}"])
