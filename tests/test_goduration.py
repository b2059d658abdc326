"""Go's Duration.String(), as Fn writes Xxx-Fxlb-Wait."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlb.goduration import (
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    SECOND,
    format_go_duration,
    format_go_duration_ns,
    parse_go_duration,
)

# (nanoseconds, what Go prints): cases from Go's own behaviour.
GO_CASES = [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1 * MICROSECOND, "1µs"),
    (1_100, "1.1µs"),
    (350 * MICROSECOND, "350µs"),
    (999_999, "999.999µs"),
    (1 * MILLISECOND, "1ms"),
    (12_300_000, "12.3ms"),
    (12_345_678, "12.345678ms"),
    (999_999_999, "999.999999ms"),
    (1 * SECOND, "1s"),
    (1_200_000_000, "1.2s"),
    (1_000_000_001, "1.000000001s"),
    (59 * SECOND, "59s"),
    (90 * SECOND, "1m30s"),
    (2 * MINUTE, "2m0s"),
    (HOUR, "1h0m0s"),
    (HOUR + 500 * MILLISECOND, "1h0m0.5s"),
    (26 * HOUR + 3 * MINUTE + 4 * SECOND, "26h3m4s"),
    (-1, "-1ns"),
    (-1_500_000_000, "-1.5s"),
    (-(2 * MINUTE), "-2m0s"),
]


@pytest.mark.parametrize(("ns", "text"), GO_CASES)
def test_formats_like_go(ns: int, text: str) -> None:
    assert format_go_duration_ns(ns) == text


@pytest.mark.parametrize(("ns", "text"), GO_CASES)
def test_parses_what_go_prints(ns: int, text: str) -> None:
    assert parse_go_duration(text) == pytest.approx(ns / SECOND, abs=1e-12)


def test_seconds_are_rounded_to_the_nanosecond() -> None:
    assert format_go_duration(0.0123) == "12.3ms"
    assert format_go_duration(0.3 + 1e-13) == "300ms"
    assert format_go_duration(15.0) == "15s"
    assert format_go_duration(0.00035) == "350µs"


@pytest.mark.parametrize("text", ["", "ms", "1", "1x", "1.5", "--1s", "1s2", "s1", " - "])
def test_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad_duration"):
        parse_go_duration(text)


def test_parses_go_spellings_it_never_prints() -> None:
    assert parse_go_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_go_duration("1.5us") == pytest.approx(1.5e-6)
    assert parse_go_duration(".5s") == pytest.approx(0.5)
    assert parse_go_duration("0") == 0.0


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_round_trips(ns: int) -> None:
    assert parse_go_duration(format_go_duration_ns(ns)) == pytest.approx(ns / SECOND, abs=2e-9)
