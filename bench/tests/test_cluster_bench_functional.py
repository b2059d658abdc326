"""`bench/cluster --quick` runs all three cluster figures end to end and prints their tables.

A smoke run (3 peers, 20 emulated nodes, one trial per mode): it asserts that the benchmark
works and that what it measures happened (every added node became routable on every peer,
every killed node left every peer's routable set, the load was answered), never a speed.
The figures themselves belong in docs/benchmarks.md, from a full run.
"""

from __future__ import annotations

import pytest

from bench.tests.support import run_bench


def _rows(text: str, heading: str) -> list[list[str]]:
    """The data rows of the markdown table that follows `heading` in `text`."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        header = line.startswith(("| N |", "| state |"))
        if line.startswith("| ") and not header and "---" not in line:
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_quick_run_measures_every_figure() -> None:
    done = run_bench("bench.cluster", "--quick", timeout=150)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "# command: python -m bench.cluster --quick" in out

    adds = _rows(out, "## 1.")
    assert [r[0] for r in adds] == ["3"]
    changes, timeouts, errors = adds[0][1], adds[0][8], adds[0][9]
    assert (changes, timeouts, errors) == ("10", "0", "0")

    deaths = _rows(out, "## 2.")
    assert [r[1] for r in deaths] == ["traffic-one", "traffic-all", "idle"]
    assert all(r[8] == "0" for r in deaths), deaths  # every killed node left every peer

    costs = _rows(out, "## 3.")
    assert len(costs) == 6  # 3 peers, baseline and loaded
    assert all(float(r[7]) > 0 for r in costs)  # an RSS was read for each
    assert ", 0 errors." in out
