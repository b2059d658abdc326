"""What an Fn server says of its own load on `/metrics`, read alongside the health checks.

Fn publishes Prometheus text under the `fn` namespace: `fn_queued` and `fn_running` (calls),
`fn_util_mem_used` and `fn_util_mem_avail` (bytes of container memory), `fn_server_busy`
(503s so far). Cold starts come from memory pressure as much as from spread, so routing weighs
these. Series with labels are summed. A server without them (older Fn) gives None: routing
then falls back to call counts. Pure: text in, figures out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NAMES: Final = (
    "fn_queued",
    "fn_running",
    "fn_util_mem_used",
    "fn_util_mem_avail",
    "fn_server_busy",
)
MAX_TEXT: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One reading of one node; `at_ms` is the reader's wall clock (newest reading wins)."""

    queued: float
    running: float
    mem_used: float
    mem_avail: float
    busy: float
    at_ms: int

    @property
    def mem_fraction(self) -> float:
        """Share of the node's container memory in use, 0..1 (0 when it reports none)."""
        total = self.mem_used + self.mem_avail
        return self.mem_used / total if total > 0 else 0.0

    def to_wire(self) -> list[float | int]:
        return [self.queued, self.running, self.mem_used, self.mem_avail, self.busy, self.at_ms]


def parse_fn_metrics(text: str, at_ms: int) -> NodeMetrics | None:
    """The fn_* figures in a Prometheus text page, or None when the memory figures are absent."""
    values = dict.fromkeys(NAMES, 0.0)
    seen: set[str] = set()
    for line in text[:MAX_TEXT].splitlines():
        if not line.startswith("fn_"):
            continue
        name_part, _, rest = line.partition(" ")
        name = name_part.split("{", 1)[0]
        if name not in values:
            continue
        if "{" in name_part and "}" not in name_part:  # a label value with a space
            _, _, rest = line.partition("} ")
        try:
            value = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        if value == value and value not in (float("inf"), float("-inf")):
            values[name] += value
            seen.add(name)
    if "fn_util_mem_avail" not in seen and "fn_util_mem_used" not in seen:
        return None
    return NodeMetrics(
        values["fn_queued"],
        values["fn_running"],
        values["fn_util_mem_used"],
        values["fn_util_mem_avail"],
        values["fn_server_busy"],
        at_ms,
    )


def metrics_from_wire(data: object) -> NodeMetrics | None:
    """A reading a peer sent; None when malformed (the caller counts the drop)."""
    if not isinstance(data, list) or len(data) != 6:
        return None
    *figures, at_ms = data
    if not isinstance(at_ms, int) or at_ms < 0:
        return None
    if not all(isinstance(v, int | float) and 0 <= v < 1e18 for v in figures):
        return None
    q, r, used, avail, busy = (float(v) for v in figures)
    return NodeMetrics(q, r, used, avail, busy, at_ms)
