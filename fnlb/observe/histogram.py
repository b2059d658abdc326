"""A latency histogram kept in plain ints: one bisect and two additions per observation.

prometheus_client's own Histogram takes a lock and walks its buckets per observation; fnlb
observes on one event loop thread, so a list of counts read at scrape time is enough.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

LATENCY_BUCKETS_S: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds in seconds: from a warm call through loopback (under 1 ms) to a cold start
that pulls an image (tens of seconds)."""


class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf) and the sum of the observations."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus' `le`)
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(`le`, count of observations <= le) for every bound and +Inf, as exposed."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else _le(bound), total))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The q-quantile estimated as Prometheus' histogram_quantile does (linear within a
        bucket); None without observations."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        lower = 0.0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            if seen + n >= rank and n:
                return lower + (bound - lower) * (rank - seen) / n
            seen += n
            lower = bound
        return self.bounds[-1]


def _le(bound: float) -> str:
    return repr(float(bound))
