"""Partition {A} | {B, C} with node-list changes on both sides, then heal: one node list again.

Runs the real gossip members (fnlb.gossip.member) in the seeded simulator, with the cluster
layer (ClusterState) as each member's delegate, so the merge happens through gossip's own
broadcasts and push-pull exchanges, as in production. Convergence must come within two
push-pull intervals of the heal.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from fnlb.cluster.nodeset import merge_states
from fnlb.cluster.state import ClusterState
from fnlb.errors import RemoteProtocolError
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import Simulation


class SafeDelegate:
    """Counts (and never raises) what the cluster layer refuses, as the runtime does."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.drops = 0

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        return self.state.take_broadcasts()

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        return self.state.take_direct()

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> None:
        try:
            self.state.notify_broadcast(origin, key, payload)
        except RemoteProtocolError:
            self.drops += 1

    def local_state(self, join: bool) -> bytes:
        return self.state.local_state(join)

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        try:
            self.state.merge_remote_state(data, join)
        except RemoteProtocolError:
            self.drops += 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_then_heal_converges_within_two_push_pull_intervals(seed: int) -> None:
    profile = GossipProfile.fnlb_default()
    sim = Simulation(seed, profile)

    def clock() -> int:
        return int(1_000_000 + sim.now * 1000)

    states = {n: ClusterState(n, healthy=1, unhealthy=1, clock=clock) for n in "ABC"}
    delegates = [SafeDelegate(state) for state in states.values()]
    for name, delegate in zip(states, delegates, strict=True):
        sim.add(name, cast(Any, delegate))
    sim.start("A")
    sim.start("B", ["A"])
    sim.start("C", ["A"])
    assert sim.run_until_true(lambda: sim.converged("ABC"), timeout=10)

    states["A"].add_node("n1:1", clock())
    states["A"].add_node("n2:1", clock())
    assert sim.run_until_true(
        lambda: all(s.nodes.members() == ("n1:1", "n2:1") for s in states.values()), timeout=5
    )

    sim.partition([["A"], ["B", "C"]])
    sim.run_for(5)
    states["A"].remove_node("n1:1", clock())  # A deletes n1 ...
    states["A"].add_node("n3:1", clock())
    sim.run_for(1)
    states["B"].add_node("n1:1", clock())  # ... while B, later, adds it back
    states["C"].remove_node("n2:1", clock())
    states["C"].add_node("n4:1", clock())
    sim.run_for(54)  # 60 s of partition in all
    assert states["A"].nodes.digest() != states["B"].nodes.digest()

    expected = merge_states(
        merge_states(states["A"].nodes.state(), states["B"].nodes.state()),
        states["C"].nodes.state(),
    )
    want = tuple(sorted(a for a, e in expected.items() if e.present))
    assert want == ("n1:1", "n3:1", "n4:1")  # the later write wins on each address

    sim.heal()
    healed_at = sim.now
    converged = sim.run_until_true(
        lambda: (
            all(s.nodes.members() == want for s in states.values())
            and len({s.nodes.digest() for s in states.values()}) == 1
        ),
        timeout=2 * profile.push_pull_interval,
    )
    print(f"seed={seed} converged in {sim.now - healed_at:.1f} s after the heal")
    assert converged
    assert len({s.checksum() for s in states.values()}) == 1
    assert sum(d.drops for d in delegates) == 0
