"""bench/k8s_watch.py runs end to end and prints every figure (values are not judged here)."""

from __future__ import annotations

import pytest

from bench.k8s_watch import main


def test_the_k8s_bench_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trials", "2"]) == 0
    out = capsys.readouterr().out
    for figure in (
        "gone from all 3 peers' routable sets",
        "routable on all 3 peers",
        "watch cut -> next event applied",
        "relist of 1,000 pods after 410",
        "fnlb RSS, 1,000 ready pods",
    ):
        assert figure in out
