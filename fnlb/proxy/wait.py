"""`Xxx-Fxlb-Wait`: how long an Fn server (up to 0.3.579) made a call wait before it started.

The value is a Go duration string (`350µs`, `12.3ms`, `1.2s`, `1m2.5s`). A header that does
not parse counts as no wait rather than failing the call.
"""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go writes MICRO SIGN
    "μs": 1e-6,  # and accepts GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError if it is not one."""
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a Go duration")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"{text!r} is not a Go duration")
    return sign * total


def parse_wait_header(value: str) -> float:
    """Seconds of wait from the header; 0 when the header is malformed or negative."""
    try:
        return max(0.0, parse_go_duration(value))
    except ValueError:
        return 0.0
