"""Per-second call statistics for `GET /1/lb/stats`, kept for the last minute.

The original rolled up each (node, function) per second into `{"timestamp", "tp", "node",
"func", "wait"}` (tp: calls in that second, wait: mean wait to start in seconds) and emptied
its buffer on every read, so only one reader could poll. Here reads only look: any number of
dashboards may poll.

The counts are kept by `LocalLoad` (`answers_per_second`), in the record it already updates
for every call: a second structure fed per call cost the request path a lookup of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fnlb.cluster.load import LocalLoad

WINDOW_SECONDS = 60


class CallStats:
    """The `/1/lb/stats` rows, read from this peer's load figures."""

    __slots__ = ("_load",)

    def __init__(self, load: LocalLoad) -> None:
        """`load` must keep `WINDOW_SECONDS` (`LocalLoad(seconds_kept=...)`, the default)."""
        self._load = load

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """The roll-ups of the last minute, oldest first, in the original's JSON shape."""
        return [
            {
                "timestamp": _rfc3339(c.first),
                "tp": c.calls,
                "node": c.node,
                "func": c.fn,
                "wait": c.wait_sum / c.calls,
            }
            for c in self._load.answers_per_second(now)
        ]


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
