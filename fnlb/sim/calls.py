"""Calls on every live peer of a `ClusterSim`, at fixed rates, in virtual time.

Each peer routes its calls as the proxy does (`Peer.candidates`, then `attempt_started` and
an answered `attempt_finished` at once), every TICK_S: `rate` calls/s spread over
`functions` random functions, plus `hot[fn]` calls/s of each hot function. Fractional calls
carry over from tick to tick, so a peer makes exactly rate x seconds calls. The scale bench
(bench/cluster_scale.py) and the load tree's tests (tests/sim/test_load_tree.py) drive it.
"""

from __future__ import annotations

import random
from typing import Final

from fnlb.routing.attempt import Attempt
from fnlb.sim.cluster import ClusterSim

TICK_S: Final = 0.1


class Calls:
    """See the module docstring; `hot` may change between ticks."""

    def __init__(self, sim: ClusterSim, functions: int, rate: float, seed: int) -> None:
        self.sim = sim
        self.functions = [f"/r/app/f{i}" for i in range(functions)]
        self.rate = rate
        self.hot: dict[str, float] = {}
        self.rng = random.Random(seed)
        self.owed: dict[tuple[str, str], float] = {}
        sim.gossip.at(sim.now + TICK_S, self._tick)

    def _call(self, name: str, key: str, now: float) -> None:
        peer = self.sim.peers[name].peer
        nodes = peer.candidates(key, key)
        if not nodes:
            return
        peer.attempt_started(key, nodes[0], now)
        peer.attempt_finished(Attempt(key, nodes[0], key, 200, now, 0.0, None, 0.01, now))

    def _tick(self) -> None:
        sim = self.sim
        for name, p in sim.peers.items():
            if not p.up:
                continue
            now = sim.peer_ms(name) / 1000
            for key, rate in [*self.hot.items(), ("", self.rate)]:
                owed = self.owed.get((name, key), 0.0) + rate * TICK_S
                calls = int(owed)
                self.owed[(name, key)] = owed - calls
                for _ in range(calls):
                    self._call(name, key or self.rng.choice(self.functions), now)
        sim.gossip.at(sim.now + TICK_S, self._tick)
