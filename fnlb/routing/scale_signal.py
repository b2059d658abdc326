"""How many Fn nodes the cluster needs: a scale-out/in/hold signal every peer publishes alike.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every input carries its time
(a settled wall-clock cut in ms); the decision is returned.

Theory of operation
-------------------
Each tick (`tick_ms`, 1 s) the runtime feeds the settled cluster figures at an aligned cut:
the containers the functions need (`containers_needed`: each function's calls in flight, and
at least one warm container for every function called recently), the Fn nodes routable now,
and the containers one node holds. A node is planned full at `target_utilisation` (0.7) of its
slots, so `needed / (slots * 0.7)` is the demand in nodes. Two averages of it are kept, over
tick indices (not arrival times):

- the **stable** window, 60 s (Knative KPA's stable window): what the cluster needs;
- the **panic** window, 6 s (Knative's 10 % of it): how fast it is rising.

Decisions, from the demand `D_s` (stable) and `D_p` (panic), `current` nodes, tolerance 0.1
(HPA's):

- **out** when max(D_s, D_p) > current x 1.1: desired = ceil of it. Scale-out is not
  delayed (HPA's default scale-up stabilisation is 0 s), and the panic window makes a doubling
  visible within its 6 s, where the stable mean would need ~15-30 s.
- **panic** when D_p >= 2 x current (Knative's panic threshold 200 %): while in panic, and
  for a stable window after the last tick that met it, desired never decreases (Knative does
  not scale down in panic).
- **in** only when, for the whole `scale_in_after_s` (300 s, HPA's scale-down stabilisation
  window), ceil(D_s) stayed below current and D_s < current x 0.9: desired = the highest
  ceil(D_s) of that window, and at most halving at once (Knative's max scale-down rate 2).
  Nodes are slow to add and containers on them are lost when they go, so the cluster keeps
  capacity through any lull shorter than five minutes.
- **hold** otherwise: desired = current.

Every peer feeds the same cuts and reads them settled (see fnlb.routing.widths), so the inputs,
hence the whole state, are identical on every peer; `ScaleDecision.as_dict()` is what
`/1/lb/cluster` and `fnlb cluster status` show, and the Prometheus gauges export.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from math import ceil
from typing import Any, Literal

from fnlb.errors import LocalProtocolError

__all__ = ["Recommendation", "ScaleDecision", "ScalePolicy", "ScaleSignal", "containers_needed"]

Recommendation = Literal["out", "in", "hold"]
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class ScalePolicy:
    """The windows and thresholds of the scale signal; the same on every peer."""

    tick_ms: int = 1000
    """Spacing of the settled cuts fed in (ms); Knative ticks every 2 s, HPA every 15 s."""
    stable_window_s: float = 60.0
    """Averaging window of demand (Knative KPA's stable window)."""
    panic_window_s: float = 6.0
    """Short window that catches a fast rise (Knative: 10 % of the stable window)."""
    panic_threshold: float = 2.0
    """Panic when short-window demand reaches this multiple of the current nodes (Knative)."""
    scale_in_after_s: float = 300.0
    """Quiet seconds before scale-in (Kubernetes HPA's scale-down stabilisation window)."""
    tolerance: float = 0.1
    """Relative change ignored either way (HPA's tolerance)."""
    target_utilisation: float = 0.7
    """Share of a node's container slots planned to be used (Knative's 70 %)."""
    max_scale_in_rate: float = 2.0
    """Scale-in goes at most from n to n / this at once (Knative's max scale-down rate)."""
    min_nodes: int = 1
    """Never recommend fewer nodes."""
    max_nodes: int = 0
    """Never recommend more nodes; 0: no limit."""

    def check(self) -> None:
        if self.tick_ms < 1 or not 0 < self.panic_window_s <= self.stable_window_s:
            raise LocalProtocolError("need tick_ms >= 1 and 0 < panic window <= stable window")
        if self.scale_in_after_s < 0 or self.tolerance < 0 or self.panic_threshold <= 1:
            raise LocalProtocolError("need scale_in_after_s, tolerance >= 0, panic > 1")
        if not 0 < self.target_utilisation <= 1 or self.max_scale_in_rate < 1:
            raise LocalProtocolError("need 0 < target_utilisation <= 1, max_scale_in_rate >= 1")
        if self.min_nodes < 0 or self.max_nodes < 0:
            raise LocalProtocolError("need min_nodes, max_nodes >= 0")

    def ticks(self, seconds: float) -> int:
        return max(1, ceil(seconds * 1000.0 / self.tick_ms - _EPS))


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """The signal at one tick. `stable_nodes` / `panic_nodes`: the demand in nodes over each
    window (fractional); `desired`: the node count to have."""

    cut_ms: int
    desired: int
    current: int
    recommendation: Recommendation
    panic: bool
    needed_containers: int
    stable_nodes: float
    panic_nodes: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `GET /1/lb/cluster`'s `"scale"` and `fnlb cluster status`."""
        return {
            "desired_nodes": self.desired,
            "current_nodes": self.current,
            "recommendation": self.recommendation,
            "panic": self.panic,
            "needed_containers": self.needed_containers,
            "stable_demand_nodes": round(self.stable_nodes, 2),
            "panic_demand_nodes": round(self.panic_nodes, 2),
            "at_ms": self.cut_ms,
        }


def containers_needed(functions: Iterable[tuple[float, int]], total_in_flight: int) -> int:
    """Containers the cluster needs: every listed function's (rate, in-flight) asks for its
    in-flight calls and at least one warm container if it was called at all; calls in flight
    of functions not listed (lumped in digests) add one container each.

    Feed settled figures: `ClusterLoad.width_table(...)` values as (w.rate, w.in_flight) and
    `ClusterLoad.summary(..., settled_ms=cut).in_flight`."""
    need = 0
    listed = 0
    for rate, in_flight in functions:
        listed += in_flight
        need += in_flight if in_flight > 0 else (1 if rate > 0 else 0)
    return need + max(0, total_in_flight - listed)


class ScaleSignal:
    """Feed `update(cut_ms, needed_containers, current_nodes, slots_per_node)` once per tick;
    read `decision`. A pure function of the sequence of inputs: peers fed the same settled
    figures at the same cuts publish the same decision."""

    __slots__ = (
        "_below",
        "_first_tick",
        "_last_tick",
        "_panic",
        "_panic_until",
        "_policy",
        "_stable",
        "decision",
    )

    def __init__(self, policy: ScalePolicy | None = None) -> None:
        self._policy = policy or ScalePolicy()
        self._policy.check()
        self._stable: deque[tuple[int, float]] = deque()  # (tick, demand in nodes)
        self._panic: deque[tuple[int, float]] = deque()
        self._below: deque[tuple[int, int]] = deque()  # (tick, ceil(D_s)), decreasing max
        self._last_tick: int | None = None
        self._first_tick: int | None = None
        self._panic_until = -1
        self.decision: ScaleDecision | None = None

    @property
    def policy(self) -> ScalePolicy:
        return self._policy

    def update(
        self, cut_ms: int, needed_containers: int, current_nodes: int, slots_per_node: int
    ) -> ScaleDecision:
        """Fold in one tick's settled figures; returns (and keeps) the decision. A cut at or
        before the last one changes nothing and returns the last decision."""
        p = self._policy
        if cut_ms % p.tick_ms:
            raise LocalProtocolError(f"cut {cut_ms} ms is not on the {p.tick_ms} ms grid")
        if needed_containers < 0 or current_nodes < 0 or slots_per_node < 1:
            raise LocalProtocolError("need needed_containers, current_nodes >= 0, slots >= 1")
        tick = cut_ms // p.tick_ms
        if self._last_tick is not None and tick <= self._last_tick and self.decision:
            return self.decision
        self._last_tick = tick
        demand = needed_containers / (slots_per_node * p.target_utilisation)
        if self._first_tick is None:
            self._first_tick = tick
        d_s = self._window_mean(self._stable, tick, p.ticks(p.stable_window_s), demand)
        d_p = self._window_mean(self._panic, tick, p.ticks(p.panic_window_s), demand)
        floor = self._stabilised_floor(tick, ceil(d_s - _EPS))

        previous = self.decision.desired if self.decision is not None else current_nodes
        if d_p >= p.panic_threshold * max(current_nodes, 1) and d_p > 0:
            self._panic_until = tick + p.ticks(p.stable_window_s)
        panic = tick <= self._panic_until

        up = max(d_s, d_p)
        if up > current_nodes * (1 + p.tolerance) + _EPS and ceil(up - _EPS) > current_nodes:
            desired = ceil(up - _EPS)
            rec: Recommendation = "out"
            if panic:
                desired = max(desired, previous)
        elif (
            not panic
            and floor < current_nodes
            and d_s < current_nodes * (1 - p.tolerance) - _EPS
            # a peer that has just started waits a whole scale-in window before saying "in"
            and tick - self._first_tick + 1 >= p.ticks(p.scale_in_after_s)
        ):
            desired = max(floor, ceil(current_nodes / p.max_scale_in_rate - _EPS))
            rec = "in"
        else:
            desired, rec = current_nodes, "hold"
        desired = max(desired, p.min_nodes)
        if p.max_nodes:
            desired = min(desired, p.max_nodes)
        # the bounds may turn any answer around (min_nodes above the current count...)
        rec = "out" if desired > current_nodes else "in" if desired < current_nodes else "hold"
        self.decision = ScaleDecision(
            cut_ms, desired, current_nodes, rec, panic, needed_containers, d_s, d_p
        )
        return self.decision

    def _window_mean(
        self, q: deque[tuple[int, float]], tick: int, span: int, value: float
    ) -> float:
        """Mean of the window's values, over the ticks seen in it (a late timer's or a new
        peer's missing ticks are left out). Summed afresh each tick: no rounding drift."""
        q.append((tick, value))
        oldest = tick - span + 1
        while q[0][0] < oldest:
            q.popleft()
        return max(0.0, sum(v for _t, v in q) / len(q))

    def _stabilised_floor(self, tick: int, need: int) -> int:
        """The highest ceil(D_s) over the scale-in window (HPA's stabilisation)."""
        q = self._below
        while q and q[-1][1] <= need:
            q.pop()
        q.append((tick, need))
        oldest = tick - self._policy.ticks(self._policy.scale_in_after_s) + 1
        while q[0][0] < oldest:
            q.popleft()
        return q[0][1]
