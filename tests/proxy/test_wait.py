from __future__ import annotations

import pytest

from fnlb.proxy.wait import retry_after_seconds, wait_seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1.5ms", 0.0015), ("350µs", 0.00035), ("1m2.5s", 62.5), ("0s", 0.0), ("12.5ms", 0.0125),
     ("1m", 60.0)],
)  # fmt: skip
def test_wait_header(header: str, seconds: float) -> None:
    assert wait_seconds(header) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "x", "-1s"])
def test_a_missing_malformed_or_negative_wait_is_none(header: str | None) -> None:
    """One meaning everywhere (the attempt record): no usable wait, not a zero wait."""
    assert wait_seconds(header) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("15", 15.0),
        (" 2 ", 2.0),
        ("Fri, 31 Dec 1999 23:59:59 GMT", None),
        ("-1", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
