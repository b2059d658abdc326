"""Many modelled Fn nodes on one virtual clock, for routing simulations.

Rule: no asyncio, socket, time or global random here; every input carries `now`.

A simulation of routing feeds calls in time order: route a call, `submit` it to the chosen
node, read what happened with `drain_events()`. Nodes are independent, so only the nodes
with timer work due need to be touched when the clock moves: `advance(now)` keeps a heap of
each node's next timer and steps just those, so a step costs O(log nodes), not O(nodes).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence

from fnlb.fnsim.model import Event, PoolConfig, PoolModel, PoolStats, UniformSource

_INF = float("inf")


class Fleet:
    """`count` PoolModels sharing `config` and `rng`; node `i` is `models[i]`."""

    def __init__(
        self,
        count: int,
        config: PoolConfig | None = None,
        rng: UniformSource | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.models: list[PoolModel] = [PoolModel(config, rng) for _ in range(count)]
        self._armed: list[float] = [_INF] * count  # earliest heap entry per node
        self._heap: list[tuple[float, int]] = []
        self._events: list[tuple[int, Event]] = []

    def submit(
        self,
        node: int,
        call_id: Hashable,
        fn: str,
        exec_s: float,
        now: float,
        memory_mb: int | None = None,
    ) -> None:
        """Submit a call to node `node` (which first runs its own timers due by now)."""
        model = self.models[node]
        model.submit(call_id, fn, exec_s, now, memory_mb)
        self._collect(node, model)

    def cancel(self, node: int, call_id: Hashable, now: float) -> bool:
        """Withdraw a waiting call from node `node`; False if it is not waiting."""
        model = self.models[node]
        withdrawn = model.cancel(call_id, now)
        self._collect(node, model)
        return withdrawn

    def advance(self, now: float) -> None:
        """Run every node's timer work due by `now`."""
        heap = self._heap
        armed = self._armed
        while heap and heap[0][0] <= now:
            when, node = heapq.heappop(heap)
            if when != armed[node]:
                continue  # superseded by an earlier entry for that node
            armed[node] = _INF
            model = self.models[node]
            model.handle_timer(now)
            self._collect(node, model)

    def next_timer(self) -> float | None:
        """When some node has timer work next, or None."""
        heap = self._heap
        armed = self._armed
        while heap and heap[0][0] != armed[heap[0][1]]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def drain_events(self) -> list[tuple[int, Event]]:
        """(node, event) pairs since the last drain, in time order (stable per node)."""
        events = self._events
        self._events = []
        events.sort(key=lambda pair: pair[1].at)
        return events

    def stats(self) -> Sequence[PoolStats]:
        return [model.stats() for model in self.models]

    def _collect(self, node: int, model: PoolModel) -> None:
        event = model.next_event()
        while event is not None:
            self._events.append((node, event))
            event = model.next_event()
        when = model.next_timer()
        if when is not None and when < self._armed[node]:
            self._armed[node] = when
            heapq.heappush(self._heap, (when, node))
