"""Three fnlb peers on three hosts gossiping: they find each other and share node changes.

The smoke test under every gossip scenario (docs/cluster-tests.md lists those to come): if
the peers cannot form a cluster across real addresses, nothing else about the cluster can be
shown. It also proves the peer topology of the harness (keys, --join, state dirs, names).
"""

from __future__ import annotations

import pytest
from harness import services
from harness.netns import Network
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

#: how long an acknowledged node change may take to reach every peer, with slack for CI
SPREAD_BOUND = 15.0


def test_three_peers_join_and_every_acknowledged_node_change_reaches_all(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    assert all(nodes == set(cluster.node_ids) for nodes in cluster.node_lists())

    extra = network.add_host("n4")
    services.start_fnsim(extra)
    added = extra.addr(services.FNSIM_PORT)
    services.put_node(cluster.client, cluster.peers[0].mgmt, added)
    add_spread = cluster.wait_node_lists({*cluster.node_ids, added}, timeout=SPREAD_BOUND)

    removed = cluster.node_ids[0]
    services.delete_node(cluster.client, cluster.peers[2].mgmt, removed)
    expected = {*cluster.node_ids, added} - {removed}
    delete_spread = cluster.wait_node_lists(expected, timeout=SPREAD_BOUND)
    print(
        f"SCENARIO peers-share-node-changes: peers={len(cluster.peers)} "
        f"add_convergence={add_spread:.2f}s delete_convergence={delete_spread:.2f}s"
    )
    for peer in cluster.peers:
        states = services.peer_states(cluster.client, peer.mgmt)
        assert {name for name, state in states.items() if state == "alive"} == (
            cluster.peer_names()
        )
