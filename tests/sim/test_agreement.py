"""Issue #11's defects, each reproduced in the cluster simulator with real Peers.

Virtual time and a seed per run: every bound here is in virtual seconds and replays exactly.
"""

from __future__ import annotations

from fnlb.sim.cluster import ClusterSim

X, Y = "x:1", "y:2"


def holders(sim: ClusterSim, node: str) -> list[str]:
    return [n for n, p in sim.peers.items() if p.up and node in p.peer.nodes()]


def test_a_fresh_peer_whose_join_fails_does_not_bring_back_a_deleted_node() -> None:
    """Defect 1: p0 deletes x and restarts from its state dir; meanwhile a fresh q starts
    with `-nodes x,y -join p0`, finds nobody and seeds. Seeds lose to the tombstone."""
    sim = ClusterSim(peers=3, nodes=0, seed=11, seed_nodes=False)
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=10)
    sim.peer("p0").put_node(X, sim.wall_ms())
    sim.peer("p0").put_node(Y, sim.wall_ms())
    assert sim.run_until_true(lambda: len(holders(sim, X)) == 3, timeout=5)
    sim.run_for(1)
    sim.peer("p0").delete_node(X, sim.wall_ms())
    assert sim.run_until_true(lambda: not holders(sim, X), timeout=5)
    sim.run_for(1)
    sim.crash("p0")
    sim.add_peer("q", ["p0"], nodes=[X, Y])
    sim.run_for(2)
    sim.restart("p0", ["q"])
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=30)
    sim.run_for(40)  # two push-pull intervals
    assert holders(sim, X) == []
    assert len(holders(sim, Y)) == 4


def test_a_stale_nodes_list_does_not_resurrect_a_node_after_the_tombstone_horizon() -> None:
    """Defect 1, later: the tombstone is collected everywhere; a redeployed stateless peer
    with the old `-nodes` joins fine, and still must not add the deleted node back."""
    sim = ClusterSim(peers=3, nodes=0, seed=12, seed_nodes=False, horizon_ms=120_000)
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=10)
    sim.peer("p1").put_node(X, sim.wall_ms())
    sim.peer("p1").put_node(Y, sim.wall_ms())
    assert sim.run_until_true(lambda: len(holders(sim, X)) == 3, timeout=5)
    sim.peer("p1").delete_node(X, sim.wall_ms())
    sim.run_for(150)
    assert all(p.peer.state.nodes.get(X) is None for p in sim.peers.values())  # collected
    sim.add_peer("q", ["p0"], nodes=[X, Y])
    sim.run_for(40)
    assert holders(sim, X) == []
    assert len(holders(sim, Y)) == 4


def test_nodes_seed_a_new_cluster() -> None:
    """What `-nodes` is for still works: a cluster that never heard of them takes them."""
    sim = ClusterSim(peers=4, nodes=3, seed=13)
    assert sim.run_until_true(
        lambda: all(sorted(p.peer.nodes()) == sorted(sim.node_names) for p in sim.peers.values()),
        timeout=10,
    )
