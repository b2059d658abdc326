"""Node changes through one fnlb's API, from another host: every acknowledged one holds.

The single-peer base of the partition scenarios' "nothing acknowledged was lost", and a
check of the harness's NodeChangeLog against a live fnlb.
"""

from __future__ import annotations

import pytest
from harness import services
from harness.netns import Network
from harness.nodechanges import NodeChangeLog
from harness.topologies import fn_nodes_behind_one_fnlb

pytestmark = pytest.mark.cluster


def test_every_acknowledged_node_change_shows_in_the_node_list(network: Network) -> None:
    cluster = fn_nodes_behind_one_fnlb(network, nodes=2)
    spare = network.add_host("n3")
    services.start_fnsim(spare)
    log = NodeChangeLog(cluster.client)
    mgmt = cluster.lb.mgmt
    assert log.add(mgmt, spare.addr(services.FNSIM_PORT))
    assert log.delete(mgmt, cluster.node_ids[0])
    assert log.add(mgmt, "10.213.0.250:8080")  # nobody there: listed, never online
    assert log.delete(mgmt, "10.213.0.250:8080")
    assert not log.add(mgmt, "not an address")
    promise = log.promise(cluster.routes)
    listed = set(services.node_states(cluster.client, mgmt))
    assert not promise.broken_by(listed)
    assert listed == set(promise.present)  # and the refused change left no trace
    took = cluster.wait_routable(set(promise.present), timeout=15)
    print(
        f"SCENARIO node-api: changes={len(log.changes)} acked={len(log.acknowledged())} "
        f"convergence={took:.2f}s"
    )
