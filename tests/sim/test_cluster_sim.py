"""N real Peers over real SWIM members in virtual time (fnlb.sim.cluster): the three flows.

A node change reaching every peer, a verdict reaching every peer, and what survives a
partition, a lossy network and a restart, run through the same Peer, delegate and pump
logic production runs. Bounds are in virtual seconds: they do not depend on the machine.
"""

from __future__ import annotations

import pytest

from fnlb.sim.cluster import ClusterSim


def routable_everywhere(sim: ClusterSim, nodes: list[str]) -> bool:
    return all(sorted(p.peer.view.routable) == sorted(nodes) for p in sim.peers.values() if p.up)


def checked_up_everywhere(sim: ClusterSim) -> bool:
    """Every live peer's own checks found every node up (not only the cluster verdict)."""
    return all(
        (h := p.peer.health(n)) is not None and h.state == "online"
        for p in sim.peers.values()
        if p.up
        for n in sim.node_names
    )


def agree(sim: ClusterSim) -> bool:
    return len({p.peer.state.checksum() for p in sim.peers.values() if p.up}) == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_nodes_become_routable_on_every_peer_and_the_views_agree(seed: int) -> None:
    sim = ClusterSim(peers=5, nodes=3, seed=seed)
    assert sim.run_until_true(lambda: routable_everywhere(sim, sim.node_names), timeout=10)
    assert sim.run_until_true(lambda: agree(sim), timeout=5)
    assert all(sum(p.peer.drops.values()) == 0 for p in sim.peers.values())


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_a_dead_node_leaves_every_peer_within_seconds_and_comes_back(loss: float) -> None:
    """The verdict flow: each peer's own checks (and a peer's "offline" making the others
    confirm at once) take a dead node out everywhere, well before a full check interval
    passes twice."""
    sim = ClusterSim(peers=5, nodes=3, seed=3, loss=loss, hc_interval=5.0)
    assert sim.run_until_true(lambda: checked_up_everywhere(sim), timeout=20)
    assert routable_everywhere(sim, sim.node_names)
    dead = sim.node_names[1]
    sim.node_down(dead)
    went = sim.now
    assert sim.run_until_true(
        lambda: set(sim.states(dead).values()) == {"offline"}, timeout=2 * sim.hc_interval
    )
    print(f"offline everywhere {sim.now - went:.2f} s after the node died (loss {loss:.0%})")
    sim.node_back(dead)
    assert sim.run_until_true(lambda: routable_everywhere(sim, sim.node_names), timeout=15)
    assert sim.run_until_true(lambda: agree(sim), timeout=5)


def test_a_node_one_peer_cannot_reach_is_avoided_by_that_peer_only() -> None:
    sim = ClusterSim(peers=3, nodes=2, seed=4)
    assert sim.run_until_true(lambda: routable_everywhere(sim, sim.node_names), timeout=10)
    node = sim.node_names[0]
    sim.cut("p0", node)
    sim.run_for(10)
    assert sim.states(node) == {"p0": "offline", "p1": "online", "p2": "online"}
    assert agree(sim)  # the cluster verdict (majority of live peers) is the same everywhere


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_then_heal_converges_within_two_push_pull_intervals(seed: int) -> None:
    """{A} | {B, C} with node-list changes on both sides, then heal: one node list again."""
    sim = ClusterSim(peers=3, nodes=0, seed=seed, seed_nodes=False)
    a, b, c = (sim.peer(n) for n in sim.names)
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=10)
    a.put_node("n1:1", sim.wall_ms())
    a.put_node("n2:1", sim.wall_ms())
    assert sim.run_until_true(
        lambda: all(sim.members(n) == ("n1:1", "n2:1") for n in sim.names), timeout=5
    )
    sim.partition([["p0"], ["p1", "p2"]])
    sim.run_for(5)
    a.delete_node("n1:1", sim.wall_ms())  # A deletes n1 ...
    a.put_node("n3:1", sim.wall_ms())
    sim.run_for(1)
    b.put_node("n1:1", sim.wall_ms())  # ... while B, later, adds it back
    c.delete_node("n2:1", sim.wall_ms())
    c.put_node("n4:1", sim.wall_ms())
    sim.run_for(54)  # 60 s of partition in all
    assert a.state.nodes.digest() != b.state.nodes.digest()
    sim.heal()
    healed = sim.now
    want = ("n1:1", "n3:1", "n4:1")  # the later write wins on each address
    assert sim.run_until_true(
        lambda: (
            all(sim.members(n) == want for n in sim.names)
            and len({sim.peer(n).state.nodes.digest() for n in sim.names}) == 1
        ),
        timeout=2 * sim.profile.push_pull_interval,
    )
    print(f"seed={seed} converged in {sim.now - healed:.1f} s after the heal")
    assert sim.run_until_true(lambda: agree(sim), timeout=5)
    assert all(sum(p.peer.drops.values()) == 0 for p in sim.peers.values())


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_a_restarted_peer_does_not_bring_back_a_node_deleted_while_it_was_down(
    loss: float,
) -> None:
    """The restart flow: the peer comes back from its disk (not from -nodes) and learns the
    delete from the others; the deleted node stays deleted everywhere."""
    sim = ClusterSim(peers=3, nodes=3, seed=5, loss=loss)
    assert sim.run_until_true(lambda: routable_everywhere(sim, sim.node_names), timeout=20)
    assert sim.run_until_true(lambda: sim.peers["p2"].disk is not None, timeout=5)
    sim.crash("p2")
    gone = sim.node_names[0]
    sim.peer("p0").delete_node(gone, sim.wall_ms())
    sim.run_for(5)
    sim.restart("p2", ["p0"])
    assert gone in sim.members("p2")  # its disk still has it, until gossip says otherwise
    rest = sim.node_names[1:]
    assert sim.run_until_true(
        lambda: all(sim.members(n) == tuple(rest) for n in sim.names), timeout=20
    )
    sim.run_for(10)
    assert all(sim.members(n) == tuple(rest) for n in sim.names)
    assert sim.run_until_true(lambda: routable_everywhere(sim, rest), timeout=10)
