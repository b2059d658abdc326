"""Go's `time.Duration` text form, as Fn servers write it in the `Xxx-Fxlb-Wait` header.

Fn (up to 0.3.579) sent how long a call waited as `time.Duration.String()`: `0s`, `350ns`,
`350µs` (U+00B5 MICRO SIGN), `12.3ms`, `1.5s`, `2m0s`, `1h0m0.5s`. Fractions carry as many
digits as needed to be exact to the nanosecond, never trailing zeros. A load balancer that
parses the header must accept exactly this, so the emulator writes exactly this.
"""

from __future__ import annotations

from fnlb.errors import RemoteProtocolError

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


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


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_LIMIT = 1 << 63


def parse_go_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration string such as "12.3ms", "1m2s" or "350µs".

    Follows Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers
    each with a unit (ns, us, µs, ms, s, m, h); "0" alone needs no unit; fractions finer
    than a nanosecond are truncated; values beyond an int64 are refused. Raises
    `RemoteProtocolError` (a `ValueError`) with reason "bad_duration".
    """
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise RemoteProtocolError("bad_duration", repr(text))
    total = 0
    while s:
        i = _digits_end(s, 0)
        whole = s[:i]
        significant = whole.lstrip("0")
        # Checking the length first keeps int() away from huge digit strings.
        if len(significant) > 19 or (significant and int(significant) > _LIMIT):
            raise RemoteProtocolError("bad_duration", f"{text!r} overflows")
        value = int(significant) if significant else 0
        s = s[i:]
        fraction, scale, has_fraction = 0, 1.0, False
        if s[:1] == ".":
            end = _digits_end(s, 1)
            fraction, scale = _leading_fraction(s[1:end])
            has_fraction = end > 1
            s = s[end:]
        if not whole and not has_fraction:
            raise RemoteProtocolError("bad_duration", repr(text))
        end = 0
        while end < len(s) and s[end] != "." and not ("0" <= s[end] <= "9"):
            end += 1
        unit = _UNIT_NS.get(s[:end])
        if unit is None:
            what = "missing unit" if end == 0 else f"unknown unit {s[:end]!r}"
            raise RemoteProtocolError("bad_duration", f"{what} in {text!r}")
        s = s[end:]
        if value > _LIMIT // unit:
            raise RemoteProtocolError("bad_duration", f"{text!r} overflows")
        value *= unit
        if fraction:
            # Go computes the fractional part in float64 and truncates; so do we.
            value += int(float(fraction) * (float(unit) / scale))
        total += value
        if total > _LIMIT:
            raise RemoteProtocolError("bad_duration", f"{text!r} overflows")
    if negative:
        return -total
    if total > _LIMIT - 1:
        raise RemoteProtocolError("bad_duration", f"{text!r} overflows")
    return total


def _digits_end(s: str, start: int) -> int:
    i = start
    while i < len(s) and "0" <= s[i] <= "9":
        i += 1
    return i


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: digits past int64 precision are read but ignored."""
    x, scale = 0, 1.0
    for c in digits:
        if x > (_LIMIT - 1) // 10:
            break
        y = x * 10 + (ord(c) - 48)
        if y > _LIMIT:
            break
        x = y
        scale *= 10
    return x, scale


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError (RemoteProtocolError) if it is not one."""
    return parse_go_duration_ns(text) / SECOND
