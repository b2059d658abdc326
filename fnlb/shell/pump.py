"""The Peer's pump: its timer, and the outputs no other shell drains.

Every `PUMP_S`: `Peer.tick(now)` (digests, sweeps, the routing control loop), the health
checks it asks for (new nodes, suspected ones) started, the push-pull it asks for (a young
peer, at each epoch) handed to gossip, and the node set saved when it changed (cluster mode
with `-state-dir`). Inputs that arrive between two pumps (gossip merges, API writes, failed
connections) are acted on within `PUMP_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fnlb.peer.core import PUMP_S, Peer
from fnlb.shell.cluster import ClusterService
from fnlb.shell.health_checks import HealthChecker

log = logging.getLogger("fnlb.pump")


class Pump:
    def __init__(self, peer: Peer, health: HealthChecker, cluster: ClusterService | None) -> None:
        self._peer = peer
        self._health = health
        self._cluster = cluster
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # stop()'s own cancel stays

    def pump(self) -> None:
        """Tick the peer and start the checks and push-pull it asks for (no await: safe
        anywhere)."""
        peer = self._peer
        try:
            peer.tick(time.time())
        except Exception:  # a bug here must not stop routing: log it and go on
            log.exception("peer tick failed")
        self._health.run(peer.take_checks())
        if peer.take_push_pull() and self._cluster is not None:
            self._cluster.request_push_pull()

    async def _run(self) -> None:
        while True:
            self.pump()
            if self._peer.take_save() and self._cluster is not None:
                await self._cluster.save()
            await asyncio.sleep(PUMP_S)
