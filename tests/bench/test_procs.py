"""bench/_procs helpers that must work on any Linux box CI lands on."""

from __future__ import annotations

import pytest

from bench._procs import parse_autogroup


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
