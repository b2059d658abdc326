"""The README's first command ends in `fnlb demo`: three peers must route alike and agree."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_cluster_routes_every_function_to_one_node_and_agrees() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "fnlb", "demo", "--exit", "--port", "0", "--fn-port", "0",
            "--cold-start-ms", "50",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("nodes per function: 1.00") == 2
    assert "0 errors" in out
    first, second = (int(n) for n in re.findall(r"(\d+) cold \(", out))
    assert second < first
    assert "curl -X POST http://127.0.0.1:" in out
    assert out.count("'held_by': 2") == 3  # nodes added on one peer, held by another too
    assert "all peers agree" in out
