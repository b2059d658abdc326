"""The two headers of a node's answer that routing reads, parsed once per attempt.

`Xxx-Fxlb-Wait`: how long an Fn server (up to 0.3.579) made a call wait before it started, a
Go duration string (`350µs`, `12.3ms`, `1.2s`; see `fnlb.goduration`). `Retry-After`: how
long a busy node (503) asks callers to stay away. Each has one meaning everywhere (the
attempt record, fnlb.routing.attempt): None when absent or unusable.
"""

from __future__ import annotations

from fnlb.goduration import parse_go_duration_ns


def wait_seconds(header: str | None) -> float | None:
    """The `Xxx-Fxlb-Wait` header in seconds; None when absent, malformed or negative."""
    if not header:
        return None
    try:
        ns = parse_go_duration_ns(header)
    except ValueError:
        return None
    return ns / 1e9 if ns >= 0 else None


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` in seconds when it is a number (Fn sends 15); None otherwise (an HTTP
    date is ignored: the back-off's own cap applies)."""
    if not header:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return value if 0.0 <= value < 86_400.0 else None
