"""Partition {A} | {B, C} with node-list changes on both sides, then heal: one node list again.

Runs the real gossip members (fnlb.gossip.member) in the seeded simulator, with real Peers
(fnlb.peer.core) as their delegates, as in production, so the merge happens through gossip's
own broadcasts and push-pull exchanges. Convergence must come within two
push-pull intervals of the heal.
"""

from __future__ import annotations

import pytest

from fnlb.cluster.nodeset import merge_states
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import Simulation
from fnlb.peer.core import Peer
from fnlb.routing.policy import RendezvousPolicy


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_then_heal_converges_within_two_push_pull_intervals(seed: int) -> None:
    profile = GossipProfile.fnlb_default()
    sim = Simulation(seed, profile)

    def clock() -> int:
        return int(1_000_000 + sim.now * 1000)

    peers = {
        n: Peer(n, routing=RendezvousPolicy(), clock_ms=clock, healthy=1, unhealthy=1)
        for n in "ABC"
    }
    states = {n: p.state for n, p in peers.items()}
    for name, peer in peers.items():
        sim.add(name, peer)
    sim.start("A")
    sim.start("B", ["A"])
    sim.start("C", ["A"])
    assert sim.run_until_true(lambda: sim.converged("ABC"), timeout=10)

    peers["A"].put_node("n1:1", clock())
    peers["A"].put_node("n2:1", clock())
    assert sim.run_until_true(
        lambda: all(s.nodes.members() == ("n1:1", "n2:1") for s in states.values()), timeout=5
    )

    sim.partition([["A"], ["B", "C"]])
    sim.run_for(5)
    peers["A"].delete_node("n1:1", clock())  # A deletes n1 ...
    peers["A"].put_node("n3:1", clock())
    sim.run_for(1)
    peers["B"].put_node("n1:1", clock())  # ... while B, later, adds it back
    peers["C"].delete_node("n2:1", clock())
    peers["C"].put_node("n4:1", clock())
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
    assert sum(sum(p.drops.values()) for p in peers.values()) == 0
