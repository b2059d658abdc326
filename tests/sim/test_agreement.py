"""Issue #11's defects, each reproduced in the cluster simulator with real Peers.

Virtual time and a seed per run: every bound here is in virtual seconds and replays exactly.
"""

from __future__ import annotations

import random

from fnlb.gossip import codec
from fnlb.gossip.broadcasts import retransmit_limit
from fnlb.gossip.member import Member
from fnlb.gossip.messages import Addr, Alive, UserBroadcast
from fnlb.gossip.profile import GossipProfile
from fnlb.peer.core import Peer
from fnlb.routing.policies import RendezvousPolicy
from fnlb.sim import T0_MS
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


def wire_broadcasts(sim: ClusterSim, key: bytes) -> list[str]:
    """From now on, the origin of every broadcast with `key` put on the wire (a list that
    grows as the simulation runs)."""
    seen: list[str] = []
    send = sim.gossip._send_datagram

    def spy(src: Addr, dst: Addr, data: bytes) -> None:
        seen.extend(
            m.origin
            for m in codec.decode_packet(data)
            if isinstance(m, UserBroadcast) and m.key == key
        )
        send(src, dst, data)

    sim.gossip._send_datagram = spy  # type: ignore[method-assign]
    return seen


def test_one_node_change_costs_one_relayed_broadcast_not_one_per_peer() -> None:
    """Defect 3: every peer that merged the entry re-queued it as its own broadcast while
    gossip relayed the original: N x N x the retransmit limit. Now only the writer's travels,
    at most N x the limit sends."""
    n = 10
    sim = ClusterSim(peers=n, nodes=0, seed=14, seed_nodes=False)
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=10)
    sent = wire_broadcasts(sim, b"n/" + X.encode())
    sim.peer("p3").put_node(X, sim.wall_ms())
    assert sim.run_until_true(lambda: len(holders(sim, X)) == n, timeout=5)
    sim.run_for(10)
    assert set(sent) == {"p3"}
    assert len(sent) <= n * retransmit_limit(n, sim.profile.retransmit_mult)


def test_a_relay_forwards_the_newer_of_two_broadcasts_whatever_their_order() -> None:
    """Defect 4: the member replaced its queued relay by (origin, key) in arrival order, so
    the older of two broadcasts arriving second was relayed instead of the newer."""
    relay = Peer("r", routing=RendezvousPolicy(), clock_ms=lambda: T0_MS)
    m = Member("r", ("10.0.0.1", 7946), GossipProfile.fnlb_default(), random.Random(1), relay)
    m.join([], 0.0)
    other: Addr = ("10.0.0.2", 7946)
    m.receive_datagram(
        codec.encode_packet([codec.encode_message(Alive(1, "b", other, b""))]), other, 0
    )
    writer = Peer("w", routing=RendezvousPolicy(), clock_ms=lambda: T0_MS)
    older = writer.put_node(X, T0_MS).hold
    newer = writer.delete_node(X, T0_MS + 5).hold
    for payload in (newer, older):
        msg = UserBroadcast("w", b"n/" + X.encode(), payload)
        m.receive_datagram(codec.encode_packet([codec.encode_message(msg)]), other, 0.1)
    assert relay.state.nodes.get(X) is not None
    assert X not in relay.nodes()
    m.handle_timer(1.0)
    relayed = [
        msg.payload
        for data, _ in m.datagrams_to_send(1.0)
        for msg in codec.decode_packet(data)
        if isinstance(msg, UserBroadcast)
    ]
    assert relayed
    assert set(relayed) == {newer}


def agree(sim: ClusterSim) -> bool:
    return len({p.peer.state.checksum() for p in sim.peers.values() if p.up}) == 1


def test_verdicts_agree_within_two_push_pull_intervals_after_a_partition_heals() -> None:
    """Defect 2: 3 | 7, the 7 find node x dead while the 3 still reach it; after the heal
    push-pull carried only each sender's own verdicts, so the 3 took minutes to learn the
    majority's. Now every peer agrees (x offline everywhere) within two intervals."""
    sim = ClusterSim(peers=10, nodes=2, seed=15, hc_interval=2.0)
    assert sim.run_until_true(lambda: agree(sim) and sim.gossip.converged(sim.names), 20)
    x = sim.node_names[0]
    minority, majority = sim.names[:3], sim.names[3:]
    sim.partition([minority, majority])
    for name in majority:
        sim.cut(name, x)
    sim.run_for(30)
    assert set(sim.states(x).values()) == {"online", "offline"}
    sim.heal()
    healed = sim.now
    within = 2 * sim.profile.push_pull_interval
    assert sim.run_until_true(
        lambda: (
            sim.gossip.converged(sim.names)
            and agree(sim)
            and set(sim.states(x).values()) == {"offline"}
        ),
        timeout=within,
    ), f"no agreement {within:.0f} s after the heal"
    print(f"verdicts agree {sim.now - healed:.1f} s after the heal")


