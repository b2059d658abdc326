"""bench/_procs helpers that must work on any Linux box CI lands on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench._procs import children, parse_autogroup, tree_cpu_seconds, tree_rss_kb


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        ("/autogroup-2356 nice 0\n", 0),
        ("/autogroup-9 nice -10\n", -10),
        # A task in a cgroup rather than an autogroup (containers, CI runners): empty file.
        ("", None),
        ("garbage\n", None),
        ("/autogroup-1 nice x\n", None),
    ],
)
def test_autogroup_line_parses_or_says_none(text: str, nice: int | None) -> None:
    assert parse_autogroup(text) == nice


def test_tree_figures_include_the_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert len(tree_rss_kb(os.getpid())) >= 2
        assert tree_cpu_seconds(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
