"""What an Fn server says of its own load on `/metrics`, read alongside the health checks.

Fn publishes Prometheus text under the `fn` namespace: `fn_queued` and `fn_running` (calls),
`fn_util_mem_used` and `fn_util_mem_avail` (bytes of container memory), `fn_server_busy`
(503s so far). Cold starts come from memory pressure as much as from spread, so routing weighs
these. Series with labels are summed. A server without them (older Fn) gives None: routing
then falls back to call counts. Pure: text in, figures out.
"""

from __future__ import annotations

from typing import Final

from fnlb.payloads.node_metrics import NodeMetrics

NAMES: Final = (
    "fn_queued",
    "fn_running",
    "fn_util_mem_used",
    "fn_util_mem_avail",
    "fn_server_busy",
)
MAX_TEXT: Final = 1 << 20


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
