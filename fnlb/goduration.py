"""Go's `time.Duration` text form, as Fn servers write it in the `Xxx-Fxlb-Wait` header.

Fn (up to 0.3.579) sent how long a call waited as `time.Duration.String()`: `0s`, `350ns`,
`350µs` (U+00B5 MICRO SIGN), `12.3ms`, `1.5s`, `2m0s`, `1h0m0.5s`. Fractions carry as many
digits as needed to be exact to the nanosecond, never trailing zeros. A load balancer that
parses the header must accept exactly this, so the emulator writes exactly this.
"""

from __future__ import annotations

import re

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 MICRO SIGN, what Go writes
    "μs": MICROSECOND,  # U+03BC GREEK SMALL LETTER MU, which Go also accepts
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_COMPONENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def format_go_duration(seconds: float) -> str:
    """Seconds -> Go's `Duration.String()` (rounded to the nanosecond): 0.0123 -> `12.3ms`."""
    return format_go_duration_ns(round(seconds * SECOND))


def format_go_duration_ns(ns: int) -> str:
    """Nanoseconds -> Go's `Duration.String()`: 12_300_000 -> `12.3ms`, 90 s -> `1m30s`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        if u < MILLISECOND:
            return f"{sign}{_fraction(u, MICROSECOND)}µs"
        return f"{sign}{_fraction(u, MILLISECOND)}ms"
    hours, rest = divmod(u, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    secs = _fraction(rest, SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _fraction(value: int, unit: int) -> str:
    """`value / unit` written exactly, with no trailing zeros and no point when whole."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def parse_go_duration(text: str) -> float:
    """Go's duration syntax (`1h2m3.5s`, `12.3ms`, `-1.5s`, `0`) -> seconds.

    Raises ValueError for anything `time.ParseDuration` would refuse.
    """
    s = text.strip()
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    pos = 0
    total_ns = 0.0
    for match in _COMPONENT.finditer(s):
        if match.start() != pos:
            break
        total_ns += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total_ns / SECOND
