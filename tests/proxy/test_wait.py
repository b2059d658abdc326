from __future__ import annotations

import pytest

from fnlb.proxy.wait import parse_wait_header


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1.5ms", 0.0015), ("350µs", 0.00035), ("1m2.5s", 62.5), ("0s", 0.0), ("-1s", 0.0),
     ("soon", 0.0), ("", 0.0)],
)  # fmt: skip
def test_wait_header(header: str, seconds: float) -> None:
    assert parse_wait_header(header) == pytest.approx(seconds)
