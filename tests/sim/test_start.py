"""A cluster's start costs each peer about the same whatever N is (issue #11, "Scale").

Every peer checks every Fn node and, before, broadcast its first verdict on each: N x nodes
broadcasts, each relayed by every peer up to the retransmit limit, so what one peer sent
during a start grew with N x nodes (N=40 with 20 nodes: 20 KB/s per peer over the first
20 s, against 1.7 at N=5, SWIM's joins aside) and at N=200 membership had not converged 60 s
in. A first "online" now says nothing a peer does not presume (fnlb.cluster.health_merge)
and is not broadcast.

Virtual time and a seed per run: every figure here replays exactly.
"""

from __future__ import annotations

from collections import Counter

from fnlb.gossip import codec
from fnlb.gossip.messages import Alive, UserBroadcast
from fnlb.sim.cluster import ClusterSim

START_S = 20.0


def start(peers: int, nodes: int) -> tuple[float, Counter[bytes]]:
    """Gossip bytes sent per peer per second over a start's first START_S (datagrams and
    push-pull streams) but for SWIM's Alive messages (below), and the user broadcasts sent
    by key prefix (relays included)."""
    sim = ClusterSim(peers=peers, nodes=nodes, seed=1, hc_interval=3.0)
    prefixes: Counter[bytes] = Counter()
    alive = 0
    send = sim.gossip._send_datagram

    def datagram(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        nonlocal alive
        for m in codec.decode_compound(data)[0]:
            if isinstance(m, UserBroadcast):
                prefixes[m.key[:2]] += 1
            elif isinstance(m, Alive):
                alive += len(codec.encode_message(m))
        send(src, dst, data)

    sim.gossip._send_datagram = datagram  # type: ignore[method-assign]
    sim.run_for(START_S)
    assert sim.gossip.converged(sim.names)
    t = sim.gossip.traffic
    return (t["datagram_bytes"] + t["stream_bytes"] - alive) / peers / START_S, prefixes


def test_a_clusters_start_costs_each_peer_about_the_same_at_n_5_and_40() -> None:
    small, small_kinds = start(5, 20)
    large, large_kinds = start(40, 20)
    # No verdict travels when every node is up: the first verdicts are all "online".
    for kinds in (small_kinds, large_kinds):
        assert kinds[b"v/"] == kinds[b"w/"] == 0, kinds
    # Not counted: SWIM's own joins, an Alive per member that every member relays (N x the
    # retransmit limit per peer: ~180 B/s per peer at N=40, 12 at N=5), which is gossip's
    # start, not fnlb's. The rest: 1.3x (219 and 283 B/s); before, 11.9x (1.7 and 20.0
    # KB/s, nearly all of it verdicts).
    assert large <= 1.5 * small, (small, large)


def test_membership_and_routing_agree_at_n_200_with_20_nodes_within_seconds() -> None:
    """Before, N=200 with 20 nodes had not converged 60 virtual seconds in (with no nodes:
    2.3 s); the start's verdicts filled the queue that Alive messages share."""
    sim = ClusterSim(peers=200, nodes=20, seed=1, hc_interval=3.0)

    def agreed() -> bool:
        return (
            sim.gossip.converged(sim.names)
            and len({p.peer.state.checksum() for p in sim.peers.values()}) == 1
            and all(set(p.peer.view.routable) == set(sim.node_names) for p in sim.peers.values())
        )

    assert sim.run_until_true(agreed, timeout=20, step=0.5)
