"""`Xxx-Fxlb-Wait`: how long an Fn server (up to 0.3.579) made a call wait before it started.

The value is a Go duration string (`350µs`, `12.3ms`, `1.2s`); see `fnlb.goduration`.
"""

from __future__ import annotations

from fnlb.goduration import parse_go_duration


def parse_wait_header(value: str) -> float:
    """Seconds of wait from the header; 0 when the header is malformed or negative."""
    try:
        return max(0.0, parse_go_duration(value))
    except ValueError:
        return 0.0
