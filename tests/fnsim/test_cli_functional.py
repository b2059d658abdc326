"""`fnlb fnsim` as a process: prints its nodes' addresses, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serves_until_sigterm_then_exits_0() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "fnlb", "fnsim", "--listen", "127.0.0.1:0", "--count", "2"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            addresses = [proc.stdout.readline().strip() for _ in range(2)]
            assert len(set(addresses)) == 2
            for address in addresses:
                with urllib.request.urlopen(f"http://{address}/version", timeout=10) as r:
                    assert json.load(r) == {"version": "0.3.579"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
