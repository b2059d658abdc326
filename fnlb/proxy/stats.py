"""Per-second call statistics for `GET /1/lb/stats`, kept for the last minute.

The original rolled up each (node, function) per second into `{"timestamp", "tp", "node",
"func", "wait"}` (tp: calls in that second, wait: mean wait to start in seconds) and emptied
its buffer on every read, so only one reader could poll. Here each call adds to its second's
bucket and reads only look: any number of dashboards may poll.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

WINDOW_SECONDS = 60


class CallStats:
    __slots__ = ("_current", "_second", "_seconds")

    def __init__(self) -> None:
        self._second = -1
        self._current: dict[tuple[str, str], list[float]] = {}
        self._seconds: deque[tuple[int, dict[tuple[str, str], list[float]]]] = deque(
            maxlen=WINDOW_SECONDS
        )

    def record(self, node: str, func: str, wait_s: float, now: float) -> None:
        """Count one answered call; `now` is Unix time in seconds."""
        second = int(now)
        if second != self._second:
            if self._current:
                self._seconds.append((self._second, self._current))
            self._second = second
            self._current = {}
        entry = self._current.get((node, func))
        if entry is None:
            self._current[(node, func)] = [1.0, wait_s, now]
        else:
            entry[0] += 1.0
            entry[1] += wait_s

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """The roll-ups of the last minute, oldest first, in the original's JSON shape."""
        horizon = int(now) - WINDOW_SECONDS
        buckets = [*self._seconds, (self._second, self._current)]
        out: list[dict[str, Any]] = []
        for second, calls in buckets:
            if second <= horizon:
                continue
            for (node, func), (count, wait_sum, first) in calls.items():
                out.append(
                    {
                        "timestamp": _rfc3339(first),
                        "tp": int(count),
                        "node": node,
                        "func": func,
                        "wait": wait_sum / count,
                    }
                )
        return out


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