def test_a_peer_restarted_on_a_clock_stepped_back_is_still_heard() -> None:
    """Defect 5: verdicts did not mark the state dirty, so the saved clock was older than the
    last verdict; a restart on a wall clock 30 s behind issued verdicts every peer ignored."""
    sim = ClusterSim(peers=3, nodes=1, seed=16)
    x = sim.node_names[0]

    def p1_says(online: bool) -> bool:
        v = sim.peer("p0").state.verdicts.verdict("p1", x)
        return v is not None and v.online is online

    # p1's first "online" never travels (every peer presumes it); its next ones do
    assert sim.run_until_true(
        lambda: sim.peer("p1").state.verdicts.verdict("p1", x) is not None, 10
    )
    sim.run_for(20)  # the node set is saved early; then verdicts move p1's clock on
    sim.cut("p1", x)
    assert sim.run_until_true(lambda: p1_says(False), timeout=10)
    sim.uncut("p1", x)
    # p1's first "online" is not broadcast (every peer presumes it): its push-pull brings it
    assert sim.run_until_true(lambda: p1_says(True), timeout=10)
    sim.run_for(1)
    sim.crash("p1")
    sim.run_for(1)
    sim.skew_ms["p1"] = -30_000
    sim.restart("p1", ["p0"])
    sim.cut("p1", x)
    # p0 ignores p1's "offline" (older than the "online" it holds) until a push-pull with p1
    # carries it (x is contested in p1's eyes): p0 relays the newer one back, p1 says it again
    # past it. Before, every recent verdict rode in push-pull and the join brought it back.
    assert sim.run_until_true(lambda: p1_says(False), timeout=2 * sim.profile.push_pull_interval)


def test_a_stateless_peer_restarted_on_a_clock_stepped_back_is_still_heard() -> None:
    """Defect 5 without a state dir: its old verdicts come back to it in push-pull, move its
    clock past them and it says what it sees again, stamped later."""
    sim = ClusterSim(peers=3, nodes=1, seed=17)
    x = sim.node_names[0]

    def p1_says(online: bool) -> bool:
        v = sim.peer("p0").state.verdicts.verdict("p1", x)
        return v is not None and v.online is online

    # p1's first "online" never travels (every peer presumes it): make it say one that does
    assert sim.run_until_true(
        lambda: sim.peer("p1").state.verdicts.verdict("p1", x) is not None, 10
    )
    sim.cut("p1", x)
    assert sim.run_until_true(lambda: p1_says(False), timeout=10)
    sim.uncut("p1", x)
    assert sim.run_until_true(lambda: p1_says(True), timeout=10)
    sim.run_for(1)
    sim.crash("p1")
    sim.run_for(1)
    sim.skew_ms["p1"] = -30_000
    sim.restart("p1", ["p0"], stateless=True)
    sim.cut("p1", x)
    # as above: a push-pull with p1 brings its newer "online" back to it
    assert sim.run_until_true(lambda: p1_says(False), timeout=2 * sim.profile.push_pull_interval)


def test_a_new_peer_does_not_rebroadcast_the_node_set_it_joins_into() -> None:
    """Defect 3, bulk: the cluster's whole set is news only to the newcomer; relaying it from
    there flooded the queue membership shares."""
    sim = ClusterSim(peers=4, nodes=8, seed=18)
    assert sim.run_until_true(lambda: len(holders(sim, sim.node_names[-1])) == 4, timeout=10)
    sim.run_for(5)
    sent = [wire_broadcasts(sim, b"n/" + n.encode()) for n in sim.node_names]
    sim.add_peer("q", ["p0"], nodes=sim.node_names)
    assert sim.run_until_true(lambda: len(holders(sim, sim.node_names[-1])) == 5, timeout=10)
    sim.run_for(5)
    assert [origin for s in sent for origin in s if origin == "q"] == []
